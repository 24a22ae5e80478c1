//! `bootfleet serve SPEC`: DHCP, TFTP and HTTP in one process, every
//! machine's boot timeline, the status page.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;

use super::CliError;
use super::prepare::{Prepared, boot_files};
use crate::boot::classify::Names;
use crate::boot::{Event, Registry, Stage, known, now_ms};
use crate::dhcp::server::{Port, Server as DhcpServer};
use crate::dhcp::store::RedbStore;
use crate::http::{AppState, Gauges, Site};
use crate::spec::DhcpMode;
use crate::tftp::files::Files;
use crate::tftp::server::{Config as TftpConfig, Server as TftpServer};

/// Serve everything machines need to boot: DHCP (full or proxy, per the
/// spec), TFTP (boot loaders and pxelinux configs) and HTTP (iPXE scripts,
/// kernel and initrd, cloud-configs), and show each machine's progress at
/// http://SERVER:PORT/. SIGHUP reloads the spec (a bad one is refused and
/// the old one kept); SIGTERM or Ctrl-C stop cleanly.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet serve examples/rack.toml\n  bootfleet serve site.toml --images /srv/bootfleet/images\n  bootfleet serve site.toml --no-dhcp   # another DHCP server points machines here"
)]
pub struct Args {
    /// The cluster spec (TOML).
    spec: PathBuf,
    /// Kernel, initrd and boot loaders, served under /assets/ and by TFTP.
    #[arg(long, default_value = "images", value_name = "DIR")]
    images: PathBuf,
    /// Seconds without news before a booting machine shows as stalled.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    stall_after: u64,
    /// HTTP address (default: the spec's server address and http_port).
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// TFTP address (default: the spec's server address, port 69).
    #[arg(long, value_name = "ADDR")]
    tftp_listen: Option<SocketAddr>,
    /// Do not serve DHCP (another server gives addresses and boot files).
    #[arg(long)]
    no_dhcp: bool,
    /// DHCP port (67; tests use others).
    #[arg(long, default_value_t = 67)]
    dhcp_port: u16,
    /// Serve a node's cloud-config only to the address the spec gives it.
    #[arg(long)]
    check_source: bool,
}

/// The spec rendered into what the servers need.
struct Loaded {
    site: Site,
    tftp_files: Vec<(String, Vec<u8>)>,
    dhcp: crate::dhcp::policy::Config,
    spec: crate::spec::Spec,
}

/// Where the servers' content comes from: read at start and again on
/// each SIGHUP.
struct Source {
    spec: PathBuf,
    images: PathBuf,
    check_source: bool,
    state_dir: PathBuf,
}

impl Source {
    fn load(&self) -> Result<Loaded, CliError> {
        load(&self.spec, &self.images, self.check_source, &self.state_dir)
    }
}

fn load(
    spec_path: &Path,
    images: &Path,
    check_source: bool,
    state_dir: &Path,
) -> Result<Loaded, CliError> {
    let prepared = Prepared::load(spec_path, state_dir)?;
    let files = prepared.all_files()?;
    prepared.keep_key(state_dir)?;
    let spec = prepared.spec.clone();
    let http_files: HashMap<String, String> = files
        .iter()
        .filter(|f| {
            f.path == "boot.ipxe"
                || f.path.starts_with("ipxe/")
                || f.path.starts_with("cloud-config/")
        })
        .map(|f| (f.path.clone(), f.content.clone()))
        .collect();
    let tftp_files = boot_files(files)
        .into_iter()
        .map(|f| (f.path, f.content.into_bytes()))
        .collect();
    Ok(Loaded {
        site: Site {
            cluster: spec.cluster.name.clone(),
            files: http_files,
            inventory: prepared.inventory.clone(),
            names: Names {
                kernel: spec.boot.kernel.clone(),
                initrd: spec.boot.initrd.clone(),
            },
            // Resolved once: `/assets/` checks every file against it.
            images: images.canonicalize().unwrap_or_else(|_| images.to_owned()),
            check_source,
        },
        tftp_files,
        dhcp: crate::dhcp::config::from_spec(&spec),
        spec,
    })
}

struct DhcpGauges(Arc<crate::dhcp::server::Stats>);

