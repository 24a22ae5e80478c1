//! The server's shell: real UDP sockets on loopback, requests relayed
//! (giaddr 127.0.0.1, so the replies come back to the test's socket by
//! unicast), the batch loop and group commit, over a lease store that
//! fails on demand: [`LeasesTestDouble`], a stand-in for the store
//! contract (the embedded and etcd stores are tested against the real
//! thing in `store::conformance`; a real store cannot be told to fail a
//! commit when a test wants it to).

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType};
use dhcproto::{Decodable, Decoder, Encodable};

use super::{Bound, Port, Server, unprivileged_size};
use crate::dhcp::policy::Config;
use crate::dhcp::policy::tests::{cfg, kind, msg};
use crate::dhcp::site::Site;
use crate::spec::Mac;
use crate::store::{Applied, Lease, Leases, Op, StoreError};

/// A lease store that fails every commit while `failing` is set, and
/// otherwise records what it was given.
#[derive(Default)]
struct LeasesTestDouble {
    failing: AtomicBool,
    shared: bool,
    stored: Mutex<Vec<Lease>>,
    commits: Mutex<Vec<usize>>,
}

impl Leases for Arc<LeasesTestDouble> {
    fn load(&self) -> Result<Vec<Lease>, StoreError> {
        Ok(self.stored.lock().unwrap().clone())
    }

    fn apply(&self, ops: &[Op]) -> Result<Vec<Applied>, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                path: "(test double failing on demand)".into(),
                source: std::io::Error::other("commit refused"),
            });
        }
        self.commits.lock().unwrap().push(ops.len());
        let mut stored = self.stored.lock().unwrap();
        for op in ops {
            if let Op::Put(l) = op {
                stored.retain(|s| s.ip != l.ip);
                stored.push(l.clone());
            }
        }
        Ok(vec![Applied::Done; ops.len()])
    }

    fn shared(&self) -> bool {
        self.shared
    }
}

const RESERVED: Mac = Mac([0x52, 0x54, 0, 0xbf, 0, 1]);

/// The policy tests' configuration moved to loopback.
fn loopback() -> Config {
    let mut c = cfg();
    c.server = Ipv4Addr::new(127, 0, 0, 2);
    c.subnet = "127.0.0.0/24".parse().unwrap();
    c.gateway = None;
    c.pool.first = Ipv4Addr::new(127, 0, 0, 100);
    c.pool.last = Ipv4Addr::new(127, 0, 0, 199);
    c.pool.reservations = HashMap::from([(RESERVED, Ipv4Addr::new(127, 0, 0, 10))]);
    c.pool.excluded = [Ipv4Addr::new(127, 0, 0, 10)].into_iter().collect();
    c
}

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0xbf, 1, n]
}

/// A client message relayed by 127.0.0.1.
fn relayed(kind: MessageType, mac: [u8; 6], opts: Vec<DhcpOption>) -> Vec<u8> {
    let mut m = msg(kind, mac, opts);
    m.set_giaddr(Ipv4Addr::LOCALHOST);
    m.to_vec().unwrap()
}

fn select(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    relayed(
        MessageType::Request,
        mac,
        vec![
            DhcpOption::ServerIdentifier(Ipv4Addr::new(127, 0, 0, 2)),
            DhcpOption::RequestedIpAddress(ip),
        ],
    )
}

/// A server and a relay's socket on loopback.
struct Rig {
    server: Server<Arc<LeasesTestDouble>>,
    socket: UdpSocket,
    relay: UdpSocket,
}

impl Rig {
    fn new(store: Arc<LeasesTestDouble>) -> Rig {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
        relay
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut server = Server::new(Site::one(loopback()), store).unwrap();
        server.relay_port = relay.local_addr().unwrap().port();
        Rig {
            server,
            socket,
            relay,
        }
    }

