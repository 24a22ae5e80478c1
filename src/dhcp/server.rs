//! The DHCP server's socket loop: receive, decide with [`super::policy`],
//! make the lease change durable, then answer. One thread, blocking
//! sockets: the policy is fast and the store commit must come before the
//! ACK anyway.
//!
//! The socket is bound to port 67 on the spec's interface only
//! (SO_BINDTODEVICE), so requests on other interfaces are never answered.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dhcproto::Encodable;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info, warn};

use super::policy::{Change, Config, Dest, client_mac, decide};
use super::pool::Table;
use super::store::{LeaseStore, StoreError};

/// BOOTP's minimum message size; some PXE ROMs ignore shorter replies.
const MIN_REPLY: usize = 300;

/// Counters for logs and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    pub offers: AtomicU64,
    pub acks: AtomicU64,
    pub naks: AtomicU64,
    pub ignored: AtomicU64,
    pub store_errors: AtomicU64,
}

/// Opens UDP `port` on `interface` with broadcast allowed.
pub fn bind(interface: &str, port: u16) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    Ok(s.into())
}

/// A server over a lease table loaded from `store`.
pub struct Server<S> {
    cfg: Config,
    table: Table,
    store: S,
    pub stats: Stats,
    /// Reply ports: 68 for clients, 67 for relays (tests may change them).
    pub client_port: u16,
    pub relay_port: u16,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<S: LeaseStore> Server<S> {
    /// Loads every stored lease.
    pub fn new(cfg: Config, store: S) -> Result<Server<S>, StoreError> {
        let mut table = Table::default();
        let leases = store.load()?;
        info!(leases = leases.len(), "leases recovered");
        for l in leases {
            table.insert(l);
        }
        Ok(Server {
            cfg,
            table,
            store,
            stats: Stats::default(),
            client_port: 68,
            relay_port: 67,
        })
    }

    /// Serves until `stop` is set (checked at least once a second).
    pub fn run(&mut self, socket: &UdpSocket, stop: &AtomicBool) -> std::io::Result<()> {
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut buf = vec![0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let (len, from) = match socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    debug!(error = %e, "receive error");
                    continue;
                }
            };
            self.handle(socket, &buf[..len], from);
        }
        Ok(())
    }

    /// Handles one datagram.
    pub fn handle(&mut self, socket: &UdpSocket, datagram: &[u8], from: SocketAddr) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let req = match super::wire::decode(datagram) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(%from, error = %e, "malformed DHCP datagram dropped");
                return;
            }
        };
        let d = decide(&req, &self.cfg, &self.table, now());
        let mac = client_mac(&req).map(|m| m.to_string()).unwrap_or_default();
        let boot = d.boot.as_ref().map(|b| b.file.as_str().to_owned());
        let arch = d.boot.as_ref().map(|b| b.firmware.name());
        if let Some(v) = d.boot.as_ref().and_then(|b| b.unknown_arch) {
            warn!(%mac, xid = req.xid(), arch = v, "unknown client architecture (option 93); answered with the spec's BIOS loader");
        }
        match &d.change {
            Some(Change::Bind(lease)) => {
                if let Err(e) = self.store.put(lease) {
                    // No durable lease, no ACK: the client will ask again.
                    self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(%mac, ip = %lease.ip, error = %e, "lease not stored; ACK withheld");
                    return;
                }
                self.table.insert(lease.clone());
            }
            Some(Change::Offer(lease)) => self.table.insert(lease.clone()),
            Some(Change::Release { ip, mac: m }) => {
                if self.table.by_ip(*ip).is_some_and(|l| l.mac == *m) {
                    if let Err(e) = self.store.remove(*ip) {
                        warn!(ip = %ip, error = %e, "released lease not removed from the store");
                    }
                }
                self.table.release(*ip, *m);
            }
            Some(Change::Decline { ip, until }) => {
                if let Err(e) = self.store.remove(*ip) {
                    warn!(ip = %ip, error = %e, "declined lease not removed from the store");
                }
                warn!(%mac, ip = %ip, "client declined the address (in use by someone else); quarantined");
                self.table.quarantine(*ip, *until);
            }
            None => {}
        }
        let counter = match d.outcome {
            "offer" => &self.stats.offers,
            "ack" => &self.stats.acks,
            "nak" => &self.stats.naks,
            _ => &self.stats.ignored,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let Some((reply, dest)) = d.reply else {
            debug!(%mac, xid = req.xid(), outcome = d.outcome, "no reply");
            return;
        };
        info!(%mac, xid = req.xid(), outcome = d.outcome, ip = %reply.yiaddr(), arch = arch.as_deref().unwrap_or("-"), boot = boot.as_deref().unwrap_or("-"), "DHCP");
        let mut bytes = match reply.to_vec() {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "reply could not be encoded");
                return;
            }
        };
        if bytes.len() < MIN_REPLY {
            bytes.resize(MIN_REPLY, 0);
        }
        let to = match dest {
            Dest::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, self.client_port),
            Dest::Client(ip) => SocketAddrV4::new(ip, self.client_port),
            Dest::Relay(ip) => SocketAddrV4::new(ip, self.relay_port),
        };
        if let Err(e) = socket.send_to(&bytes, to) {
            warn!(%to, error = %e, "reply not sent");
        }
    }
}
