//! The boot server as a library piece: [`start`] binds DHCP, TFTP and HTTP
//! for a spec, starts each part on its sockets (each part has a starter of
//! its own: [`dhcp_part`], [`tftp_part`], `http_part`, `ra_part`, which
//! the standalone commands use too) and returns a [`Server`] that reports
//! its addresses, whether it still runs, reloads the spec on request and
//! stops on request. The
//! `serve` command runs one until a signal; `cluster up` runs one per
//! cluster as a process of its own. Nothing here is process-wide: two
//! servers in one process share no state and install no signal handler.

pub mod api_key;
pub mod dhcp_part;
mod events;
mod gauges;
pub mod health;
mod http_part;
mod live;
pub mod notify;
mod power_poll;
mod ra_part;
pub mod sockets;
pub mod tftp_part;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dhcp_part::DhcpPart;
use gauges::{DhcpGauges, FileGauges, MachineGauges, StoreGauges, TftpGauges, Timings};
use http_part::HttpPart;
use live::{Live, Source};
use ra_part::RaPart;
use tftp_part::TftpPart;

use crate::boot::{BootError, Registry, known};
use crate::files::Files;
use crate::http::{AppState, EnrolRequest};
use crate::metrics::Metrics;
use crate::prepare::{self, PrepareError};
use crate::tftp::server::Config as TftpConfig;

/// Why the server could not start, or failed while running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(
        "the images directory {} does not exist\n  help: create it and put the kernel ({kernel}), initrd ({initrd}) and boot loaders there, or point --images at it",
        images.display()
    )]
    NoImages {
        images: PathBuf,
        kernel: String,
        initrd: String,
    },
    #[error(transparent)]
    Bind(#[from] sockets::BindError),
    #[error("{what}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what}")]
    Boot {
        what: &'static str,
        source: BootError,
    },
    #[error("{what}")]
    Store {
        what: &'static str,
        source: crate::store::StoreError,
    },
    #[error("the DHCP server failed")]
    Dhcp(#[source] std::io::Error),
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
}

/// What a server serves and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cluster spec (TOML), read again by [`Server::reload`].
    pub spec: PathBuf,
    /// Kernel, initrd and boot loaders (TFTP, and HTTP `/assets/`).
    pub images: PathBuf,
    /// Leases, enrolled machines, the site key, the boot timelines.
    pub state_dir: PathBuf,
    /// Milliseconds without news before a booting machine is stalled.
    pub stall_after_ms: u64,
    /// HTTP address (default: the spec's server address and http_port).
    pub http_listen: Option<SocketAddr>,
    /// TFTP address (default: the spec's server address, port 69).
    pub tftp_listen: Option<SocketAddr>,
    /// How long a TFTP transfer polls for a quick client's ACK.
    pub tftp_spin: Duration,
    /// File data held in memory at once, TFTP and HTTP together.
    pub max_memory_bytes: u64,
    /// The DHCP port on the spec's interface; `None` serves no DHCP.
    pub dhcp_port: Option<u16>,
    /// Serve a node's cloud-config only to the address the spec gives it.
    pub check_source: bool,
    /// How HTTP connections are bounded.
    pub http_limits: crate::http::listen::Limits,
    /// The server of `bootfleet cluster`: nodes without a `bmc` are its
    /// libvirt domains, whose power the page shows.
    pub cluster: bool,
}

/// Where a started server answers.
#[derive(Debug, Clone)]
pub struct Addrs {
    pub http: SocketAddr,
    pub tftp: SocketAddr,
    /// `interface port N`, or `off`.
    pub dhcp: String,
}

/// A running server. Dropping it without [`Server::stop`] stops it too.
pub struct Server {
    addrs: Addrs,
    live: Arc<Live>,
    dhcp: Option<DhcpPart>,
    ra: Vec<RaPart>,
    tftp: TftpPart,
    http: HttpPart,
    power: Arc<power_poll::Poke>,
    registry: Arc<Registry>,
    /// Each part's health.
    parts: health::Parts,
}

