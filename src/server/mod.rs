//! The boot server as a library piece: [`start`] binds DHCP, TFTP and HTTP
//! for a spec and returns a [`Server`] that reports its addresses, whether
//! it still runs, reloads the spec on request and stops on request. The
//! `serve` command runs one until a signal; `cluster up` runs one per
//! cluster as a process of its own. Nothing here is process-wide: two
//! servers in one process share no state and install no signal handler.

pub mod api_key;
mod events;
mod gauges;
pub mod health;
mod live;
pub mod notify;
mod power_poll;
pub mod prepare;
pub mod sockets;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gauges::{DhcpGauges, FileGauges, MachineGauges, StoreGauges, TftpGauges, Timings};
use live::{Live, Source};
pub use prepare::{PrepareError, Prepared};

use crate::boot::{BootError, Registry, known};
use crate::dhcp::server::{Port, Server as DhcpServer};
use crate::http::{AppState, EnrolRequest};
use crate::metrics::Metrics;
use crate::spec::DhcpMode;
use crate::tftp::files::Files;
use crate::tftp::server::{Config as TftpConfig, Server as TftpServer};

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
    /// Another server of the site stored its site key first; rendering
    /// again with it ends this.
    #[error("another server stored the site key first")]
    KeyTaken,
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
    stop_dhcp: Arc<AtomicBool>,
    stop_http: Option<tokio::sync::oneshot::Sender<()>>,
    http_thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
    dhcp_thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    ra_thread: Option<std::thread::JoinHandle<()>>,
    power: Arc<power_poll::Poke>,
    registry: Arc<Registry>,
    /// Logged at shutdown.
    dhcp_stats: Option<Arc<crate::dhcp::server::Stats>>,
    tftp_stats: Arc<crate::tftp::server::Stats>,
    /// Each part's health.
    parts: health::Parts,
}