impl Gauges for DhcpGauges {
    fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str("# HELP bootfleet_dhcp_requests_total DHCP requests by message type and outcome.\n# TYPE bootfleet_dhcp_requests_total counter\n");
        for ((kind, outcome), n) in self.0.outcomes() {
            let _ = writeln!(
                out,
                "bootfleet_dhcp_requests_total{{type=\"{kind}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# TYPE bootfleet_dhcp_malformed_total counter\nbootfleet_dhcp_malformed_total {}\n# TYPE bootfleet_dhcp_lease_commits_total counter\nbootfleet_dhcp_lease_commits_total {}",
            self.0.malformed.load(Ordering::Relaxed),
            self.0.commits.load(Ordering::Relaxed)
        );
    }
}

struct TftpGauges(Arc<crate::tftp::server::Stats>);

impl Gauges for TftpGauges {
    fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = &self.0;
        out.push_str("# HELP bootfleet_tftp_transfers_total TFTP transfers by result.\n# TYPE bootfleet_tftp_transfers_total counter\n");
        for (result, n) in [
            ("completed", s.completed.load(Ordering::Relaxed)),
            ("client_error", s.client_errors.load(Ordering::Relaxed)),
            ("timed_out", s.timed_out.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(
                out,
                "bootfleet_tftp_transfers_total{{result=\"{result}\"}} {n}"
            );
        }
        out.push_str("# TYPE bootfleet_tftp_refused_total counter\n");
        let mut refused: Vec<_> = s.refused().into_iter().collect();
        refused.sort();
        for (reason, n) in refused {
            let _ = writeln!(
                out,
                "bootfleet_tftp_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# TYPE bootfleet_tftp_bytes_sent_total counter\nbootfleet_tftp_bytes_sent_total {}",
            s.bytes_sent.load(Ordering::Relaxed)
        );
    }
}

pub fn run(args: Args, state_dir: &Path) -> Result<(), CliError> {
    let source = Source {
        spec: args.spec.clone(),
        images: args.images.clone(),
        check_source: args.check_source,
        state_dir: state_dir.to_owned(),
    };
    let loaded = source.load()?;
    if !args.images.is_dir() {
        return Err(CliError::BadInput(format!(
            "the images directory {} does not exist\n  help: create it and put the kernel ({}), initrd ({}) and boot loaders there, or point --images at it",
            args.images.display(),
            loaded.spec.boot.kernel,
            loaded.spec.boot.initrd
        )));
    }
    for f in [&loaded.spec.boot.kernel, &loaded.spec.boot.initrd] {
        if !args.images.join(f).is_file() {
            tracing::warn!(file = %args.images.join(f).display(), "not found: machines will stop at this step");
        }
    }
    let registry = Arc::new(
        Registry::open(
            known(&loaded.site.inventory),
            args.stall_after.saturating_mul(1000),
            Some(state_dir),
        )
        .context("opening the boot timelines")?,
    );
    let net = loaded.spec.network.clone();
    let iface = net.interface.clone();

    // DHCP: its own thread, blocking sockets.
    let stop = Arc::new(AtomicBool::new(false));
    let mut dhcp_thread = None;
    let mut dhcp_pending = None;
    let mut gauges: Vec<Arc<dyn Gauges>> = Vec::new();
    if !args.no_dhcp {
        let mut sockets = vec![(super::dhcp::listen(&iface, args.dhcp_port)?, Port::Dhcp)];
        if net.mode == DhcpMode::Proxy {
            sockets.push((super::dhcp::listen(&iface, 4011)?, Port::PxeBoot));
        }
        let store =
            RedbStore::open(&state_dir.join("leases.redb")).context("opening the lease store")?;
        let mut server = DhcpServer::new(loaded.dhcp.clone(), store).context("loading leases")?;
        let reg = registry.clone();
        server.observer = Some(Box::new(move |r| {
            let failed = r.outcome == "nak";
            let mut detail = format!("dhcp {}", r.outcome);
            for part in [
                r.ip.map(|i| i.to_string()),
                r.arch.clone(),
                r.file.map(str::to_owned),
            ]
            .into_iter()
            .flatten()
            {
                detail.push(' ');
                detail.push_str(&part);
            }
            // An offer is news, an ACK (or a proxy's answer) completes the stage.
            if matches!(
                r.outcome,
                "ack" | "nak" | "proxy_offer" | "proxy_ack" | "offer"
            ) {
                reg.record(Event {
                    mac: r.mac,
                    at: now_ms(),
                    stage: Stage::Dhcp,
                    detail,
                    failed,
                    ip: r.ip.filter(|_| r.outcome == "ack"),
                    arch: r.arch.clone(),
                });
            }
        }));
        gauges.push(Arc::new(DhcpGauges(server.stats.clone())));
        dhcp_pending = Some(server.pending.clone());
        let flag = stop.clone();
        dhcp_thread = Some(std::thread::spawn(move || server.run(&sockets, &flag)));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(async {
        // TFTP.
        let files = Arc::new(Files::new(&args.images, 2 << 30).context("serving the images directory")?);
        files.set_generated(loaded.tftp_files.clone());
        let tftp_addr = args.tftp_listen.unwrap_or(SocketAddr::new(IpAddr::V4(net.server), 69));
        let tftp_socket = super::bind_udp(tftp_addr, "TFTP")?;
        let tftp_addr = tftp_socket.local_addr().context("reading the TFTP address")?;
        let reg = registry.clone();
        let names = loaded.site.names.clone();
        let observer: crate::tftp::server::Observer = Arc::new(move |r| {
            let IpAddr::V4(ip) = r.peer.ip() else { return };
            let Some(mac) = reg.mac_of_ip(ip) else { return };
            reg.record(Event {
                mac,
                at: now_ms(),
                stage: crate::boot::classify::tftp(r.file, &names),
                detail: r.detail.clone(),
                failed: !r.ok,
                ip: None,
                arch: None,
            });
        });
        let tftp = TftpServer::observed(files.clone(), TftpConfig::default(), Some(observer));
        gauges.push(Arc::new(TftpGauges(tftp.stats())));
        let tftp_task = tokio::spawn(tftp.clone().run(tftp_socket));

        // HTTP.
        let http_addr = args.http_listen.unwrap_or(SocketAddr::new(IpAddr::V4(net.server), net.http_port));
        let listener = tokio::net::TcpListener::bind(http_addr).await.map_err(|e| {
            CliError::Runtime(anyhow::anyhow!(
                "cannot listen for HTTP on {http_addr}: {e}\n  help: another program may use the port (change http_port in the spec or use --http-listen), or the address is not this machine's ([network] server)"
            ))
        })?;
        let http_addr = listener.local_addr().context("reading the HTTP address")?;
        let state = AppState::new(loaded.site, registry.clone(), gauges);
        let app = crate::http::router(state.clone());
        let dhcp_text = if args.no_dhcp { "off".to_owned() } else { format!("{iface} port {}", args.dhcp_port) };
        println!("listening: dhcp {dhcp_text}, tftp {tftp_addr}, http http://{http_addr}/");
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        tracing::info!(%tftp_addr, %http_addr, dhcp = %dhcp_text, "serving");

        // Timelines are written behind, once a second.
        let reg = registry.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = reg.flush() {
                    tracing::warn!(error = %e, "boot timelines not saved");
                }
            }
        });

        // SIGHUP: reload the spec, keeping the old one if the new is bad.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        let reload_state = state.clone();
        let reload_files = files.clone();
        let reload_registry = registry.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match source.load() {
                    Ok(l) => {
                        reload_files.set_generated(l.tftp_files);
                        reload_registry.set_known(known(&l.site.inventory));
                        reload_state.replace_site(l.site);
                        if let Some(p) = &dhcp_pending {
                            *p.lock().unwrap_or_else(|e| e.into_inner()) = Some(l.dhcp);
                        }
                        tracing::info!(spec = %source.spec.display(), "spec reloaded");
                    }
                    Err(e) => tracing::error!("spec not reloaded, the old one stays in force:\n{e}"),
                }
            }
        });

        let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(super::shutdown_signal());
        let r = serve.await.context("HTTP server");
        tftp_task.abort();
        r.map_err(CliError::from)
    });
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = dhcp_thread {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "DHCP server failed"),
            Err(_) => tracing::error!("DHCP server thread panicked"),
        }
    }
    registry.flush().context("saving the boot timelines")?;
    tracing::info!("stopped; leases and timelines are on disk");
    result
}
