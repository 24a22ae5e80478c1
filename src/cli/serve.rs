//! `bootfleet serve SPEC`: DHCP, TFTP and HTTP in one process, every
//! machine's boot timeline, the status page.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;

mod gauges;
mod live;

use gauges::{DhcpGauges, FileGauges, TftpGauges};
use live::{Live, Source};

use super::CliError;
use crate::boot::{Event, Registry, Stage, known, now_ms};
use crate::dhcp::server::{Port, Server as DhcpServer};
use crate::dhcp::store::RedbStore;
use crate::http::{AppState, EnrolRequest, Gauges};
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
    /// Poll for the ACKs of TFTP clients that answer within this many
    /// microseconds, once a transfer has sent 1 MiB and while transfers are
    /// fewer than the cores (see `bootfleet tftp --help`). 0 never polls.
    #[arg(long, default_value_t = crate::tftp::spin::DEFAULT_SPIN.as_micros() as u64, value_name = "US")]
    tftp_spin_us: u64,
    /// File data held in memory at once, in MiB, for TFTP and HTTP
    /// together (one copy of each file). Past it, TFTP answers "server
    /// busy" and HTTP serves from disk.
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    max_memory_mib: u64,
    /// Do not serve DHCP (another server gives addresses and boot files).
    #[arg(long)]
    no_dhcp: bool,
    /// DHCP port (67; tests use others).
    #[arg(long, default_value_t = 67)]
    dhcp_port: u16,
    /// Serve a node's cloud-config only to the address the spec gives it.
    #[arg(long)]
    check_source: bool,
    /// Mark this server as the boot server of `bootfleet cluster` NAME, so
    /// `cluster status` and `cluster down` find it (by its command line).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
}

pub fn run(args: Args, state_dir: &Path) -> Result<(), CliError> {
    let source = Source {
        spec: args.spec.clone(),
        images: args.images.clone(),
        check_source: args.check_source,
        state_dir: state_dir.to_owned(),
    };
    let enrolled =
        crate::inventory::enrol::load(state_dir).context("reading the enrolled machines")?;
    let prepared = source.read()?;
    let loaded = source.render(&prepared, &enrolled)?;
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

    // Machines to enrol, from DHCP and from script requests.
    let (enrol_tx, enrol_rx) = tokio::sync::mpsc::channel::<EnrolRequest>(1024);

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
        let enrol = enrol_tx.clone();
        server.observer = Some(Box::new(move |r| {
            // A machine that booted and got its address here may be one
            // to enrol (checked by the enroller; a full queue drops it and
            // the script request enrols it instead).
            if let ("ack", Some(ip), Some(_)) = (r.outcome, r.ip, r.file) {
                let _ = enrol.try_send(EnrolRequest {
                    mac: r.mac,
                    ip,
                    done: None,
                });
            }
            let failed = matches!(r.outcome, "nak" | "unknown_refused");
            let mut detail = match r.outcome {
                "unknown_refused" => "dhcp refused: not in the spec and no [enrolment]".to_owned(),
                other => format!("dhcp {other}"),
            };
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
                "ack" | "nak" | "proxy_offer" | "proxy_ack" | "offer" | "unknown_refused"
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
        .on_thread_start(defer_to_udp)
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(async {
        // Whole files in memory (--max-memory-mib), shared by TFTP and
        // HTTP's /assets/: an initrd fetched both ways is held once.
        let files = Arc::new(Files::new(&args.images, args.max_memory_mib << 20).context("serving the images directory")?);
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
        let tftp_config = TftpConfig {
            spin: Duration::from_micros(args.tftp_spin_us),
            ..TftpConfig::default()
        };
        let tftp = TftpServer::observed(files.clone(), tftp_config, Some(observer));
        gauges.push(Arc::new(TftpGauges(tftp.stats())));
        gauges.push(Arc::new(FileGauges(files.clone())));
        let tftp_running = tftp.clone().spawn_runtime(tftp_socket).context("starting the TFTP server")?;

        // HTTP.
        let http_addr = args.http_listen.unwrap_or(SocketAddr::new(IpAddr::V4(net.server), net.http_port));
        let listener = tokio::net::TcpListener::bind(http_addr).await.map_err(|e| {
            CliError::Runtime(anyhow::anyhow!(
                "cannot listen for HTTP on {http_addr}: {e}\n  help: another program may use the port (change http_port in the spec or use --http-listen), or the address is not this machine's ([network] server)"
            ))
        })?;
        let http_addr = listener.local_addr().context("reading the HTTP address")?;
        let mut state = AppState::new(loaded.site, registry.clone(), gauges, files.clone());
        state.enrol = Some(enrol_tx);
        let app = crate::http::router(state.clone());
        let dhcp_text = if args.no_dhcp { "off".to_owned() } else { format!("{iface} port {}", args.dhcp_port) };
        println!("listening: dhcp {dhcp_text}, tftp {tftp_addr}, http http://{http_addr}/");
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        tracing::info!(%tftp_addr, %http_addr, dhcp = %dhcp_text, cluster = args.cluster.as_deref().unwrap_or("-"), "serving");

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

        // Enrolment and SIGHUP both replace what the servers serve.
        let mut live = Live::new(source, prepared, enrolled, state.clone(), files.clone(), registry.clone());
        live.dhcp_pending = dhcp_pending;
        let live = Arc::new(live);
        tokio::spawn(live::enrol_loop(live.clone(), enrol_rx));
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let l = live.clone();
                match tokio::task::spawn_blocking(move || l.reload()).await {
                    Ok(Ok(())) => tracing::info!(spec = %live.source.spec.display(), "spec reloaded"),
                    Ok(Err(e)) => tracing::error!("spec not reloaded, the old one stays in force:\n{e:#}"),
                    Err(e) => tracing::error!(error = %e, "reload task failed"),
                }
            }
        });

        let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(super::shutdown_signal());
        let r = serve.await.context("HTTP server");
        drop(tftp_running);
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

/// How many nice levels the HTTP runtime's threads sit below DHCP and TFTP.
const HTTP_NICE: libc::c_int = 5;

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