/// Loads the spec and the state, binds every socket and starts DHCP (a
/// thread of its own), TFTP (a runtime of its own) and HTTP (a runtime
/// whose threads sit below DHCP and TFTP in priority). Returns once all
/// three listen.
pub fn start(o: Options) -> Result<Server, ServerError> {
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
    let (prepared, loaded) = loop {
        let prepared = source.read()?;
        match source.render(&prepared, &enrolled) {
            Ok(loaded) => break (prepared, loaded),
            // Another server of the site was first: its key, then.
            Err(ServerError::KeyTaken) => continue,
            Err(e) => return Err(e),
        }
    };
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
    let net = loaded.spec.network.clone();
    let iface = net.interface.clone();

    // Machines to enrol, from DHCP and from script requests.
    let (enrol_tx, enrol_rx) = tokio::sync::mpsc::channel::<EnrolRequest>(1024);

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
    // DHCP: its own thread, blocking sockets.
    let stop_dhcp = Arc::new(AtomicBool::new(false));
    let mut dhcp_thread = None;
    let mut dhcp_pending = None;
    let mut dhcp_stats = None;
    let mut metrics = Metrics::default();
    registry.register_metrics(&mut metrics);
    metrics.collect(MachineGauges(registry.clone()));
    if let Some(port) = o.dhcp_port {
        let mut socks = vec![(sockets::dhcp(&iface, port)?, Port::Dhcp)];
        if net.mode == DhcpMode::Proxy {
            socks.push((sockets::dhcp(&iface, 4011)?, Port::PxeBoot));
        }
        let mut server =
            DhcpServer::new(loaded.dhcp.clone(), store.leases.clone()).map_err(|source| {
                ServerError::Store {
                    what: "loading leases",
                    source,
                }
            })?;
        server.observer = Some(events::dhcp_observer(
            registry.clone(),
            enrol_tx.clone(),
            files.clone(),
        ));
        DhcpGauges(server.stats.clone()).register(&mut metrics);
        dhcp_stats = Some(server.stats.clone());
        dhcp_pending = Some(server.pending.clone());
        let flag = stop_dhcp.clone();
        dhcp_thread = Some(
            std::thread::Builder::new()
                .name("dhcp".into())
                .spawn(move || server.run(&socks, &flag))
                .map_err(|source| ServerError::Io {
                    what: "starting the DHCP thread",
                    source,
                })?,
        );
    }

    // "No IPv6 router here", so iPXE does not wait ~16 s for one.
    let mut ra_thread = None;
    if net.router_advertisements {
        match crate::ra::server::Responder::bind(&iface) {
            Ok(responder) => {
                let flag = stop_dhcp.clone();
                ra_thread = Some(
                    std::thread::Builder::new()
                        .name("ra".into())
                        .spawn(move || responder.run(&flag))
                        .map_err(|source| ServerError::Io {
                            what: "starting the router advertisement thread",
                            source,
                        })?,
                );
            }
            Err(crate::ra::server::RaError::NoInterface(_)) => {}
            Err(e @ crate::ra::server::RaError::Ipv6Disabled(_)) => tracing::warn!(
                "{e}: iPXE will wait about 16 s for an IPv6 router at every boot\n  help: enable IPv6 there (sysctl net.ipv6.conf.{iface}.disable_ipv6=0) so bootfleet can say there is no router, or set router_advertisements = false under [network] to silence this"
            ),
            Err(e) => tracing::warn!(
                "{e:#}: no router advertisements, so iPXE waits about 16 s for an IPv6 router at every boot\n  help: run as root (or with CAP_NET_RAW)"
            ),
        }
    }

    let tftp_socket = sockets::udp(
        o.tftp_listen
            .unwrap_or(SocketAddr::new(IpAddr::V4(net.server), 69)),
        "TFTP",
    )?;
    let tftp_addr = tftp_socket.local_addr().map_err(|source| ServerError::Io {
        what: "reading the TFTP address",
        source,
    })?;
    let timings = Timings::default();
    let tftp = TftpServer::observed(
        files.clone(),
        TftpConfig {
            spin: o.tftp_spin,
            ..TftpConfig::default()
        },
        Some(events::tftp_observer(
            registry.clone(),
            loaded.site.names.clone(),
            files.root().to_path_buf(),
            timings.clone(),
        )),
    );
    timings.register(&mut metrics);
    metrics.collect(TftpGauges(tftp.stats()));
    metrics.collect(StoreGauges(store.leases.clone()));
    let tftp_stats = tftp.stats();
    metrics.collect(FileGauges(files.clone()));
    let tftp_running = tftp
        .spawn_runtime(tftp_socket)
        .map_err(|source| ServerError::Io {
            what: "starting the TFTP server",
            source,
        })?;

    // HTTP.
    let http_addr = o
        .http_listen
        .unwrap_or(SocketAddr::new(IpAddr::V4(net.server), net.http_port));
    let listener = sockets::tcp(http_addr)?;
    let http_addr = listener.local_addr().map_err(|source| ServerError::Io {
        what: "reading the HTTP address",
        source,
    })?;
    registry.set_server(http_addr.to_string());
    let http_metrics = Arc::new(crate::http::metrics::HttpMetrics::default());
    http_metrics.register(&mut metrics);
    let parts = health::Parts {
        dhcp: dhcp_stats.clone(),
        tftp: tftp_stats.clone(),
        store: store.leases.clone(),
        http: http_addr.to_string(),
    };
    metrics.collect(parts.clone());
    let mut state = AppState::new(
        loaded.site,
        registry.clone(),
        Arc::new(metrics),
        http_metrics,
        files.clone(),
    );
    state.enrol = Some(enrol_tx);
    state.leases = Some(store.leases.clone());
    state.health = Some(Arc::new(parts.clone()));
    state.api_key = Some(api_key.into());
    let power = Arc::new(power_poll::Poke::default());
    let p = power.clone();
    state.on_power = Some(Arc::new(move || p.now()));
    let app = crate::http::router(state.clone());
    let mut live = Live::new(source, prepared, enrolled, state, files, registry.clone());
    live.dhcp_pending = dhcp_pending;
    let live = Arc::new(live);
    power_poll::spawn(live.clone(), registry.clone(), o.cluster, power.clone()).map_err(
        |source| ServerError::Io {
            what: "starting the power thread",
            source,
        },
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .on_thread_start(defer_to_udp)
        .build()
        .map_err(|source| ServerError::Io {
            what: "starting the HTTP runtime",
            source,
        })?;
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let reg = registry.clone();
    let keep_timelines_ms = loaded.spec.keep_timelines.as_millis() as u64;
    let l = live.clone();
    let http_thread = std::thread::Builder::new()
        .name("http-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                // Timelines are written behind, once a second; those of
                // strangers quiet for longer than keep_timelines are
                // forgotten every ten minutes.
                tokio::spawn(async move {
                    let mut swept: Option<std::time::Instant> = None;
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if swept.is_none_or(|at| at.elapsed() >= Duration::from_secs(600)) {
                            swept = Some(std::time::Instant::now());
                            let before = crate::boot::now_ms().saturating_sub(keep_timelines_ms);
                            match reg.forget_quiet(before) {
                                Ok(0) => {}
                                Ok(n) => tracing::info!(forgotten = n, "forgot the boot timelines of machines quiet for longer than keep_timelines"),
                                Err(e) => tracing::warn!(error = %crate::error_chain(&e), "quiet machines' boot timelines not forgotten; trying again later"),
                            }
                        }
                        if let Err(e) = reg.flush() {
                            tracing::warn!(error = %crate::error_chain(&e), "boot timelines not saved");
                        }
                        // Other servers' timelines (a site on etcd).
                        if let Err(e) = reg.absorb() {
                            tracing::debug!(error = %crate::error_chain(&e), "other servers' timelines not read");
                        }
                    }
                });
                tokio::spawn(live::enrol_loop(l, enrol_rx));
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| {
                    ServerError::Io {
                        what: "serving HTTP",
                        source,
                    }
                })?;
                // On stop, requests under way get HTTP_DRAIN to finish; a
                // transfer to a machine that stopped reading (paused,
                // powered off) must not hold the server up for ever.
                let stop_seen = Arc::new(tokio::sync::Notify::new());
                let seen = stop_seen.clone();
                let serve = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                    seen.notify_one();
                });
                let r = tokio::select! {
                    r = std::future::IntoFuture::into_future(serve) => r,
                    () = async {
                        stop_seen.notified().await;
                        tokio::time::sleep(HTTP_DRAIN).await;
                    } => {
                        tracing::warn!(
                            "HTTP: requests still under way {} s after the stop were cut off",
                            HTTP_DRAIN.as_secs()
                        );
                        Ok(())
                    }
                }
                .map_err(|source| ServerError::Io {
                    what: "serving HTTP",
                    source,
                });
                drop(tftp_running);
                r
            })
        })
        .map_err(|source| ServerError::Io {
            what: "starting the HTTP thread",
            source,
        })?;
    let dhcp = match o.dhcp_port {
        Some(port) => format!("{iface} port {port}"),
        None => "off".to_owned(),
    };
    Ok(Server {
        addrs: Addrs {
            http: http_addr,
            tftp: tftp_addr,
            dhcp,
        },
        live,
        stop_dhcp,
        stop_http: Some(stop_http),
        http_thread: Some(http_thread),
        dhcp_thread,
        ra_thread,
        power,
        registry,
        dhcp_stats,
        tftp_stats,
        parts,
    })
}

