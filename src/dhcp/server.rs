//! The DHCP server's socket loop: read every request waiting, decide each
//! with [`super::policy`] (or [`super::proxy`]), make the batch's lease
//! changes durable in one commit, then answer. One thread, non-blocking
//! sockets woken by poll(2).
//!
//! Group commit: an ACK leaves only after its lease is on disk, but the
//! ACKs of all the requests read in one go share one commit (one fsync).
//! Under load the batches grow by themselves, so throughput holds while
//! every ACK stays durable. OFFERs need no durability and leave at once.
//!
//! Sockets are bound to the spec's interface only (SO_BINDTODEVICE), so
//! requests on other interfaces are never answered.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dhcproto::Encodable;
use dhcproto::v4::{Message, MessageType};
use prometheus_client::metrics::histogram::Histogram;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info, warn};

use super::outcome::Outcome;
use super::policy::{Change, Decision, Dest, OFFER_HOLD_SECS, client_mac, decide, message_type};
use super::pool::{Lease, Table};
use super::site::{Selected, Site, decide_site};
use crate::spec::Mac;
use crate::store::{Applied, Leases, Op, QUARANTINED, StoreError};

/// BOOTP's minimum message size; some PXE ROMs ignore shorter replies.
const MIN_REPLY: usize = 300;
/// At most this many datagrams are read (and committed) per batch.
pub const BATCH: usize = 128;
/// Large enough for any DHCP message on Ethernet.
/// How often the server looks for leases long expired.
const SWEEP_SECS: u64 = 60;

/// The most leases one sweep forgets (one store batch; the next sweep
/// takes the rest).
const SWEEP_MAX: usize = 4096;

const BUF: usize = 1536;

/// A socket the server reads: the port it serves, and the direct segment
/// whose interface it is bound to (where its broadcasts come from).
#[derive(Debug)]
pub struct Bound {
    pub socket: UdpSocket,
    pub port: Port,
    /// The index of its segment in the [`Site`] (`None`: none; only
    /// relayed requests are answered there).
    pub segment: Option<usize>,
}

/// Which port a socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// 67: DHCP, or proxyDHCP offers.
    Dhcp,
    /// 4011: PXE boot-server requests (proxy mode).
    PxeBoot,
}

/// Counters and timings for logs and metrics.
#[derive(Debug)]
pub struct Stats {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    /// ACKs withheld because their batch could not be stored.
    pub store_errors: AtomicU64,
    /// Store commits (each one fsync).
    pub commits: AtomicU64,
    /// Claims another server of the site won (the request was decided
    /// again).
    pub lost_races: AtomicU64,
    /// Batches the store refused to commit.
    pub commit_failures: AtomicU64,
    /// Leases forgotten long after they expired (see [`Server::sweep`]).
    pub forgotten: AtomicU64,
    /// (message type, outcome) -> count.
    outcomes: Mutex<BTreeMap<(&'static str, Outcome), u64>>,
    /// Seconds from a request's arrival (its batch read) to its reply
    /// sent.
    pub reply_seconds: Histogram,
    /// Seconds per store commit.
    pub commit_seconds: Histogram,
    /// Each segment's pool: its addresses, and how many are leased
    /// (unexpired) or quarantined now; counted every few seconds.
    pub pools: Mutex<Vec<PoolUse>>,
    /// Health: the loop runs, when it last went round (unix ms), whether
    /// the last commit failed.
    pub running: AtomicBool,
    pub heartbeat_ms: AtomicU64,
    pub last_commit_failed: AtomicBool,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            received: AtomicU64::default(),
            malformed: AtomicU64::default(),
            store_errors: AtomicU64::default(),
            commits: AtomicU64::default(),
            lost_races: AtomicU64::default(),
            commit_failures: AtomicU64::default(),
            forgotten: AtomicU64::default(),
            outcomes: Mutex::default(),
            reply_seconds: crate::metrics::fast(),
            commit_seconds: crate::metrics::fast(),
            pools: Mutex::default(),
            running: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
            last_commit_failed: AtomicBool::new(false),
        }
    }
}

