//! DHCP as a part of a server: its sockets on the spec's interface (the
//! DHCP port, and in proxy mode the PXE boot port 4011 too) and a thread
//! of its own that runs [`crate::dhcp::server::Server`] on them. `serve`
//! and `bootfleet dhcp` start it the same way.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::ServerError;
use super::sockets::{self, BindError};
use crate::dhcp::policy::Config;
use crate::dhcp::server::{Observer, Port, Server, Stats};
use crate::spec::{DhcpMode, Network};
use crate::store::Leases;

/// The sockets DHCP answers on for `net`: `port` on its interface, and
/// `pxe_port` too in proxy mode.
pub fn sockets(
    net: &Network,
    port: u16,
    pxe_port: u16,
) -> Result<Vec<(UdpSocket, Port)>, BindError> {
    let mut socks = vec![(sockets::dhcp(&net.interface, port)?, Port::Dhcp)];
    if net.mode == DhcpMode::Proxy {
        socks.push((sockets::dhcp(&net.interface, pxe_port)?, Port::PxeBoot));
    }
    Ok(socks)
}

/// A running DHCP server.
pub struct DhcpPart {
    thread: Option<JoinHandle<std::io::Result<()>>>,
    stop: Arc<AtomicBool>,
    /// What it counts (metrics, health, the log at the end).
    pub stats: Arc<Stats>,
    /// A new configuration it takes at its next packet (a reloaded spec).
    pub pending: Arc<Mutex<Option<Config>>>,
}

/// Starts DHCP on `socks` with `config`, leases in `leases`, each answer
/// reported to `observer`.
pub fn start(
    socks: Vec<(UdpSocket, Port)>,
    config: Config,
    leases: Arc<dyn Leases>,
    observer: Option<Observer>,
) -> Result<DhcpPart, ServerError> {
    let mut server = Server::new(config, leases).map_err(|source| ServerError::Store {
        what: "loading leases",
        source,
    })?;
    server.observer = observer;
    let stats = server.stats.clone();
    let pending = server.pending.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || server.run(&socks, &flag))
        .map_err(|source| ServerError::Io {
            what: "starting the DHCP thread",
            source,
        })?;
    Ok(DhcpPart {
        thread: Some(thread),
        stop,
        stats,
        pending,
    })
}

impl DhcpPart {
    /// Whether its thread still runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops it and waits; every lease it acknowledged is stored.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        self.stop.store(true, Ordering::Relaxed);
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        let r = match t.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServerError::Dhcp(e)),
            Err(_) => Err(ServerError::Panicked("DHCP")),
        };
        tracing::info!(counters = %self.stats.summary(), "DHCP stopped");
        r
    }
}

impl Drop for DhcpPart {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
