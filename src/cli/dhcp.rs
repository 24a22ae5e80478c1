//! `bootfleet dhcp SPEC`: the DHCP server on its own.

use std::path::Path;

use anyhow::Context as _;

use super::CliError;
use crate::spec::DhcpMode;

/// Serve DHCP on the spec's interface: reservations for the spec's nodes, a
/// dynamic pool, the PXE boot file for each firmware. Leases are kept in
/// the state directory (leases.redb) and committed before each ACK. With
/// `mode = "proxy"` another server hands out addresses and bootfleet
/// answers PXE clients only, on ports 67 and 4011. Needs root (port 67 and
/// SO_BINDTODEVICE).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet dhcp examples/rack.toml\n  bootfleet --state-dir /var/lib/bootfleet dhcp site.toml"
)]
pub struct Args {
    /// The cluster spec (TOML).
    spec: std::path::PathBuf,
    /// UDP port to listen on.
    #[arg(long, default_value_t = 67)]
    port: u16,
    /// The PXE boot-server port answered in proxy mode.
    #[arg(long, default_value_t = 4011)]
    pxe_port: u16,
}

pub fn run(args: Args, state_dir: &Path) -> Result<(), CliError> {
    let spec = super::load_spec(&args.spec)?;
    let net = &spec.network;
    let sockets = crate::server::dhcp_part::sockets(&spec, args.port, args.pxe_port)
        .map_err(|e| CliError::Runtime(e.into()))?;
    let store = crate::store::open(&spec.state, state_dir)?.leases;
    let mut part = crate::server::dhcp_part::start(
        sockets,
        crate::dhcp::config::from_spec(&spec),
        store,
        None,
    )
    .map_err(|e| CliError::Runtime(e.into()))?;
    let mode = match net.mode {
        DhcpMode::Full => "full",
        DhcpMode::Proxy => "proxy",
    };
    tracing::info!(interface = %net.interface, port = args.port, server = %net.server, mode, "DHCP server ready");
    match net.mode {
        DhcpMode::Full => println!("listening on {} port {}", net.interface, args.port),
        DhcpMode::Proxy => println!(
            "listening on {} ports {} and {} (proxyDHCP)",
            net.interface, args.port, args.pxe_port
        ),
    }
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // A signal, or the DHCP thread ending on its own (an error).
    signals.block_on(async {
        tokio::select! {
            () = super::shutdown_signal() => {}
            () = async {
                while part.is_running() {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            } => {}
        }
    });
    part.stop().context("DHCP server")?;
    tracing::info!("every lease acknowledged is stored");
    Ok(())
}
