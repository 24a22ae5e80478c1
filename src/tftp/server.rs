//! The TFTP server on tokio: requests arrive on one socket; each transfer
//! gets a socket of its own (its TID, RFC 1350) and a task that drives a
//! [`ReadTransfer`]. Datagrams from anyone but the transfer's client get
//! ERROR 5 and leave the transfer alone.
//!
//! A client that asks again from the same address and port (the PXE size
//! probe: RRQ with `tsize 0`, OACK, ERROR 8, RRQ again) gets its new
//! transfer at once; an older transfer to that port is ended.
//!
//! A transfer waits for a quick client's ACK by polling its socket rather
//! than sleeping ([`super::spin`]), and sends each window in one go
//! straight from the file in memory ([`super::batch`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use super::batch::Batch;
use super::options::{Limits, MAX_BLKSIZE, negotiate};
use super::packet::{ErrorCode, Options, Packet, error_bytes};
use super::spin::{DEFAULT_SPIN, Spin, poll_recv};
use super::transfer::{Event, Outcome, ReadTransfer, Retry};
use crate::files::{Files, Refusal};

/// The default most bytes in one window: 16 blocks of 8 KiB or 64 of
/// 1468 bytes, sent as segmented bursts, stay inside Linux's default
/// socket receive buffer (212,992 bytes): atftp on loopback lost nothing
/// and ran up to 30 % faster with 8 KiB and larger blocks than with 64
/// KiB windows (5-10 % with 1468-byte blocks), while
/// 192 KiB windows of 8 KiB blocks overflowed it.
pub const DEFAULT_WINDOW_BYTES: u32 = 128 * 1024;
/// The cap once segmentation is refused: separate 8 KiB datagrams take
/// about 16 KiB of receive buffer each, so 16 of them overflowed the
/// default buffer where 8 did not.
pub const UNSEGMENTED_WINDOW_BYTES: u32 = 64 * 1024;

/// Server limits and timing.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Transfers at once; more are refused with "server busy".
    pub max_transfers: usize,
    /// The largest window granted to a client asking for windowsize.
    pub max_windowsize: u16,
    /// The most bytes in one window (see [`Limits::max_window_bytes`]).
    pub max_window_bytes: u32,
    /// Retransmission timeout when the client sets none.
    pub default_timeout: Duration,
    pub retry: Retry,
    /// How quick a client must answer to be polled for instead of slept
    /// on (see [`super::spin`]); zero never polls.
    pub spin: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_transfers: 512,
            max_windowsize: 64,
            max_window_bytes: DEFAULT_WINDOW_BYTES,
            default_timeout: Duration::from_secs(1),
            retry: Retry::default(),
            spin: DEFAULT_SPIN,
        }
    }
}

/// Counters, read by logs now and by `/metrics` later.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub malformed: AtomicU64,
    pub completed: AtomicU64,
    pub client_errors: AtomicU64,
    pub timed_out: AtomicU64,
    pub unknown_tid: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Clients' answers caught by polling (see [`super::spin`]), and all
    /// answers to a window sent.
    pub answers_polled: AtomicU64,
    pub answers: AtomicU64,
    /// Transfers going on now.
    pub active: AtomicU64,
    /// Health: the request loop runs; the runtime's heartbeat (unix ms,
    /// stamped every second).
    pub serving: std::sync::atomic::AtomicBool,
    pub heartbeat_ms: AtomicU64,
    refused: Mutex<HashMap<&'static str, u64>>,
}

/// Counts a transfer as going on while it lives.
struct Active<'a>(&'a AtomicU64);