    /// Sends `datagrams` while the server is not reading, then lets it
    /// serve them (they are read as one batch) and collects the replies.
    fn exchange(&mut self, datagrams: &[Vec<u8>]) -> Vec<Message> {
        let to = self.socket.local_addr().unwrap();
        for d in datagrams {
            self.relay.send_to(d, to).unwrap();
        }
        let stop = AtomicBool::new(false);
        let sockets = [Bound {
            socket: self.socket.try_clone().unwrap(),
            port: Port::Dhcp,
            segment: Some(0),
        }];
        let server = &mut self.server;
        let relay = &self.relay;
        std::thread::scope(|s| {
            let run = s.spawn(|| server.run(&sockets, &stop));
            let mut replies = Vec::new();
            let mut buf = [0u8; 1536];
            while let Ok((n, _)) = relay.recv_from(&mut buf) {
                replies.push(Message::decode(&mut Decoder::new(&buf[..n])).unwrap());
            }
            stop.store(true, Ordering::SeqCst);
            run.join().unwrap().unwrap();
            replies
        })
    }
}

fn discover(mac: [u8; 6]) -> Vec<u8> {
    relayed(MessageType::Discover, mac, vec![])
}

#[test]
fn an_ack_is_withheld_while_its_commit_fails_and_sent_once_the_store_commits() {
    let store = Arc::new(LeasesTestDouble::default());
    let mut rig = Rig::new(store.clone());
    let offer = rig.exchange(&[discover(mac(1))]);
    assert_eq!(offer.len(), 1);
    assert_eq!(kind(&offer[0]), MessageType::Offer);
    let ip = offer[0].yiaddr();
    store.failing.store(true, Ordering::SeqCst);
    let none = rig.exchange(&[select(mac(1), ip)]);
    assert!(none.is_empty(), "no ACK without its commit: {none:?}");
    assert_eq!(rig.server.stats.store_errors.load(Ordering::Relaxed), 1);
    assert!(store.stored.lock().unwrap().is_empty());
    // The client asks again once the store is back: the same address.
    store.failing.store(false, Ordering::SeqCst);
    let ack = rig.exchange(&[select(mac(1), ip)]);
    assert_eq!(ack.len(), 1);
    assert_eq!((kind(&ack[0]), ack[0].yiaddr()), (MessageType::Ack, ip));
    let stored = store.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].ip, stored[0].mac), (ip, Mac(mac(1))));
}

#[test]
fn requests_read_together_share_one_commit_and_a_malformed_one_is_counted_and_dropped() {
    let store = Arc::new(LeasesTestDouble::default());
    let mut rig = Rig::new(store.clone());
    let mut discovers: Vec<Vec<u8>> = (1..=40).map(|n| discover(mac(n))).collect();
    discovers.insert(7, vec![1, 2, 3]);
    let offers = rig.exchange(&discovers);
    assert_eq!(offers.len(), 40);
    assert_eq!(rig.server.stats.malformed.load(Ordering::Relaxed), 1);
    assert!(
        store.commits.lock().unwrap().is_empty(),
        "offers need no commit"
    );
    let requests: Vec<Vec<u8>> = offers
        .iter()
        .map(|o| {
            let m: [u8; 6] = o.chaddr()[..6].try_into().unwrap();
            select(m, o.yiaddr())
        })
        .collect();
    let acks = rig.exchange(&requests);
    assert_eq!(acks.len(), 40);
    assert!(acks.iter().all(|a| kind(a) == MessageType::Ack));
    assert_eq!(
        *store.commits.lock().unwrap(),
        vec![40],
        "one commit for 40 ACKs"
    );
    assert_eq!(rig.server.stats.commits.load(Ordering::Relaxed), 1);
    let mut ips: Vec<Ipv4Addr> = acks.iter().map(|a| a.yiaddr()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 40, "forty addresses");
}

