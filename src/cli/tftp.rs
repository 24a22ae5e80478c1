//! `bootfleet tftp`: the TFTP server on its own.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::CliError;
use crate::files::Files;
use crate::tftp::server::Config;
use crate::tftp::transfer::Retry;

/// Serve only TFTP: the boot loaders and images under a root directory and,
/// with --spec, the boot files rendered from the spec (pxelinux.cfg/,
/// boot.ipxe, ipxe/). Read-only. Useful beside another DHCP server, and for
/// testing; `serve` runs the same server with DHCP and HTTP.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet tftp --root images --spec examples/rack.toml\n  bootfleet tftp --root /srv/tftp --listen 10.0.0.2:69\n  bootfleet tftp --root . --listen 127.0.0.1:6969 --max-transfers 100"
)]
pub struct Args {
    /// Directory to serve (boot loaders, kernels, initrds).
    #[arg(long, default_value = "images", value_name = "DIR")]
    root: PathBuf,
    /// Also serve the boot files rendered from this cluster spec.
    #[arg(long, value_name = "SPEC")]
    spec: Option<PathBuf>,
    /// Address and UDP port to listen on (port 0: any free port).
    #[arg(long, default_value = "0.0.0.0:69", value_name = "ADDR")]
    listen: SocketAddr,
    /// Transfers at once; more are refused with "server busy".
    #[arg(long, default_value_t = 512)]
    max_transfers: usize,
    /// File data held in memory at once, in MiB.
    #[arg(long, default_value_t = 2048)]
    max_memory_mib: u64,
    /// Largest window granted to clients that ask for windowsize (RFC 7440).
    #[arg(long, default_value_t = 64)]
    max_windowsize: u16,
    /// Most bytes in one window: larger windows are granted fewer blocks,
    /// so a burst fits the client's socket buffer (64 KiB at most where
    /// the kernel refuses UDP segmentation).
    #[arg(long, default_value_t = crate::tftp::server::DEFAULT_WINDOW_BYTES)]
    max_window_bytes: u32,
    /// Retransmission timeout in milliseconds when the client sets none.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Poll for the ACKs of clients that answer within this many
    /// microseconds instead of sleeping, once a transfer has sent 1 MiB
    /// and while transfers are fewer than the cores: a core busy per quick
    /// transfer, for 2-3 times the throughput over loopback. 0 never polls.
    #[arg(long, default_value_t = crate::tftp::spin::DEFAULT_SPIN.as_micros() as u64)]
    spin_us: u64,
}

pub fn run(args: Args, state_dir: &Path) -> Result<(), CliError> {
    let files = Files::new(&args.root, args.max_memory_mib << 20).map_err(|e| {
        CliError::BadInput(format!(
            "cannot serve {}: {e}\n  help: give --root an existing directory",
            args.root.display()
        ))
    })?;
    if let Some(spec) = &args.spec {
        let (prepared, store) = super::prepare(spec, state_dir)?;
        let (_, generated) = prepared.rendered_keeping_key::<_, CliError>(&*store.keys, |p| {
            Ok(crate::prepare::boot_files(p.all_files()?))
        })?;
        tracing::info!(files = generated.len(), spec = %spec.display(), "serving boot files rendered from the spec");
        files.set_generated(
            generated
                .into_iter()
                .map(|f| (f.path, f.content.into_bytes())),
        );
    }
    let config = Config {
        max_transfers: args.max_transfers,
        max_windowsize: args.max_windowsize.max(1),
        max_window_bytes: args.max_window_bytes.max(8),
        default_timeout: Duration::from_millis(args.timeout_ms.max(1)),
        retry: Retry::default(),
        spin: Duration::from_micros(args.spin_us),
    };
    let socket = super::bind_udp(args.listen, "TFTP")?;
    // The same part as in `serve`: a runtime of its own.
    let mut part = crate::server::tftp_part::start(vec![socket], Arc::new(files), config, None)
        .map_err(|e| CliError::Runtime(e.into()))?;
    println!("listening on {}", part.addr);
    std::io::stdout().flush().ok();
    tracing::info!(addr = %part.addr, root = %part.server.root().display(), "TFTP server ready");
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    signals.block_on(super::shutdown_signal());
    tracing::info!("shutting down");
    part.stop();
    Ok(())
}
