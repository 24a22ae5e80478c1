//! `bootfleet serve SPEC`: DHCP, TFTP and HTTP in one process, every
//! machine's boot timeline, the status page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::CliError;

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
    /// Seconds an HTTP client has to send a request's header, and that a
    /// kept-alive connection may idle between requests.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    http_header_timeout: u64,
    /// HTTP connections open at once; past it, new ones wait.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    http_max_connections: usize,
    /// HTTP connections open at once from one client address; more are
    /// closed at once (and counted in /metrics).
    #[arg(long, default_value_t = 256, value_name = "N")]
    http_max_per_client: usize,
    /// Mark this server as the boot server of `bootfleet cluster` NAME, so
    /// `cluster status` and `cluster down` find it (by its command line).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
}

pub fn run(args: Args, state_dir: &Path) -> Result<(), CliError> {
    let server = crate::server::start(crate::server::Options {
        spec: args.spec.clone(),
        images: args.images.clone(),
        state_dir: state_dir.to_owned(),
        stall_after_ms: args.stall_after.saturating_mul(1000),
        http_listen: args.http_listen,
        tftp_listen: args.tftp_listen,
        tftp_spin: Duration::from_micros(args.tftp_spin_us),
        max_memory_bytes: args.max_memory_mib << 20,
        dhcp_port: (!args.no_dhcp).then_some(args.dhcp_port),
        check_source: args.check_source,
        cluster: args.cluster.is_some(),
        http_limits: crate::http::listen::Limits {
            header_timeout: Duration::from_secs(args.http_header_timeout.max(1)),
            connections: args.http_max_connections.max(1),
            per_client: args.http_max_per_client.max(1),
        },
    })?;
    // SIGHUP reloads; SIGTERM and Ctrl-C stop; a part that dies stops too.
    // The handlers are in place before "listening" is printed, so a signal
    // sent as soon as the server says it is ready is never the default
    // (fatal) one.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let (mut hup, mut term, mut int) = {
        let _guard = runtime.enter();
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        )
    };
    let a = server.addrs().clone();
    println!(
        "listening: dhcp {}, tftp {}, http http://{}/",
        a.dhcp, a.tftp, a.http
    );
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    tracing::info!(tftp_addr = %a.tftp, http_addr = %a.http, dhcp = %a.dhcp, cluster = args.cluster.as_deref().unwrap_or("-"), "serving");
    let notifier = crate::server::notify::Notifier::from_env();
    if let Some(n) = &notifier {
        n.send(&format!(
            "READY=1\nSTATUS=serving: dhcp {}, tftp {}, http {}",
            a.dhcp, a.tftp, a.http
        ));
    }

    let server = std::sync::Arc::new(server);
    let watched = server.clone();
    let notifier = notifier.as_ref();
    runtime.block_on(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut watchdog = Watchdog::default();
        loop {
            tokio::select! {
                _ = int.recv() => return Ok::<(), CliError>(()),
                _ = term.recv() => return Ok(()),
                Some(()) = hup.recv() => {
                    if let Some(n) = notifier {
                        n.send("RELOADING=1");
                    }
                    let s = watched.clone();
                    match tokio::task::spawn_blocking(move || s.reload()).await {
                        Ok(Ok(())) => tracing::info!(spec = %watched.spec_path().display(), "spec reloaded"),
                        Ok(Err(e)) => tracing::error!("spec not reloaded, the old one stays in force:\n{}", describe(e)),
                        Err(e) => tracing::error!(error = %crate::error_chain(&e), "reload task failed"),
                    }
                    if let Some(n) = notifier {
                        n.send("READY=1");
                    }
                }
                _ = tick.tick() => {
                    if !watched.is_running() {
                        tracing::error!("a part of the server stopped; stopping the rest");
                        return Ok(());
                    }
                    if let Some(n) = notifier {
                        watchdog.tick(n, &watched);
                    }
                }
            }
        }
    })?;
    if let Some(n) = notifier {
        n.send("STOPPING=1");
    }
    let server = std::sync::Arc::into_inner(server).expect("the signal loop holds no other handle");
    server.stop()?;
    tracing::info!("stopped; leases and timelines are on disk");
    Ok(())
}

/// Pings systemd's watchdog every half interval while every part is
/// well; says once when it stops pinging and why, and when it resumes.
#[derive(Default)]
struct Watchdog {
    last: Option<std::time::Instant>,
    withheld: bool,
}

impl Watchdog {
    fn tick(&mut self, n: &crate::server::notify::Notifier, server: &crate::server::Server) {
        let Some(every) = n.watchdog else { return };
        if self.last.is_some_and(|t| t.elapsed() < every / 2) {
            return;
        }
        let sick: Vec<String> = server
            .health()
            .into_iter()
            .filter(|p| !p.ok)
            .map(|p| format!("{}: {}", p.part, p.detail))
            .collect();
        if sick.is_empty() {
            if std::mem::take(&mut self.withheld) {
                tracing::info!("every part is well again; the systemd watchdog is pinged again");
                n.send("STATUS=serving");
            }
            n.send("WATCHDOG=1");
        } else if !std::mem::replace(&mut self.withheld, true) {
            let why = sick.join("; ");
            tracing::error!(parts = %why, "a part is unwell; the systemd watchdog is no longer pinged (systemd restarts the server unless it recovers)");
            n.send(&format!("STATUS=unwell: {why}"));
        }
        self.last = Some(std::time::Instant::now());
    }
}

/// A server error as the command line prints it (a bad spec with every
/// diagnostic and its help).
fn describe(e: crate::server::ServerError) -> String {
    match CliError::from(e) {
        CliError::BadInput(text) => text,
        CliError::Runtime(e) => format!("{e:#}"),
    }
}