impl<'a> Active<'a> {
    fn new(n: &'a AtomicU64) -> Active<'a> {
        n.fetch_add(1, Ordering::Relaxed);
        Active(n)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    fn refuse(&self, kind: &'static str) {
        *self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
    }

    /// Refused requests by reason.
    pub fn refused(&self) -> HashMap<&'static str, u64> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The counters on one line, for the log at shutdown:
    /// `requests=4 completed=3 timed_out=0 ... refused/not_found=1`.
    pub fn summary(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut line = format!(
            "requests={} completed={} client_errors={} timed_out={} malformed={} bytes_sent={}",
            n(&self.requests),
            n(&self.completed),
            n(&self.client_errors),
            n(&self.timed_out),
            n(&self.malformed),
            n(&self.bytes_sent)
        );
        let mut refused: Vec<_> = self.refused().into_iter().collect();
        refused.sort();
        for (kind, count) in refused {
            line.push_str(&format!(" refused/{kind}={count}"));
        }
        line
    }
}

/// What the server tells its observer about each transfer: when its
/// request arrives and when it ends.
#[derive(Debug)]
pub struct Report<'a> {
    pub peer: SocketAddr,
    pub file: &'a str,
    pub progress: Progress,
}

/// How far a transfer got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Its request arrived and a transfer starts.
    Started,
    /// All of it was acknowledged, `micros` after its request.
    Completed { bytes: u64, micros: u64 },
    /// Refused (`refusal` says why) or timed out (`refusal` is `None`).
    /// A client that ends the transfer itself (the PXE size probe) is not
    /// reported.
    Failed {
        why: String,
        refusal: Option<&'static str>,
    },
}

/// Called for every [`Report`] (the boot timeline listens here).
pub type Observer = Arc<dyn Fn(&Report) + Send + Sync>;

/// The running server's shared state.
pub struct Server {
    files: Arc<Files>,
    config: Config,
    observer: Option<Observer>,
    stats: Arc<Stats>,
    slots: Arc<Semaphore>,
    /// Client endpoint -> (transfer id, task), to replace a re-request.
    active: Mutex<HashMap<SocketAddr, (u64, tokio::task::AbortHandle)>>,
    next_id: AtomicU64,
    /// Transfers may poll for ACKs only while no more than this many run
    /// (the cores less one); more would take turns polling.
    spin_slots: usize,
    /// Set once the kernel refused segmentation for one of this server's
    /// sends (see [`Batch::reporting_to`]).
    offload_refused: Arc<AtomicBool>,
}

impl Server {
    /// A server for `files`.
    pub fn new(files: Arc<Files>, config: Config) -> Arc<Server> {
        Server::observed(files, config, None)
    }

    /// A server for `files` that reports each transfer to `observer`.
    pub fn observed(files: Arc<Files>, config: Config, observer: Option<Observer>) -> Arc<Server> {
        Arc::new(Server {
            files,
            config,
            observer,
            stats: Arc::new(Stats::default()),
            slots: Arc::new(Semaphore::new(config.max_transfers)),
            active: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            // One core left for the clients and the rest; none on a single
            // core, where polling would keep the client from running.
            spin_slots: std::thread::available_parallelism().map_or(0, |n| n.get() - 1),
            offload_refused: Arc::default(),
        })
    }

