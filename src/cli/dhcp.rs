//! `bootfleet dhcp SPEC`: the DHCP server on its own.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

use super::CliError;
use crate::dhcp::server::{Server, bind};
use crate::dhcp::store::RedbStore;
use crate::spec::DhcpMode;

/// Serve DHCP on the spec's interface: reservations for the spec's nodes, a
/// dynamic pool, the PXE boot file for each firmware. Leases are kept in
/// the state directory (leases.redb) and committed before each ACK. Needs
/// root (port 67 and SO_BINDTODEVICE). Full mode only for now.
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
}

pub fn run(args: Args, state_dir: &Path) -> Result<(), CliError> {
    let spec = super::prepare::load_spec(&args.spec)?;
    if spec.network.mode == DhcpMode::Proxy {
        return Err(CliError::BadInput(format!(
            "{}: [network] mode = \"proxy\" is not served yet\n  help: use mode = \"full\", or serve proxyDHCP with another tool for now",
            args.spec.display()
        )));
    }
    let iface = spec.network.interface.clone();
    let socket = bind(&iface, args.port).map_err(|e| {
        let help = match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => "port 67 and binding to an interface need root (or CAP_NET_BIND_SERVICE and CAP_NET_RAW)".to_owned(),
            Some(libc::ENODEV) => format!("there is no interface `{iface}`: fix [network] interface (ip -br link lists them)"),
            Some(libc::EADDRINUSE) => "another DHCP server uses this port: stop it (dnsmasq, kea, dhcpd) or use proxy mode".to_owned(),
            _ => "check [network] interface and your privileges".to_owned(),
        };
        CliError::Runtime(anyhow::anyhow!("cannot listen for DHCP on {iface} port {}: {e}\n  help: {help}", args.port))
    })?;
    let store =
        RedbStore::open(&state_dir.join("leases.redb")).context("opening the lease store")?;
    let mut server =
        Server::new(crate::dhcp::config::from_spec(&spec), store).context("loading leases")?;
    tracing::info!(interface = %iface, port = args.port, server = %spec.network.server, "DHCP server ready");
    println!("listening on {iface} port {}", args.port);
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
    server.run(&socket, &stop).context("DHCP server")?;
    tracing::info!(
        acks = server.stats.acks.load(Ordering::Relaxed),
        "DHCP server stopped; every lease is on disk"
    );
    Ok(())
}
