//! DHCP as a part of a server: its sockets on the interface of every
//! direct segment (the DHCP port, and in proxy mode the PXE boot port 4011
//! too; relayed requests arrive on them as well) and a thread of its own
//! that runs [`crate::dhcp::server::Server`] on them. `serve` and
//! `bootfleet dhcp` start it the same way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::ServerError;
use super::sockets::{self, BindError};
use crate::dhcp::server::{Bound, Observer, Port, Server, Stats};
use crate::dhcp::site::Site;
use crate::spec::{DhcpMode, Spec};
use crate::store::Leases;

/// The sockets DHCP answers on for `spec`: `port` on the interface of
/// every direct segment, and `pxe_port` too in proxy mode; each knows its
/// segment.
pub fn sockets(spec: &Spec, port: u16, pxe_port: u16) -> Result<Vec<Bound>, BindError> {
    let mut socks = Vec::new();
    for (i, seg) in spec.segments.iter().enumerate() {
        let Some(iface) = seg.interface() else {
            continue;
        };
        socks.push(Bound {
            socket: sockets::dhcp(iface, port)?,
            port: Port::Dhcp,
            segment: Some(i),
        });
        if spec.network.mode == DhcpMode::Proxy {
            socks.push(Bound {
                socket: sockets::dhcp(iface, pxe_port)?,
                port: Port::PxeBoot,
                segment: Some(i),
            });
        }
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
    pub pending: Arc<Mutex<Option<Site>>>,
}

/// Starts DHCP on `socks` with `config`, leases in `leases`, each answer
/// reported to `observer`.
pub fn start(
    socks: Vec<Bound>,
    config: Site,
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