    /// Waits for a transfer's next datagram into `inbuf`: polls for it
    /// first while the client is quick ([`super::spin`]), else sleeps in
    /// the reactor until it comes or the transfer's deadline passes (the
    /// timeout is handled here; `None`). Returns its length and sender, and
    /// whether polling caught it.
    async fn next_datagram<D: super::transfer::Data>(
        &self,
        socket: &UdpSocket,
        inbuf: &mut [u8],
        t: &mut ReadTransfer<D>,
        spin: &Spin,
    ) -> Option<(usize, SocketAddr, bool)> {
        let budget = if self.may_spin() {
            spin.budget()
        } else {
            Duration::ZERO
        };
        if let Some((len, from)) = poll_recv(socket, inbuf, budget) {
            return Some((len, from, true));
        }
        let deadline = t.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = socket.recv_from(inbuf) => r.ok().map(|(len, from)| (len, from, false)),
            _ = sleep_until(deadline) => {
                t.handle_timeout(Instant::now());
                None
            }
        }
    }

    /// Whether few enough transfers run for each to poll a core of its own.
    fn may_spin(&self) -> bool {
        let running = self.config.max_transfers - self.slots.available_permits();
        running <= self.spin_slots
    }

    fn report(&self, peer: SocketAddr, file: &str, progress: Progress) {
        if let Some(o) = &self.observer {
            o(&Report {
                peer,
                file,
                progress,
            });
        }
    }

    /// The directory files are served from.
    pub fn root(&self) -> &std::path::Path {
        self.files.root()
    }

    /// The counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Serves requests arriving on `socket` (non-blocking) on a runtime
    /// of its own (worker threads named `tftp`, one per core), until the
    /// returned handle is dropped. A lock-step client waits for
    /// the answer to every ACK, so next to a busy HTTP server the answer
    /// must not queue behind bulk writes on shared workers: threads of
    /// their own leave the sharing to the kernel's scheduler
    /// (bench/storm.sh). More than one worker, because one thread answering
    /// 100 clients at once moved a quarter less data (bench/tftp.sh).
    pub fn spawn_runtime(self: Arc<Self>, socket: std::net::UdpSocket) -> std::io::Result<Running> {
        self.spawn_runtime_on(vec![socket])
    }

    /// [`Server::spawn_runtime`] answering on each of `sockets` (one per
    /// address bootfleet is reached at: a site of several segments).
    pub fn spawn_runtime_on(
        self: Arc<Self>,
        sockets: Vec<std::net::UdpSocket>,
    ) -> std::io::Result<Running> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("tftp")
            .build()?;
        let stats = self.stats.clone();
        let beat = self.stats.clone();
        runtime.spawn(async move {
            loop {
                beat.heartbeat_ms
                    .store(crate::clock::now_ms(), Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        let serving = Arc::new(std::sync::atomic::AtomicUsize::new(sockets.len()));
        stats.serving.store(true, Ordering::Relaxed);
        for socket in sockets {
            let (me, stats, serving) = (self.clone(), stats.clone(), serving.clone());
            // Sockets are bound (and their errors said) before this: here
            // only the runtime's own registration can fail.
            let socket = {
                let _entered = runtime.enter();
                UdpSocket::from_std(socket)
            };
            runtime.spawn(async move {
                let served = match socket {
                    Ok(socket) => me.run(socket).await,
                    Err(e) => Err(e),
                };
                if serving.fetch_sub(1, Ordering::Relaxed) == 1 {
                    stats.serving.store(false, Ordering::Relaxed);
                }
                if let Err(e) = served {
                    tracing::error!(error = %crate::error_chain(&e), "the TFTP server stopped");
                }
            });
        }
        Ok(Running {
            runtime: Some(runtime),
        })
    }

    /// Serves requests arriving on `socket` until the task is dropped.
    pub async fn run(self: Arc<Self>, socket: UdpSocket) -> std::io::Result<()> {
        let local_ip = socket.local_addr()?.ip();
        let mut buf = vec![0u8; 65536];
        loop {
            let (len, peer) = match socket.recv_from(&mut buf).await {
                Ok(x) => x,
                // ICMP errors from earlier sends surface here; keep serving.
                Err(e) => {
                    debug!(error = %crate::error_chain(&e), "receive error on the request socket");
                    continue;
                }
            };
            self.request(&buf[..len], peer, local_ip);
        }
    }

    fn request(self: &Arc<Self>, datagram: &[u8], peer: SocketAddr, local_ip: IpAddr) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let packet = match Packet::decode(datagram) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, error = %crate::error_chain(&e), "malformed request dropped");
                return;
            }
        };
        let (filename, mode, options) = match packet {
            Packet::Rrq {
                filename,
                mode,
                options,
            } => (filename, mode, options),
            Packet::Wrq { filename, .. } => {
                self.stats.refuse("write");
                warn!(%peer, file = %filename, "write request refused: bootfleet's TFTP is read-only");
                reply_error(
                    local_ip,
                    peer,
                    ErrorCode::AccessViolation,
                    "bootfleet serves files read-only",
                );
                return;
            }
            other => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, packet = ?other, "unexpected packet on the request port dropped");
                return;
            }
        };
        let netascii = match mode.to_ascii_lowercase().as_str() {
            "octet" => false,
            "netascii" => true,
            other => {
                self.stats.refuse("mode");
                warn!(%peer, file = %filename, mode = other, "request refused: unsupported mode");
                reply_error(
                    local_ip,
                    peer,
                    ErrorCode::IllegalOperation,
                    "only octet and netascii modes are served",
                );
                return;
            }
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.stats.refuse("busy");
            warn!(%peer, file = %filename, limit = self.config.max_transfers, "request refused: too many transfers");
            let msg = format!(
                "server busy: {} transfers in progress, try again",
                self.config.max_transfers
            );
            reply_error(local_ip, peer, ErrorCode::NotDefined, &msg);
            return;
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let server = self.clone();
        // Held across the spawn, so a transfer that ends at once on another
        // worker cannot look for its entry before it is there (and leave
        // it behind for good).
        let mut active = self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let task = tokio::spawn(async move {
            server
                .transfer(permit, peer, local_ip, filename, netascii, options)
                .await;
            let mut active = server
                .active
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if active.get(&peer).is_some_and(|(i, _)| *i == id) {
                active.remove(&peer);
            }
        });
        if let Some((_, old)) = active.insert(peer, (id, task.abort_handle())) {
            debug!(%peer, "the client asked again from the same port; its earlier transfer ends");
            old.abort();
        }
    }

    async fn transfer(
        &self,
        _permit: OwnedSemaphorePermit,
        peer: SocketAddr,
        local_ip: IpAddr,
        filename: String,
        netascii: bool,
        options: Options,
    ) {
        let _active = Active::new(&self.stats.active);
        let socket = match UdpSocket::bind((local_ip, 0)).await {
            Ok(s) => s,
            Err(e) => {
                warn!(%peer, error = %crate::error_chain(&e), "cannot open a transfer socket");
                return;
            }
        };
        self.report(peer, &filename, Progress::Started);
        let file = match self.files.open(&filename, netascii).await {
            Ok(f) => f,
            Err(refusal) => {
                self.stats.refuse(refusal.kind());
                warn!(%peer, file = %filename, reason = refusal.kind(), "request refused: {}", crate::error_chain(&refusal));
                self.report(
                    peer,
                    &filename,
                    Progress::Failed {
                        why: crate::error_chain(&refusal),
                        refusal: Some(refusal.kind()),
                    },
                );
                let (code, msg) = error_for(&refusal);
                let _ = socket.send_to(&error_bytes(code, &msg), peer).await;
                return;
            }
        };
        let limits = Limits {
            max_blksize: max_blksize(local_ip, peer),
            max_windowsize: self.config.max_windowsize,
            max_window_bytes: if self.offload_refused.load(Ordering::Relaxed) {
                self.config.max_window_bytes.min(UNSEGMENTED_WINDOW_BYTES)
            } else {
                self.config.max_window_bytes
            },
            default_timeout: self.config.default_timeout,
        };
        let size = file.len() as u64;
        let (negotiated, ack) = negotiate(&options, size, &limits);
        let oack = (!ack.is_empty()).then(|| Packet::Oack { options: ack }.to_bytes());
        debug!(%peer, file = %filename, size, blksize = negotiated.blksize, windowsize = negotiated.windowsize, "transfer starts");
        let started = Instant::now();
        // The transfer's handle on the file, to wait for a window's bytes
        // while the file is still being read.
        let reading = file.clone();
        let mut t = ReadTransfer::new(file, negotiated, oack, self.config.retry, started);
        // A window's datagrams, sent together (see `batch`).
        let mut window = Batch::reporting_to(self.offload_refused.clone());
        let window_len = usize::from(negotiated.windowsize).max(1);
        let mut inbuf = vec![0u8; 65536];
        let mut spin = Spin::new(self.config.spin);
        // When the last window left, until its client answers.
        let mut awaiting: Option<Instant> = None;
        // Answers to a window, and how many of them polling caught.
        let (mut answers, mut polled) = (0u64, 0u64);
        loop {
            window.clear();
            while window.len() < window_len && window.push_parts(|h| t.poll_transmit_parts(h)) {}
            if !window.is_empty() {
                if let Err(refusal) = reading.ready(window.body_end()).await {
                    // The file could not be read to the end (it shrank, or
                    // the disk failed): the client hears why.
                    warn!(%peer, file = %filename, "transfer ended: {}", crate::error_chain(&refusal));
                    let (code, msg) = error_for(&refusal);
                    let _ = socket.send_to(&error_bytes(code, &msg), peer).await;
                    let why = crate::error_chain(&refusal);
                    self.report(
                        peer,
                        &filename,
                        Progress::Failed {
                            why,
                            refusal: Some(refusal.kind()),
                        },
                    );
                    return;
                }
                match window.send(&socket, peer, t.data()).await {
                    Ok(n) => {
                        self.stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
                        spin.sent(n);
                        awaiting = Some(Instant::now());
                    }
                    Err(e) => {
                        debug!(%peer, error = %crate::error_chain(&e), "send failed; the timeout will resend")
                    }
                }
                if window.len() == window_len {
                    // There may be more to send before waiting (the OACK
                    // and a window, or a window larger than the buffers).
                    continue;
                }
            }
            if t.outcome().is_some() {
                break;
            }
            let Some((len, from, by_polling)) =
                self.next_datagram(&socket, &mut inbuf, &mut t, &spin).await
            else {
                continue;
            };
            if from != peer {
                self.stats.unknown_tid.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, %from, "datagram from an unknown TID answered with ERROR 5");
                let _ = socket
                    .send_to(
                        &error_bytes(ErrorCode::UnknownTid, "unknown transfer ID"),
                        from,
                    )
                    .await;
                continue;
            }
            let now = Instant::now();
            if let Some(sent) = awaiting.take() {
                spin.record(now - sent);
                answers += 1;
                polled += u64::from(by_polling);
            }
            if let Event::Malformed(e) = t.handle(&inbuf[..len], now) {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, error = %crate::error_chain(&e), "malformed datagram in a transfer dropped");
            }
        }
        let elapsed = started.elapsed();
        self.stats.answers.fetch_add(answers, Ordering::Relaxed);
        self.stats
            .answers_polled
            .fetch_add(polled, Ordering::Relaxed);
        match t.outcome() {
            Some(Outcome::Completed { bytes }) => {
                self.stats.completed.fetch_add(1, Ordering::Relaxed);
                info!(%peer, file = %filename, bytes, ms = elapsed.as_millis() as u64, answers, polled, "transfer completed");
                let (bytes, micros) = (*bytes, elapsed.as_micros() as u64);
                self.report(peer, &filename, Progress::Completed { bytes, micros });
            }
            Some(Outcome::ClientError { code, message }) => {
                self.stats.client_errors.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, file = %filename, code, message = %message, "client ended the transfer");
            }
            Some(Outcome::TimedOut {
                acked_blocks,
                total_blocks,
            }) => {
                self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                warn!(%peer, file = %filename, acked_blocks, total_blocks, "transfer timed out");
                let why = format!("timed out after {acked_blocks} of {total_blocks} blocks");
                self.report(peer, &filename, Progress::Failed { why, refusal: None });
            }
            None => {}
        }
    }
}