/// One segment's pool, for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolUse {
    /// The segment's name.
    pub segment: String,
    /// The pool, as a label: `10.0.0.100-10.0.0.200`.
    pub range: String,
    pub size: u64,
    pub leased: u64,
    pub quarantined: u64,
}

impl Stats {
    fn count(&self, kind: &'static str, outcome: Outcome) {
        let mut m = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((kind, outcome)).or_default() += 1;
    }

    /// Every (message type, outcome) seen so far, with its count.
    pub fn outcomes(&self) -> Vec<((&'static str, &'static str), u64)> {
        let m = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|((k, o), v)| ((*k, o.name()), *v)).collect()
    }

    /// The counters on one line, for the log at shutdown:
    /// `received=9 malformed=0 commits=3 discover/offer=3 request/ack=3`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "received={} malformed={} commits={} lost_races={}",
            self.received.load(Ordering::Relaxed),
            self.malformed.load(Ordering::Relaxed),
            self.commits.load(Ordering::Relaxed),
            self.lost_races.load(Ordering::Relaxed)
        );
        for ((kind, outcome), n) in self.outcomes() {
            line.push_str(&format!(" {kind}/{outcome}={n}"));
        }
        line
    }
}

/// The metric label for a message type.
fn type_name(t: Option<MessageType>) -> &'static str {
    match t {
        Some(MessageType::Discover) => "discover",
        Some(MessageType::Request) => "request",
        Some(MessageType::Decline) => "decline",
        Some(MessageType::Release) => "release",
        Some(MessageType::Inform) => "inform",
        Some(_) => "other",
        None => "none",
    }
}

/// Opens UDP `port` on `interface` with broadcast allowed.
pub fn bind(interface: &str, port: u16) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    grow_recv_buffer(&s, RECV_BUFFER);
    Ok(s.into())
}

/// The receive buffer asked for: room for a whole site powered on at once
/// (10,000 DISCOVERs, about 2 KiB each as the kernel counts them) while a
/// commit is under way.
const RECV_BUFFER: usize = 16 << 20;

/// Grows the socket's receive buffer to `want` bytes, past
/// `net.core.rmem_max` where the process may (`SO_RCVBUFFORCE` needs
/// CAP_NET_ADMIN); a socket that has that much already
/// (`net.core.rmem_default`) is left as it is.
fn grow_recv_buffer(s: &Socket, want: usize) {
    // The kernel reports twice what was set (its bookkeeping share).
    let now = s.recv_buffer_size().map_or(0, |n| n / 2);
    if now >= want {
        return;
    }
    let value = libc::c_int::try_from(want).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket and a c_int option value of the stated size.
    let forced = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(s),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        // Unprivileged: as much as rmem_max allows, and never less than
        // the buffer it has (a raised rmem_default above rmem_max).
        let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|v| v.trim().parse().ok());
        if let Some(size) = unprivileged_size(now, want, max) {
            let _ = s.set_recv_buffer_size(size);
        }
    }
}

/// What an unprivileged socket with a `now`-byte receive buffer should
/// ask for when it wants `want` and the kernel caps requests at `max`
/// (unknown: ask anyway); `None` when the answer would not be larger.
fn unprivileged_size(now: usize, want: usize, max: Option<usize>) -> Option<usize> {
    let size = max.map_or(want, |m| want.min(m));
    (size > now).then_some(size)
}

/// A reply ready to send.
struct Outgoing {
    bytes: Vec<u8>,
    to: SocketAddr,
    /// Unicast to a client without an address: its ARP entry to set
    /// first (broadcast instead where that fails).
    arp: Option<(Ipv4Addr, Mac)>,
    /// Sent only once the batch is committed (ACKs that bind a lease).
    after_commit: bool,
}

/// Where a request came from, borrowed from the configuration (nothing
/// is allocated per request); its `Display` is the wrong segment's story:
/// `asked from segment rack2 (relay 10.1.0.1); the spec puts it in rack1
/// (10.0.0.0/24)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Whence<'a> {
    /// The segment it was decided for (none: no segment of the site).
    pub segment: Option<&'a str>,
    /// The relay that forwarded it (giaddr).
    pub relay: Option<Ipv4Addr>,
    /// For a node of the spec: the segment its address lies in, and that
    /// segment's subnet.
    pub home: Option<(&'a str, ipnet::Ipv4Net)>,
}