#[test]
fn a_shared_store_away_still_answers_reservations_and_known_renewals_but_no_new_lease() {
    // A pool lease bound earlier, with 100 s left.
    let ip = Ipv4Addr::new(127, 0, 0, 150);
    let store = Arc::new(LeasesTestDouble {
        shared: true,
        stored: Mutex::new(vec![Lease {
            ip,
            mac: Mac(mac(1)),
            expires: crate::clock::now_secs() + 100,
        }]),
        ..LeasesTestDouble::default()
    });
    let mut rig = Rig::new(store.clone());
    store.failing.store(true, Ordering::SeqCst);
    // A shared store's offers are claimed first: none for a new machine.
    assert!(rig.exchange(&[discover(mac(2))]).is_empty());
    // The reservation is answered; so is the known lease's renewal, for
    // no longer than it has left.
    let reserved = rig.exchange(&[
        discover(RESERVED.0),
        select(RESERVED.0, Ipv4Addr::new(127, 0, 0, 10)),
        select(mac(1), ip),
    ]);
    let kinds: Vec<(MessageType, Ipv4Addr)> =
        reserved.iter().map(|m| (kind(m), m.yiaddr())).collect();
    assert!(
        kinds.contains(&(MessageType::Ack, Ipv4Addr::new(127, 0, 0, 10))),
        "{kinds:?}"
    );
    let renewal = reserved
        .iter()
        .find(|m| m.yiaddr() == ip)
        .expect("the known lease renewed");
    assert_eq!(kind(renewal), MessageType::Ack);
    let lease_time = renewal.opts().iter().find_map(|(_, o)| match o {
        DhcpOption::AddressLeaseTime(t) => Some(*t),
        _ => None,
    });
    assert!(
        lease_time.is_some_and(|t| t <= 100 && t > 90),
        "the time it has left, not a new hour: {lease_time:?}"
    );
    assert_eq!(store.stored.lock().unwrap().len(), 1, "nothing new stored");
}

#[test]
fn an_unprivileged_receive_buffer_grows_to_the_cap_and_never_shrinks() {
    // Capped by rmem_max.
    assert_eq!(
        unprivileged_size(212_992, 16 << 20, Some(4 << 20)),
        Some(4 << 20)
    );
    // Under the cap: what was asked.
    assert_eq!(
        unprivileged_size(212_992, 1 << 20, Some(4 << 20)),
        Some(1 << 20)
    );
    // rmem_default raised above rmem_max: asking would shrink it.
    assert_eq!(unprivileged_size(8 << 20, 16 << 20, Some(212_992)), None);
    // rmem_max unreadable: ask, the kernel caps it.
    assert_eq!(unprivileged_size(0, 16 << 20, None), Some(16 << 20));
}

#[test]
fn leases_long_expired_are_forgotten_from_the_table_and_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::embedded::Embedded::open(dir.path()).unwrap();
    let (now, keep) = (1_000_000u64, 3600u64);
    let lease = |n: u8, expires: u64| Lease {
        ip: Ipv4Addr::new(127, 0, 0, 100 + n),
        mac: Mac(mac(n)),
        expires,
    };
    store
        .apply(&[
            Op::Put(lease(1, now - keep - 10)),
            Op::Put(lease(2, now - keep + 10)),
            Op::Put(lease(3, now + 100)),
        ])
        .unwrap();
    let mut c = loopback();
    c.keep_expired_secs = keep;
    let mut server = Server::new(Site::one(c), store).unwrap();
    assert_eq!(
        server.sweep(now),
        1,
        "only the lease expired for longer than keep_expired"
    );
    assert_eq!(server.sweep(now), 0, "nothing more to forget");
    let mut left: Vec<Ipv4Addr> = server.store.load().unwrap().iter().map(|l| l.ip).collect();
    left.sort();
    assert_eq!(left, vec![lease(2, 0).ip, lease(3, 0).ip]);
    assert!(server.table.by_ip(lease(1, 0).ip).is_none());
    assert_eq!(server.stats.forgotten.load(Ordering::Relaxed), 1);
    // A lease renewed after the sweep chose it is kept.
    let renewed = lease(2, now + 600);
    server.store.apply(&[Op::Put(renewed.clone())]).unwrap();
    let got = server
        .store
        .apply(&[Op::Forget {
            ip: renewed.ip,
            mac: renewed.mac,
            expired_by: now,
        }])
        .unwrap();
    assert_eq!(got, vec![Applied::Taken(Some(renewed))]);
}
