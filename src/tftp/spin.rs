//! Waiting for a quick client's ACK by polling its socket instead of
//! sleeping. A TFTP transfer is a chain of round trips: send a window,
//! wait for its ACK, send the next. Sleeping in the reactor puts the
//! thread to sleep and its CPU idle after every window, and waking both
//! again costs tens of microseconds (far more in a virtual machine), which
//! for a client that answers in 20 µs is most of each round trip: over
//! loopback a sender that polled got 2.5 times the lock-step throughput
//! of one that slept (BENCHMARKS.md). So a transfer whose recent ACKs came
//! back within the cap polls for about twice that long before it sleeps;
//! a slow client (a PXE ROM, a long wire) is never polled for, and the
//! server lets only as many transfers poll at once as it has spare cores
//! (see [`Server`](super::server::Server)). Nor is a short file: polling
//! starts once a transfer has sent [`WARM_UP`] bytes, since a boot loader
//! or a config gains a few milliseconds at most, while in a boot storm the
//! core it would keep busy is wanted by DHCP and HTTP (200 simulated
//! machines here had their median DHCP time go from 0.66–0.74 s to
//! 0.95–1.06 s when their loaders were polled for).

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

/// The default cap: the longest a client may take to answer and still be
/// polled for. Windows of 64 blocks of 1468 bytes come back in about 300
/// µs over loopback.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(500);

/// Bytes a transfer sends before it may poll.
pub const WARM_UP: u64 = 1 << 20;

/// How long one transfer polls, from the round trips it has seen.
#[derive(Debug, Clone, Copy)]
pub struct Spin {
    cap: Duration,
    /// Smoothed round trip (send to answer), once one has been seen.
    rtt: Option<Duration>,
    /// Bytes sent so far.
    sent: u64,
}

impl Spin {
    /// No polling until a round trip has been seen; never longer than
    /// `cap` (zero turns polling off).
    pub fn new(cap: Duration) -> Spin {
        Spin {
            cap,
            rtt: None,
            sent: 0,
        }
    }

    /// The transfer sent `bytes` more.
    pub fn sent(&mut self, bytes: u64) {
        self.sent += bytes;
    }

    /// The client answered `rtt` after the send.
    pub fn record(&mut self, rtt: Duration) {
        self.rtt = Some(match self.rtt {
            // An exponentially weighted mean, 1/8 new (as TCP's SRTT).
            Some(old) => (old * 7 + rtt) / 8,
            None => rtt,
        });
    }

    /// How long to poll before sleeping: zero before [`WARM_UP`] bytes
    /// were sent, until a round trip was seen, or while they average over
    /// the cap; else twice the average (an answer a little late is still
    /// caught), at most the cap.
    pub fn budget(&self) -> Duration {
        match self.rtt {
            Some(rtt) if rtt <= self.cap && self.sent >= WARM_UP => (rtt * 2).min(self.cap),
            _ => Duration::ZERO,
        }
    }
}

/// Receives a datagram that arrives on `socket` within `budget`, polling
/// the socket itself (the reactor's readiness is not refreshed while this
/// thread polls). `None` when nothing came in time or on an error (the
/// caller's reactor wait then sees it).
pub fn poll_recv(
    socket: &UdpSocket,
    buf: &mut [u8],
    budget: Duration,
) -> Option<(usize, SocketAddr)> {
    if budget.is_zero() {
        return None;
    }
    let sock = socket2::SockRef::from(socket);
    // SAFETY: initialised bytes are valid MaybeUninit bytes, and recv only
    // writes initialised bytes into them.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    let until = Instant::now() + budget;
    loop {
        match sock.recv_from(uninit) {
            Ok((n, from)) => return from.as_socket().map(|a| (n, a)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < until => {
                std::hint::spin_loop()
            }
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// A spin past its warm-up.
    fn warm(cap: Duration) -> Spin {
        let mut s = Spin::new(cap);
        s.sent(WARM_UP);
        s
    }

    #[test]
    fn polls_only_once_a_quick_round_trip_was_seen_and_a_mebibyte_sent() {
        let mut s = Spin::new(500 * US);
        s.record(20 * US);
        s.sent(WARM_UP - 1);
        assert_eq!(s.budget(), Duration::ZERO, "a short file is not polled for");
        s.sent(1);
        assert_eq!(s.budget(), 40 * US);
        let mut s = warm(500 * US);
        assert_eq!(s.budget(), Duration::ZERO, "nothing seen yet");
        s.record(20 * US);
        assert_eq!(s.budget(), 40 * US);
        s.record(300 * US);
        // (20 * 7 + 300) / 8 = 55.
        assert_eq!(s.budget(), 110 * US);
    }

    #[test]
    fn a_slow_client_is_not_polled_for_and_the_cap_bounds_the_rest() {
        let mut s = warm(500 * US);
        s.record(2_000 * US);
        assert_eq!(s.budget(), Duration::ZERO, "a PXE ROM's pace");
        let mut s = warm(500 * US);
        s.record(400 * US);
        assert_eq!(s.budget(), 500 * US, "twice 400 capped");
        let mut off = warm(Duration::ZERO);
        off.record(US);
        assert_eq!(off.budget(), Duration::ZERO, "a zero cap turns it off");
    }

    #[tokio::test]
    async fn poll_recv_catches_a_datagram_sent_while_polling_and_gives_up_in_time() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = rx.local_addr().unwrap();
        let mut buf = [0u8; 64];
        let started = Instant::now();
        assert!(poll_recv(&rx, &mut buf, Duration::from_millis(5)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(5));

        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let from = tx.local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            tx.send_to(b"ack", to).unwrap();
        });
        // The reactor never ran in between: only polling the socket
        // itself sees the datagram.
        let got = poll_recv(&rx, &mut buf, Duration::from_secs(2));
        sender.join().unwrap();
        assert_eq!(got, Some((3, from)));
        assert_eq!(&buf[..3], b"ack");
    }
}
