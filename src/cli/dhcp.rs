//! `bootfleet dhcp SPEC`: the DHCP server on its own.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

use super::CliError;
use crate::dhcp::server::{Port, Server};
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
    let iface = spec.network.interface.clone();
    let mut sockets = vec![(listen(&iface, args.port)?, Port::Dhcp)];
    if spec.network.mode == DhcpMode::Proxy {
        sockets.push((listen(&iface, args.pxe_port)?, Port::PxeBoot));
    }
    let store = crate::store::open(&spec.state, state_dir)?.leases;
    let mut server =
        Server::new(crate::dhcp::config::from_spec(&spec), store).context("loading leases")?;
    let mode = match spec.network.mode {
        DhcpMode::Full => "full",
        DhcpMode::Proxy => "proxy",
    };
    tracing::info!(interface = %iface, port = args.port, server = %spec.network.server, mode, "DHCP server ready");
    match spec.network.mode {
        DhcpMode::Full => println!("listening on {iface} port {}", args.port),
        DhcpMode::Proxy => println!(
            "listening on {iface} ports {} and {} (proxyDHCP)",
            args.port, args.pxe_port
        ),
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(super::shutdown_signal());
        flag.store(true, Ordering::Relaxed);
    });
    server.run(&sockets, &stop).context("DHCP server")?;
    tracing::info!(
        counters = %server.stats.summary(),
        "DHCP server stopped; every lease acknowledged is stored"
    );
    Ok(())
}

/// Binds `port` on `iface`, or says what to fix.
pub(super) fn listen(iface: &str, port: u16) -> Result<std::net::UdpSocket, CliError> {
    crate::server::sockets::dhcp(iface, port).map_err(|e| CliError::Runtime(e.into()))
}