/// A server on a runtime of its own ([`Server::spawn_runtime`]);
/// dropping it stops the server (transfers in flight end).
pub struct Running {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Allowed inside another runtime, unlike dropping it.
            runtime.shutdown_background();
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Answers a refused request from a fresh port, as a new transfer would.
fn reply_error(local_ip: IpAddr, peer: SocketAddr, code: ErrorCode, message: &str) {
    let bytes = error_bytes(code, message);
    tokio::spawn(async move {
        if let Ok(s) = UdpSocket::bind((local_ip, 0)).await {
            let _ = s.send_to(&bytes, peer).await;
        }
    });
}

fn error_for(r: &Refusal) -> (ErrorCode, String) {
    match r {
        Refusal::NotFound => (ErrorCode::FileNotFound, "file not found".into()),
        Refusal::MemoryFull { .. } => (
            ErrorCode::NotDefined,
            "server busy: out of memory for files, try again".into(),
        ),
        Refusal::Unreadable(_) => (ErrorCode::NotDefined, "cannot read the file".into()),
        other => (
            ErrorCode::AccessViolation,
            format!("access violation: {other}"),
        ),
    }
}

/// The largest block that fits the path MTU to `peer` (IP, UDP and TFTP
/// headers taken off): 1468 on Ethernet, 65464 on loopback.
fn max_blksize(local_ip: IpAddr, peer: SocketAddr) -> u16 {
    let header = if peer.is_ipv4() {
        20 + 8 + 4
    } else {
        40 + 8 + 4
    };
    path_mtu(local_ip, peer).map_or(1468, |mtu| {
        (mtu.saturating_sub(header)).clamp(8, u32::from(MAX_BLKSIZE)) as u16
    })
}

fn path_mtu(local_ip: IpAddr, peer: SocketAddr) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let probe = std::net::UdpSocket::bind((local_ip, 0)).ok()?;
    probe.connect(peer).ok()?;
    let (level, name) = if peer.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_MTU)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    };
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket, and an int-sized buffer with its length.
    let rc = unsafe {
        libc::getsockopt(
            probe.as_raw_fd(),
            level,
            name,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0 && mtu > 0).then_some(mtu as u32)
}
