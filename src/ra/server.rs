//! Answers router solicitations on the boot interface with
//! [`super::advertisement`], from a thread of its own. Goes quiet for good
//! once another host advertises itself as a router there (a real IPv6
//! router's advertisements must not be contradicted).

use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::{Message, advertisement, parse};

/// What the responder did, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub solicitations: AtomicU64,
    pub advertisements_sent: AtomicU64,
    /// Set once another router was seen: no more answers.
    pub quiet: AtomicBool,
}

/// Why the responder could not start.
#[derive(Debug, thiserror::Error)]
pub enum RaError {
    #[error("IPv6 is disabled on {0}")]
    Ipv6Disabled(String),
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("cannot open an ICMPv6 socket on {iface}")]
    Socket {
        iface: String,
        source: std::io::Error,
    },
}

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

fn index_of(iface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(iface).ok()?;
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (idx != 0).then_some(idx)
}

fn mac_of(iface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    bytes.try_into().ok()
}

/// A responder bound to one interface.
pub struct Responder {
    socket: Socket,
    iface: String,
    index: u32,
    packet: Vec<u8>,
    pub stats: Arc<Stats>,
}

impl Responder {
    /// Opens the ICMPv6 socket on `iface` (root, or CAP_NET_RAW).
    pub fn bind(iface: &str) -> Result<Responder, RaError> {
        let index = index_of(iface).ok_or_else(|| RaError::NoInterface(iface.to_owned()))?;
        if std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"))
            .is_ok_and(|v| v.trim() == "1")
        {
            return Err(RaError::Ipv6Disabled(iface.to_owned()));
        }
        let sock_err = |source| RaError::Socket {
            iface: iface.to_owned(),
            source,
        };
        let socket =
            Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).map_err(sock_err)?;
        socket
            .bind_device(Some(iface.as_bytes()))
            .map_err(sock_err)?;
        // Neighbour discovery only accepts hop limit 255 (RFC 4861 6.1.2).
        socket.set_multicast_hops_v6(255).map_err(sock_err)?;
        socket.set_unicast_hops_v6(255).map_err(sock_err)?;
        socket.set_multicast_loop_v6(false).map_err(sock_err)?;
        socket.set_multicast_if_v6(index).map_err(sock_err)?;
        socket
            .join_multicast_v6(&ALL_ROUTERS, index)
            .map_err(sock_err)?;
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(sock_err)?;
        Ok(Responder {
            socket,
            iface: iface.to_owned(),
            index,
            packet: advertisement(mac_of(iface)),
            stats: Arc::new(Stats::default()),
        })
    }

    /// Answers until `stop` is set.
    pub fn run(self, stop: &AtomicBool) {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
        let to = SocketAddrV6::new(ALL_NODES, 0, 0, self.index);
        while !stop.load(Ordering::Relaxed) {
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    tracing::warn!(iface = %self.iface, error = %crate::error_chain(&e), "router advertisements stopped");
                    return;
                }
            };
            // SAFETY: recv_from initialised the first n bytes.
            let data: Vec<u8> = buf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            let from = from.as_socket_ipv6().map(|a| *a.ip());
            match parse(&data) {
                Some(Message::Solicitation) => {
                    self.stats.solicitations.fetch_add(1, Ordering::Relaxed);
                    if self.stats.quiet.load(Ordering::Relaxed) {
                        continue;
                    }
                    match self.socket.send_to(&self.packet, &to.into()) {
                        Ok(_) => {
                            self.stats
                                .advertisements_sent
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(iface = %self.iface, from = ?from, "router solicitation answered: no router here");
                        }
                        Err(e) => {
                            tracing::debug!(iface = %self.iface, error = %crate::error_chain(&e), "router advertisement not sent")
                        }
                    }
                }
                Some(Message::Advertisement { router_lifetime })
                    if router_lifetime > 0 && !self.stats.quiet.swap(true, Ordering::Relaxed) =>
                {
                    tracing::info!(iface = %self.iface, router = ?from, "another IPv6 router advertises here: no more router advertisements from bootfleet");
                }
                _ => {}
            }
        }
    }
}