/// Loads the spec and the state, binds every socket, then starts each
/// part on its sockets: DHCP (a thread of its own), router
/// advertisements, TFTP (a runtime of its own), HTTP (a runtime whose
/// threads sit below DHCP and TFTP in priority) and the BMC poll. Returns
/// once all listen.
pub fn start(o: Options) -> Result<Server, ServerError> {
    let site = open_site(&o)?;
    let net = site.loaded.spec.network.clone();

    // Every socket first: a port in use is said before anything runs.
    let dhcp_socks = match o.dhcp_port {
        Some(port) => Some(dhcp_part::sockets(&site.loaded.spec, port, 4011)?),
        None => None,
    };
    // TFTP and HTTP answer at every address a segment's machines are told
    // (the given address alone with --tftp-listen / --http-listen).
    let addresses = site.loaded.spec.server_addresses();
    let tftp_sockets = match o.tftp_listen {
        Some(at) => vec![sockets::udp(at, "TFTP")?],
        None => addresses
            .iter()
            .map(|ip| sockets::udp(SocketAddr::new(IpAddr::V4(*ip), 69), "TFTP"))
            .collect::<Result<_, _>>()?,
    };
    let listeners = match o.http_listen {
        Some(at) => vec![sockets::tcp(at)?],
        None => addresses
            .iter()
            .map(|ip| sockets::tcp(SocketAddr::new(IpAddr::V4(*ip), net.http_port)))
            .collect::<Result<_, _>>()?,
    };
    let http_addr = listeners[0]
        .local_addr()
        .map_err(|source| ServerError::Io {
            what: "reading the HTTP address",
            source,
        })?;
    // Timelines name this server by its HTTP address.
    let registry = site.registry.clone();
    registry.set_server(http_addr.to_string());

    let mut metrics = Metrics::default();
    registry.register_metrics(&mut metrics);
    metrics.collect(MachineGauges(registry.clone()));
    metrics.collect(StoreGauges(site.store.leases.clone()));
    metrics.collect(FileGauges(site.files.clone()));
    // Machines to enrol, from DHCP and from script requests.
    let (enrol_tx, enrol_rx) = tokio::sync::mpsc::channel::<EnrolRequest>(1024);

    let dhcp = match dhcp_socks {
        Some(socks) => {
            let observer =
                events::dhcp_observer(registry.clone(), enrol_tx.clone(), site.files.clone());
            let part = dhcp_part::start(
                socks,
                site.loaded.dhcp.clone(),
                site.store.leases.clone(),
                Some(observer),
            )?;
            DhcpGauges(part.stats.clone()).register(&mut metrics);
            Some(part)
        }
        None => None,
    };
    // "No IPv6 router here" on every direct segment that wants it.
    let mut ra = Vec::new();
    for seg in &site.loaded.spec.segments {
        if let (Some(iface), true) = (seg.interface(), seg.router_advertisements) {
            ra.extend(ra_part::start(iface)?);
        }
    }
    let timings = Timings::default();
    timings.register(&mut metrics);
    let tftp = tftp_part::start(
        tftp_sockets,
        site.files.clone(),
        TftpConfig {
            spin: o.tftp_spin,
            ..TftpConfig::default()
        },
        Some(events::tftp_observer(
            registry.clone(),
            site.loaded.site.names.clone(),
            site.files.root().to_path_buf(),
            timings,
        )),
    )?;
    metrics.collect(TftpGauges(tftp.stats.clone()));

    let http_metrics = Arc::new(crate::http::metrics::HttpMetrics::default());
    http_metrics.register(&mut metrics);
    let conn_stats = Arc::new(crate::http::listen::ConnStats::default());
    metrics.collect(conn_stats.clone());
    let parts = health::Parts {
        dhcp: dhcp.as_ref().map(|d| d.stats.clone()),
        tftp: tftp.stats.clone(),
        store: site.store.leases.clone(),
        http: http_addr.to_string(),
    };
    metrics.collect(parts.clone());
    let keep_timelines_ms = site.loaded.spec.keep_timelines.as_millis() as u64;
    let mut state = AppState::new(
        site.loaded.site,
        registry.clone(),
        Arc::new(metrics),
        http_metrics,
        site.files.clone(),
    );
    state.enrol = Some(enrol_tx);
    state.leases = Some(site.store.leases.clone());
    state.health = Some(Arc::new(parts.clone()));
    state.api_key = Some(site.api_key.into());
    let power = Arc::new(power_poll::Poke::default());
    let p = power.clone();
    state.on_power = Some(Arc::new(move || p.now()));
    let app = crate::http::router(state.clone());
    let mut live = Live::new(
        site.source,
        site.prepared,
        site.enrolled,
        state,
        site.files,
        registry.clone(),
    );
    live.dhcp_pending = dhcp.as_ref().map(|d| d.pending.clone());
    let live = Arc::new(live);
    power_poll::spawn(live.clone(), registry.clone(), o.cluster, power.clone()).map_err(
        |source| ServerError::Io {
            what: "starting the power thread",
            source,
        },
    )?;
    let http = http_part::start(
        listeners,
        app,
        o.http_limits,
        conn_stats,
        vec![
            Box::pin(timelines_task(registry.clone(), keep_timelines_ms)),
            Box::pin(live::enrol_loop(live.clone(), enrol_rx)),
        ],
    )?;
    Ok(Server {
        addrs: Addrs {
            http: http.addr,
            tftp: tftp.addr,
            dhcp: match o.dhcp_port {
                Some(port) => format!("{} port {port}", net.interface),
                None => "off".to_owned(),
            },
        },
        live,
        dhcp,
        ra,
        tftp,
        http,
        power,
        registry,
        parts,
    })
}

/// What a server serves, loaded before any socket is bound.
struct OpenSite {
    store: crate::store::Store,
    source: Source,
    prepared: crate::prepare::Prepared,
    loaded: live::Loaded,
    enrolled: Vec<crate::inventory::enrol::Enrolled>,
    registry: Arc<Registry>,
    files: Arc<Files>,
    api_key: String,
}