impl Server {
    /// Where it answers.
    pub fn addrs(&self) -> &Addrs {
        &self.addrs
    }

    /// True while DHCP (if served) and HTTP both still run.
    pub fn is_running(&self) -> bool {
        let alive =
            |t: &Option<std::thread::JoinHandle<_>>| t.as_ref().is_none_or(|t| !t.is_finished());
        alive(&self.dhcp_thread) && self.http_thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Each part's health now (as `/healthz` reports it).
    pub fn health(&self) -> Vec<crate::http::PartHealth> {
        self.parts.check(crate::boot::now_ms())
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
        self.stop_dhcp.store(true, Ordering::Relaxed);
        // Not waited for: a BMC call under way ends within its timeout.
        self.power.stop();
        if let Some(tx) = self.stop_http.take() {
            let _ = tx.send(());
        }
        let mut result = Ok(());
        if let Some(t) = self.http_thread.take() {
            result = t.join().unwrap_or(Err(ServerError::Panicked("HTTP")));
        }
        if let Some(t) = self.ra_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.dhcp_thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = result.and(Err(ServerError::Dhcp(e))),
                Err(_) => result = result.and(Err(ServerError::Panicked("DHCP"))),
            }
        }
        if let Some(stats) = &self.dhcp_stats {
            tracing::info!(counters = %stats.summary(), "DHCP stopped");
        }
        tracing::info!(counters = %self.tftp_stats.summary(), "TFTP stopped");
        self.registry.flush().map_err(|source| ServerError::Boot {
            what: "saving the boot timelines",
            source,
        })?;
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.http_thread.is_some() {
            if let Err(e) = self.shutdown() {
                tracing::error!("stopping the boot server: {e:#}");
            }
        }
    }
}

/// How many nice levels the HTTP runtime's threads sit below DHCP and TFTP.
const HTTP_NICE: libc::c_int = 5;

/// How long requests under way may go on after the server was told to
/// stop.
const HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Lowers the calling thread's priority by [`HTTP_NICE`]. The HTTP
/// runtime's threads stream hundreds of megabytes to every booting machine
/// while DHCP and TFTP answer small packets that each keep a firmware
/// waiting; at equal priority, a 200-machine boot storm took the TFTP
/// loader fetch from 0.9 to 1.8 s (median), and 1.4 s at nice 5
/// (bench/storm.sh). Lowering a thread's own priority needs no privilege.
fn defer_to_udp() {
    // SAFETY: gettid and getpriority/setpriority on the calling thread
    // take no pointers.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if *libc::__errno_location() == 0 {
            libc::setpriority(libc::PRIO_PROCESS, tid, (now + HTTP_NICE).min(19));
        }
    }
}
