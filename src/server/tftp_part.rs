//! TFTP as a part of a server: [`crate::tftp::server::Server`] on a bound
//! socket, on a runtime of its own. `serve` and `bootfleet tftp` start it
//! the same way.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use super::ServerError;
use crate::files::Files;
use crate::tftp::server::{Config, Observer, Running, Server, Stats};

/// A running TFTP server; dropping it stops it.
pub struct TftpPart {
    /// Where it answers (the first of its addresses).
    pub addr: SocketAddr,
    /// What it counts.
    pub stats: Arc<Stats>,
    /// The server (its images root, its stats).
    pub server: Arc<Server>,
    running: Option<Running>,
}

/// Starts TFTP on `sockets` (one per address it answers at), serving
/// `files` per `config`, each transfer reported to `observer`.
pub fn start(
    sockets: Vec<UdpSocket>,
    files: Arc<Files>,
    config: Config,
    observer: Option<Observer>,
) -> Result<TftpPart, ServerError> {
    let addr = sockets
        .first()
        .ok_or_else(|| ServerError::Io {
            what: "starting TFTP",
            source: std::io::Error::other("no address to answer at"),
        })?
        .local_addr()
        .map_err(|source| ServerError::Io {
            what: "reading the TFTP address",
            source,
        })?;
    let server = Server::observed(files, config, observer);
    let running = server
        .clone()
        .spawn_runtime_on(sockets)
        .map_err(|source| ServerError::Io {
            what: "starting the TFTP server",
            source,
        })?;
    Ok(TftpPart {
        addr,
        stats: server.stats(),
        server,
        running: Some(running),
    })
}

impl TftpPart {
    /// Stops it (transfers under way end).
    pub fn stop(&mut self) {
        if self.running.take().is_some() {
            tracing::info!(counters = %self.stats.summary(), "TFTP stopped");
        }
    }
}