/// Opens the spec's store, renders the spec with the machines enrolled so
/// far (keeping the site key), writes the API key, opens the timelines and
/// the file cache over the images directory.
fn open_site(o: &Options) -> Result<OpenSite, ServerError> {
    // The spec says where the state is ([state]); it is read again below
    // with its warnings.
    let state = prepare::load_spec(&o.spec, &|_| {})?.state;
    let store = crate::store::open(&state, &o.state_dir).map_err(|source| ServerError::Store {
        what: "opening the site's state",
        source,
    })?;
    tracing::info!(store = %store.description, "state");
    let source = Source {
        spec: o.spec.clone(),
        images: o.images.clone(),
        check_source: o.check_source,
        store: store.clone(),
    };
    let enrolled = store.machines.list().map_err(|source| ServerError::Store {
        what: "the site's state",
        source,
    })?;
    let (prepared, loaded) = source
        .read()?
        .rendered_keeping_key(&*store.keys, |p| source.render(p, &enrolled))?;
    // The key `bootfleet power` and `reprovision` present to report what
    // they did (every server of the site derives the same).
    let api_key = prepared.api_key();
    let key_file = api_key::write(&o.state_dir, &api_key).map_err(|source| ServerError::Io {
        what: "writing the API key to the state directory",
        source,
    })?;
    tracing::debug!(file = %key_file.display(), "API key for power reports");
    if !o.images.is_dir() {
        return Err(ServerError::NoImages {
            images: o.images.clone(),
            kernel: loaded.spec.boot.kernel.clone(),
            initrd: loaded.spec.boot.initrd.clone(),
        });
    }
    for f in [&loaded.spec.boot.kernel, &loaded.spec.boot.initrd] {
        if !o.images.join(f).is_file() {
            tracing::warn!(file = %o.images.join(f).display(), "not found: machines will stop at this step");
        }
    }
    let registry = Arc::new(
        Registry::open(
            known(&loaded.site.inventory),
            o.stall_after_ms,
            Some(store.timelines.clone()),
        )
        .map_err(|source| ServerError::Boot {
            what: "opening the boot timelines",
            source,
        })?,
    );
    // Whole files in memory, shared by TFTP and HTTP's /assets/: an
    // initrd fetched both ways is held once.
    let files =
        Arc::new(
            Files::new(&o.images, o.max_memory_bytes).map_err(|source| ServerError::Io {
                what: "serving the images directory",
                source,
            })?,
        );
    files.set_generated(loaded.tftp_files.clone());
    registry.set_segments(loaded.site.segments.clone());
    Ok(OpenSite {
        store,
        source,
        prepared,
        loaded,
        enrolled,
        registry,
        files,
        api_key,
    })
}

/// Timelines are written behind, once a second, and other servers' read
/// (a site on etcd); those of strangers quiet for longer than
/// `keep_timelines` are forgotten every ten minutes.
async fn timelines_task(reg: Arc<Registry>, keep_timelines_ms: u64) {
    let mut swept: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if swept.is_none_or(|at| at.elapsed() >= Duration::from_secs(600)) {
            swept = Some(std::time::Instant::now());
            let before = crate::clock::now_ms().saturating_sub(keep_timelines_ms);
            match reg.forget_quiet(before) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    forgotten = n,
                    "forgot the boot timelines of machines quiet for longer than keep_timelines"
                ),
                Err(e) => tracing::warn!(
                    error = %crate::error_chain(&e),
                    "quiet machines' boot timelines not forgotten; trying again later"
                ),
            }
        }
        if let Err(e) = reg.flush() {
            tracing::warn!(error = %crate::error_chain(&e), "boot timelines not saved");
        }
        if let Err(e) = reg.absorb() {
            tracing::debug!(error = %crate::error_chain(&e), "other servers' timelines not read");
        }
    }
}

impl Server {
    /// Where it answers.
    pub fn addrs(&self) -> &Addrs {
        &self.addrs
    }

    /// True while DHCP (if served) and HTTP both still run.
    pub fn is_running(&self) -> bool {
        self.dhcp.as_ref().is_none_or(DhcpPart::is_running) && self.http.is_running()
    }

    /// Each part's health now (as `/healthz` reports it).
    pub fn health(&self) -> Vec<crate::http::PartHealth> {
        self.parts.check(crate::clock::now_ms())
    }

    /// Reads the spec again and serves it; a bad spec is refused and the
    /// running one stays.
    pub fn reload(&self) -> Result<(), ServerError> {
        self.live.reload()
    }

    /// The spec file it serves.
    pub fn spec_path(&self) -> &std::path::Path {
        &self.live.source.spec
    }

    /// Stops every part, waits for them, and saves the boot timelines.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ServerError> {
        // Not waited for: a BMC call under way ends within its timeout.
        self.power.stop();
        let mut result = self.http.stop();
        self.tftp.stop();
        for ra in &mut self.ra {
            ra.stop();
        }
        if let Some(dhcp) = &mut self.dhcp {
            result = result.and(dhcp.stop());
        }
        self.registry.flush().map_err(|source| ServerError::Boot {
            what: "saving the boot timelines",
            source,
        })?;
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.http.is_running() {
            if let Err(e) = self.shutdown() {
                tracing::error!("stopping the boot server: {e:#}");
            }
        }
    }
}