impl std::fmt::Display for Whence<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "asked from segment {}",
            self.segment.unwrap_or("no segment of the site")
        )?;
        if let Some(r) = self.relay {
            write!(f, " (relay {r})")?;
        }
        match self.home {
            Some((name, subnet)) => write!(f, "; the spec puts it in {name} ({subnet})"),
            None => f.write_str("; the spec puts it in another segment"),
        }
    }
}

/// What the server tells its observer about each request it answered.
#[derive(Debug)]
pub struct Report<'a> {
    pub mac: Mac,
    /// What was done: an offer, an ACK, a refusal ...
    pub outcome: Outcome,
    /// The address given (none in proxy mode).
    pub ip: Option<Ipv4Addr>,
    /// The firmware, when the client is booting.
    pub arch: Option<String>,
    /// The boot file given.
    pub file: Option<&'a str>,
    /// Where the request came from.
    pub whence: Whence<'a>,
}

/// Called for every [`Report`] (the boot timeline listens here).
pub type Observer = Box<dyn Fn(&Report) + Send>;

/// A server over a lease table loaded from `store`.
pub struct Server<S> {
    cfg: Site,
    table: Table,
    store: S,
    pub stats: Arc<Stats>,
    /// Told about every answered request.
    pub observer: Option<Observer>,
    /// A new configuration to switch to before the next batch (spec
    /// reloaded).
    pub pending: Arc<Mutex<Option<Site>>>,
    /// Each request's lease before this batch (for a batch the store
    /// refused).
    prior: Vec<Option<Lease>>,
    /// Reply ports: 68 for clients, 67 for relays (tests may change them).
    pub client_port: u16,
    pub relay_port: u16,
}

/// A random number: where in the pool a server sharing it searches.
fn seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| u64::from(std::process::id()))
}

/// Waits until one of the sockets in `fds` is readable or `timeout_ms`
/// passes.
fn wait_readable(fds: &mut [libc::pollfd], timeout_ms: i32) -> std::io::Result<()> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()`
    // pollfd structs for the duration of the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

impl<S: Leases> Server<S> {
    /// Loads every stored lease.
    pub fn new(cfg: Site, store: S) -> Result<Server<S>, StoreError> {
        let mut table = Table::default();
        let leases = store.load()?;
        info!(leases = leases.len(), "leases recovered");
        for l in leases {
            if l.mac == QUARANTINED {
                table.quarantine(l.ip, l.expires);
            } else {
                table.insert(l);
            }
        }
        if store.shared() {
            for seg in &cfg.segments {
                table.scan_from(&seg.pool, seg.pool.point(seed()));
            }
        }
        Ok(Server {
            cfg,
            table,
            store,
            stats: Arc::default(),
            observer: None,
            pending: Arc::default(),
            prior: Vec::new(),
            client_port: 68,
            relay_port: 67,
        })
    }

    /// Serves `sockets` until `stop` is set (checked at least once a
    /// second).
    pub fn run(&mut self, sockets: &[Bound], stop: &AtomicBool) -> std::io::Result<()> {
        let stats = self.stats.clone();
        let _running = Running::new(&stats.running);
        for b in sockets {
            b.socket.set_nonblocking(true)?;
        }
        let mut fds: Vec<libc::pollfd> = sockets
            .iter()
            .map(|b| libc::pollfd {
                fd: b.socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // The interface each socket is bound to, for ARP entries (read
        // once, not per reply).
        let devices: Vec<Option<Vec<u8>>> = sockets
            .iter()
            .map(|b| socket2::SockRef::from(&b.socket).device().ok().flatten())
            .collect();
        let mut bufs = vec![[0u8; BUF]; BATCH];
        let mut got: Vec<(usize, SocketAddr)> = Vec::with_capacity(BATCH);
        let mut counted: Option<Instant> = None;
        let mut swept: Option<Instant> = None;
        let reply_seconds = self.stats.reply_seconds.clone();
        while !stop.load(Ordering::Relaxed) {
            self.stats
                .heartbeat_ms
                .store(crate::clock::now_ms(), Ordering::Relaxed);
            if counted.is_none_or(|at| at.elapsed().as_secs() >= POOL_COUNT_SECS) {
                self.count_pool();
                counted = Some(Instant::now());
            }
            if swept.is_none_or(|at| at.elapsed().as_secs() >= SWEEP_SECS) {
                self.sweep(crate::clock::now_secs());
                swept = Some(Instant::now());
            }
            wait_readable(&mut fds, 1000)?;
            let next = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(cfg) = next {
                info!("DHCP configuration reloaded");
                self.cfg = cfg;
            }
            for (bound, device) in sockets.iter().zip(&devices) {
                let socket = &bound.socket;
                got.clear();
                while got.len() < BATCH {
                    match socket.recv_from(&mut bufs[got.len()]) {
                        Ok(x) => got.push(x),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            debug!(error = %crate::error_chain(&e), "receive error");
                            break;
                        }
                    }
                }
                if !got.is_empty() {
                    let batch = got
                        .iter()
                        .zip(&bufs)
                        .map(|((len, from), b)| (&b[..*len], *from));
                    let out = Out {
                        socket,
                        device: device.as_deref(),
                        received: Instant::now(),
                        reply_seconds: &reply_seconds,
                    };
                    self.handle_batch(&out, bound.port, bound.segment, batch);
                }
            }
        }
        Ok(())
    }

    /// Forgets leases that expired more than `keep_expired` ago (at most
    /// [`SWEEP_MAX`] at a time, between batches), when this server is the
    /// one of its site that sweeps ([`Leases::sweeper`]): the store keeps
    /// an expired lease so that its machine gets its address back, but not
    /// forever, or it would grow with every MAC ever seen. A lease renewed
    /// meanwhile by another server is left alone (the store refuses the
    /// removal at a revision it no longer has).
    pub fn sweep(&mut self, now: u64) -> usize {
        let keep = self.cfg.keep_expired_secs;
        let old: Vec<Lease> = self
            .table
            .leases()
            .filter(|l| l.expires.saturating_add(keep) < now)
            .take(SWEEP_MAX)
            .cloned()
            .collect();
        if old.is_empty() || !self.store.sweeper() {
            return 0;
        }
        let expired_by = now.saturating_sub(keep);
        let ops: Vec<Op> = old
            .iter()
            .map(|l| Op::Forget {
                ip: l.ip,
                mac: l.mac,
                expired_by,
            })
            .collect();
        let results = match self.store.apply(&ops) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %crate::error_chain(&e), "expired leases not forgotten; trying again later");
                return 0;
            }
        };
        let mut forgotten = 0;
        for (l, r) in old.iter().zip(results) {
            if r == Applied::Done {
                self.table.release(l.ip, l.mac);
                forgotten += 1;
            }
        }
        self.stats
            .forgotten
            .fetch_add(forgotten as u64, Ordering::Relaxed);
        info!(
            forgotten,
            keep_expired_secs = keep,
            "forgot leases long expired"
        );
        forgotten
    }

    /// Counts the pool's leased and quarantined addresses for the metrics
    /// (how near the pool is to running out).
    fn count_pool(&self) {
        let now = crate::clock::now_secs();
        let pools: Vec<PoolUse> = self
            .cfg
            .segments
            .iter()
            .filter(|seg| seg.pool.first <= seg.pool.last)
            .map(|seg| {
                let (leased, quarantined) = self.table.pool_use(&seg.pool, now);
                PoolUse {
                    segment: seg.segment.clone(),
                    range: format!("{}-{}", seg.pool.first, seg.pool.last),
                    size: seg.pool.size(),
                    leased,
                    quarantined,
                }
            })
            .collect();
        *self.stats.pools.lock().unwrap_or_else(|p| p.into_inner()) = pools;
    }

    /// Handles datagrams read together: decides each, commits their lease
    /// changes at once, then sends the ACKs (and, with a shared store, the
    /// OFFERs: their addresses are claimed first). A request whose address
    /// another server took meanwhile is decided again, once, with what the
    /// store said (another address, or a NAK).
    fn handle_batch<'a>(
        &mut self,
        socket: &Out,
        port: Port,
        arrived: Option<usize>,
        datagrams: impl Iterator<Item = (&'a [u8], SocketAddr)>,
    ) {
        let now = crate::clock::now_secs();
        self.take_news();
        let mut round: Vec<(Message, SocketAddr)> = datagrams
            .filter_map(|(datagram, from)| Some((self.decode(datagram, from)?, from)))
            .collect();
        for _attempt in 0..2 {
            let mut ops = Vec::new();
            // (reply, index of its op, index of its request)
            let mut waiting: Vec<(Outgoing, usize, usize)> = Vec::new();
            self.prior.clear();
            for (i, (req, from)) in round.iter().enumerate() {
                let before = ops.len();
                let known = client_mac(req).and_then(|m| self.table.by_mac(m).cloned());
                self.prior.push(known);
                let Some(out) = self.handle_one(req, *from, port, arrived, now, &mut ops) else {
                    continue;
                };
                // A reply waits for the store only when it has a change
                // there (an offer of the machine's own binding has none).
                if out.after_commit && ops.len() > before {
                    waiting.push((out, before, i));
                } else {
                    socket.send(&out);
                }
            }
            if ops.is_empty() {
                return;
            }
            let commit = Instant::now();
            let applied = self.store.apply(&ops);
            self.stats
                .commit_seconds
                .observe(commit.elapsed().as_secs_f64());
            let results = match applied {
                Ok(r) => {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .last_commit_failed
                        .store(false, Ordering::Relaxed);
                    r
                }
                Err(e) => {
                    self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                    self.stats.last_commit_failed.store(true, Ordering::Relaxed);
                    self.unstored(socket, &round, waiting, &ops, now, &e);
                    return;
                }
            };
            let mut again = Vec::new();
            for (out, k, i) in waiting {
                match (&ops[k], results.get(k)) {
                    (op, Some(Applied::Taken(holder))) => {
                        self.stats.lost_races.fetch_add(1, Ordering::Relaxed);
                        debug!(ip = %op.ip(), "another server took the address first; deciding again");
                        self.learn(op.ip(), holder.clone(), &round[i].0);
                        again.push(round[i].clone());
                    }
                    _ => socket.send(&out),
                }
            }
            if again.is_empty() {
                return;
            }
            // Another server is searching here too: move on to another
            // part of each pool (once per round, not per lost address).
            for seg in &self.cfg.segments {
                self.table.scan_from(&seg.pool, seg.pool.point(seed()));
            }
            round = again;
        }
    }

    /// A batch whose changes could not be stored: nothing that needed the
    /// store is answered (the clients ask again), except what this server
    /// may answer on its own while a shared store is away: a reservation's
    /// ACK, and a renewal of a lease it knows, ACKed for the time that
    /// lease has left (never an expiry it could not record). New pool
    /// leases wait for the store.
    fn unstored(
        &mut self,
        socket: &Out,
        round: &[(Message, SocketAddr)],
        waiting: Vec<(Outgoing, usize, usize)>,
        ops: &[Op],
        now: u64,
        e: &StoreError,
    ) {
        self.stats
            .store_errors
            .fetch_add(waiting.len() as u64, Ordering::Relaxed);
        warn!(replies = waiting.len(), error = %crate::error_chain(&e), "leases not stored; replies that need them withheld");
        // The table forgets what was not stored: what it knew before stands.
        // (Every Put and Hold has its reply waiting.)
        for &(_, k, i) in &waiting {
            if let Op::Put(l) | Op::Hold(l) = &ops[k] {
                let prior = self.prior.get(i).cloned().flatten();
                match prior.filter(|p| p.ip == l.ip && p.mac == l.mac) {
                    Some(p) => self.table.insert(p),
                    None => self.table.insert(Lease {
                        expires: now + OFFER_HOLD_SECS,
                        ..l.clone()
                    }),
                }
            }
        }
        if !self.store.shared() {
            return;
        }
        for (out, k, i) in waiting {
            let (req, from) = &round[i];
            let Op::Put(l) = &ops[k] else { continue };
            let reserved = self.cfg.reserved(l.mac, l.ip);
            let known = self
                .prior
                .get(i)
                .cloned()
                .flatten()
                .filter(|p| p.ip == l.ip && p.mac == l.mac && p.expires > now);
            if reserved {
                socket.send(&out);
            } else if let Some(p) = known {
                // Decided again, in the lease's segment, with the time the
                // lease has left.
                let Some(seg) = self.cfg.segment_of(l.ip) else {
                    continue;
                };
                let mut cfg = self.cfg.segments[seg].clone();
                cfg.lease_secs = u32::try_from(p.expires - now).unwrap_or(u32::MAX);
                let d = decide(req, &cfg, &self.table, now);
                self.stats
                    .count(type_name(message_type(req)), Outcome::AckUnstored);
                if let Some(out) = self.encode(&d, *from) {
                    socket.send(&out);
                }
            }
        }
    }

    /// The table learns what another server did with `ip`: `holder` has it
    /// (or nobody, when `None`), not the machine that asked in `req`.
    fn learn(&mut self, ip: Ipv4Addr, holder: Option<Lease>, req: &Message) {
        match holder {
            Some(l) => self.absorb(l),
            None => {
                if let Some(mac) = client_mac(req) {
                    self.table.release(ip, mac);
                }
            }
        }
    }

    /// A stored lease into the table: a quarantine as one.
    fn absorb(&mut self, l: Lease) {
        if l.mac == QUARANTINED {
            self.table.quarantine(l.ip, l.expires);
        } else {
            self.table.insert(l);
        }
    }

    /// What other servers of the site changed, into the table.
    fn take_news(&mut self) {
        for (ip, lease) in self.store.changes() {
            match lease {
                Some(l) => self.absorb(l),
                None => {
                    if let Some(mac) = self.table.by_ip(ip).map(|l| l.mac) {
                        self.table.release(ip, mac);
                    }
                }
            }
        }
    }

    /// Decodes one datagram; a malformed one is counted and dropped.
    fn decode(&self, datagram: &[u8], from: SocketAddr) -> Option<Message> {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        match super::wire::decode(datagram) {
            Ok(m) => Some(m),
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(%from, error = %crate::error_chain(&e), "malformed DHCP datagram dropped");
                None
            }
        }
    }

    /// Decides one request, applies its change to the table (queueing the
    /// store operation in `ops`) and encodes the reply.
    fn handle_one(
        &mut self,
        req: &Message,
        from: SocketAddr,
        port: Port,
        arrived: Option<usize>,
        now: u64,
        ops: &mut Vec<Op>,
    ) -> Option<Outgoing> {
        let (d, selected) = match port {
            Port::Dhcp => decide_site(req, &self.cfg, arrived, &self.table, now),
            Port::PxeBoot => match self.cfg.select_4011(req, arrived) {
                Selected::Segment(i) => (
                    super::proxy::on_port_4011(req, &self.cfg.segments[i]),
                    Selected::Segment(i),
                ),
                other => (Decision::silent(Outcome::RelayFromUnservedSubnet), other),
            },
        };
        self.stats.count(type_name(message_type(req)), d.outcome);
        let shared = self.store.shared();
        let after_commit = match &d.change {
            Some(Change::Bind(_)) => true,
            Some(Change::Offer(_)) => shared,
            _ => false,
        };
        self.apply(req, &d, ops, shared);
        let whence = self.whence(req, selected);
        self.log(req, &d, whence);
        self.report(req, &d, whence);
        let mut out = self.encode(&d, from)?;
        out.after_commit = after_commit;
        Some(out)
    }

    /// The datagram of `d`'s reply, and where it goes.
    fn encode(&self, d: &Decision, from: SocketAddr) -> Option<Outgoing> {
        let (reply, dest) = d.reply.clone()?;
        let mut bytes = match reply.to_vec() {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %crate::error_chain(&e), "reply could not be encoded");
                return None;
            }
        };
        if bytes.len() < MIN_REPLY {
            bytes.resize(MIN_REPLY, 0);
        }
        let to = match dest {
            Dest::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, self.client_port).into(),
            Dest::Client(ip) | Dest::Hardware(ip, _) => {
                SocketAddrV4::new(ip, self.client_port).into()
            }
            Dest::Relay(ip) => SocketAddrV4::new(ip, self.relay_port).into(),
            Dest::Sender => from,
        };
        let arp = match dest {
            Dest::Hardware(ip, mac) => Some((ip, mac)),
            _ => None,
        };
        Some(Outgoing {
            bytes,
            to,
            arp,
            after_commit: false,
        })
    }

    /// Applies a decision's lease change to the table and queues it for
    /// the store.
    fn apply(&mut self, req: &Message, d: &Decision, ops: &mut Vec<Op>, shared: bool) {
        match &d.change {
            Some(Change::Bind(lease)) => {
                ops.push(Op::Put(lease.clone()));
                self.table.insert(lease.clone());
            }
            Some(Change::Offer(lease)) => {
                // A binding is its own claim: only a new offer is held.
                let bound = self
                    .table
                    .by_ip(lease.ip)
                    .is_some_and(|l| l.mac == lease.mac && l.expires >= lease.expires);
                if shared && !bound {
                    ops.push(Op::Hold(lease.clone()));
                }
                self.table.insert(lease.clone());
            }
            Some(Change::Release { ip, mac }) => {
                if self.table.by_ip(*ip).is_some_and(|l| l.mac == *mac) {
                    let (ip, mac) = (*ip, *mac);
                    ops.push(if d.outcome == Outcome::ChoseAnotherServer {
                        Op::Unhold { ip, mac }
                    } else {
                        Op::Remove { ip, mac }
                    });
                }
                self.table.release(*ip, *mac);
            }
            Some(Change::Decline { ip, until }) => {
                ops.push(Op::Quarantine {
                    ip: *ip,
                    until: *until,
                });
                let mac = client_mac(req).map(|m| m.to_string()).unwrap_or_default();
                warn!(%mac, ip = %ip, "client declined the address (in use by someone else); quarantined");
                self.table.quarantine(*ip, *until);
            }
            None => {}
        }
    }

    /// Where `req` came from and, for a node of the spec, where the spec
    /// puts it.
    fn whence(&self, req: &Message, selected: Selected) -> Whence<'_> {
        let segment = |i: usize| self.cfg.segments.get(i);
        Whence {
            segment: match selected {
                Selected::Segment(i) => segment(i).map(|s| s.segment.as_str()),
                Selected::Unserved(_) | Selected::Nowhere => None,
            },
            relay: Some(req.giaddr()).filter(|g| !g.is_unspecified()),
            home: client_mac(req)
                .and_then(|m| self.cfg.home.get(&m).copied())
                .and_then(segment)
                .map(|s| (s.segment.as_str(), s.subnet)),
        }
    }

    fn report(&self, req: &Message, d: &Decision, whence: Whence) {
        let (Some(observer), Some(mac)) = (&self.observer, client_mac(req)) else {
            return;
        };
        match &d.reply {
            Some((reply, _)) => observer(&Report {
                mac,
                outcome: d.outcome,
                ip: Some(reply.yiaddr()).filter(|ip| !ip.is_unspecified()),
                arch: d.boot.as_ref().map(|b| b.firmware.name()),
                file: d.boot.as_ref().map(|b| b.file.as_str()),
                whence,
            }),
            // Refused machines are news too: the status page shows them.
            None if matches!(d.outcome, Outcome::UnknownRefused | Outcome::WrongSegment) => {
                observer(&Report {
                    mac,
                    outcome: d.outcome,
                    ip: None,
                    arch: Some(super::boot::Client::from_request(req).firmware().name()),
                    file: None,
                    whence,
                })
            }
            None => {}
        }
    }

    fn log(&self, req: &Message, d: &Decision, whence: Whence) {
        let mac = client_mac(req).map(|m| m.to_string()).unwrap_or_default();
        let arch = d.boot.as_ref().map(|b| b.firmware.name());
        if let Some(v) = d.boot.as_ref().and_then(|b| b.unknown_arch) {
            warn!(%mac, xid = req.xid(), arch = v, "unknown client architecture (option 93); answered with the spec's BIOS loader");
        }
        match &d.reply {
            Some((reply, _)) => {
                let boot = d.boot.as_ref().map(|b| b.file.as_str());
                info!(%mac, xid = req.xid(), outcome = d.outcome.name(), ip = %reply.yiaddr(), arch = arch.as_deref().unwrap_or("-"), boot = boot.unwrap_or("-"), "DHCP");
            }
            None if d.outcome == Outcome::UnknownRefused => {
                info!(%mac, xid = req.xid(), outcome = d.outcome.name(), "a machine that is not in the spec tried to boot and was refused; add it to [[nodes]], or add [enrolment] to boot such machines")
            }
            None if d.outcome == Outcome::WrongSegment => {
                warn!(%mac, xid = req.xid(), outcome = d.outcome.name(), "a node of the spec {whence}: no answer; move its cable, or fix its ip in the spec")
            }
            None => debug!(%mac, xid = req.xid(), outcome = d.outcome.name(), "no reply"),
        }
    }
}

/// Set once the server has said that unicast to new clients failed (the
/// first time is a warning; a server without CAP_NET_ADMIN would say it
/// for every reply).
static BROADCAST_FALLBACK_SAID: AtomicBool = AtomicBool::new(false);

/// Marks the loop as running while it lives (also through a panic).
struct Running<'a>(&'a AtomicBool);

impl<'a> Running<'a> {
    fn new(flag: &'a AtomicBool) -> Running<'a> {
        flag.store(true, Ordering::Relaxed);
        Running(flag)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// How often the pool's use is counted for the metrics.
const POOL_COUNT_SECS: u64 = 2;

/// Where replies leave: a socket and the interface it is bound to; when
/// the batch they answer was read.
struct Out<'a> {
    socket: &'a UdpSocket,
    device: Option<&'a [u8]>,
    received: Instant,
    reply_seconds: &'a Histogram,
}

impl Out<'_> {
    fn send(&self, out: &Outgoing) {
        self.send_now(out);
        self.reply_seconds
            .observe(self.received.elapsed().as_secs_f64());
    }

    fn send_now(&self, out: &Outgoing) {
        let mut to = out.to;
        if let Some((ip, mac)) = out.arp {
            // Unicast needs the ARP entry and a route to the new address on
            // the interface; without either, the broadcast still gets there.
            match self
                .learn(ip, mac)
                .and_then(|()| self.socket.send_to(&out.bytes, out.to))
            {
                Ok(_) => return,
                Err(e) => {
                    if !BROADCAST_FALLBACK_SAID.swap(true, Ordering::Relaxed) {
                        warn!(%ip, %mac, error = %crate::error_chain(&e), "cannot answer new clients by unicast (setting an ARP entry needs CAP_NET_ADMIN, and the interface an address on the subnet); broadcasting such replies instead");
                    } else {
                        debug!(%ip, %mac, error = %crate::error_chain(&e), "no unicast to the new address; broadcasting the reply instead");
                    }
                    to = SocketAddrV4::new(Ipv4Addr::BROADCAST, out.to.port()).into();
                }
            }
        }
        if let Err(e) = self.socket.send_to(&out.bytes, to) {
            warn!(%to, error = %crate::error_chain(&e), "reply not sent");
        }
    }

    /// Sets the ARP entry for `ip` on the socket's interface.
    fn learn(&self, ip: Ipv4Addr, mac: Mac) -> std::io::Result<()> {
        let device = self
            .device
            .ok_or_else(|| std::io::Error::other("the socket is bound to no interface"))?;
        super::arp::set(self.socket, device, ip, mac)
    }
}

#[cfg(test)]
mod tests;
