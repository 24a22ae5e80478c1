//! One read transfer as a state machine without I/O or clock: the caller
//! feeds it the client's datagrams and the current time, sends what
//! [`ReadTransfer::poll_transmit`] writes (or, without copying the file's
//! data, what [`ReadTransfer::poll_transmit_parts`] names), and calls
//! [`ReadTransfer::handle_timeout`] at [`ReadTransfer::poll_timeout`].
//!
//! Sends windows of `windowsize` blocks (RFC 7440; 1 is RFC 1350 lock-step)
//! and goes back to the first unacknowledged block when an ACK shows a gap.
//! A duplicate ACK never triggers a resend (the Sorcerer's Apprentice bug);
//! only the timeout does, with exponential backoff and a bounded number of
//! tries. Block numbers wrap from 65535 to 0, as common clients expect.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::options::Negotiated;
use super::packet::{Packet, PacketError, data_header};

/// What a transfer serves: the bytes there are so far, and the whole
/// length (longer than [`AsRef::as_ref`] while a file is still being read
/// from disk: see [`crate::files::Shared`]; the caller waits for a
/// window's bytes before it sends them).
pub trait Data: AsRef<[u8]> {
    fn total_len(&self) -> usize {
        self.as_ref().len()
    }
}

impl Data for Vec<u8> {}
impl Data for &[u8] {}

impl Data for crate::files::Shared {
    fn total_len(&self) -> usize {
        self.len()
    }
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The client acknowledged the last block.
    Completed { bytes: u64 },
    /// The client sent an ERROR (code 8 after an OACK is the PXE size probe).
    ClientError { code: u16, message: String },
    /// No answer after every retry.
    TimedOut {
        acked_blocks: u64,
        total_blocks: u64,
    },
}

/// Retry policy.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Resends before giving up.
    pub max_retries: u32,
    /// Upper bound of the backed-off timeout.
    pub max_timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: 5,
            max_timeout: Duration::from_secs(8),
        }
    }
}

/// What happened to one incoming datagram, for the caller's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An ACK that moved the transfer forward.
    Progress,
    /// A duplicate, stale or out-of-range ACK, or a packet type a reading
    /// client does not send: ignored.
    Ignored,
    /// Not a TFTP packet: dropped.
    Malformed(PacketError),
    /// The transfer is over (see [`ReadTransfer::outcome`]).
    Finished,
}

/// Serves one file to one client.
pub struct ReadTransfer<D> {
    data: D,
    blksize: u64,
    windowsize: u64,
    base_timeout: Duration,
    retry: Retry,
    oack: Option<Vec<u8>>,
    send_oack: bool,
    total_blocks: u64,
    /// Highest block the client acknowledged (0: none, or the OACK).
    acked: u64,
    /// Next block to send, and the last block of the current window.
    next: u64,
    window_end: u64,
    retries: u32,
    deadline: Option<Instant>,
    outcome: Option<Outcome>,
}

impl<D: Data> ReadTransfer<D> {
    /// Starts serving `data`. `oack` holds the OACK to send first (and to
    /// resend until the client ACKs block 0), or `None` without options.
    pub fn new(data: D, n: Negotiated, oack: Option<Vec<u8>>, retry: Retry, now: Instant) -> Self {
        let blksize = u64::from(n.blksize.max(1));
        let total_blocks = data.total_len() as u64 / blksize + 1;
        let mut t = ReadTransfer {
            data,
            blksize,
            windowsize: u64::from(n.windowsize.max(1)),
            base_timeout: n.timeout,
            retry,
            send_oack: oack.is_some(),
            oack,
            total_blocks,
            acked: 0,
            next: 1,
            window_end: 0,
            retries: 0,
            deadline: Some(now + n.timeout),
            outcome: None,
        };
        if !t.send_oack {
            t.open_window(now);
        }
        t
    }

    /// How the transfer ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            None
        } else {
            self.deadline
        }
    }

    /// Appends the next datagram to send to `buf` (so a window can be laid
    /// end to end in one buffer); false when there is nothing to send now.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.poll_transmit_parts(buf) {
            Some(body) => {
                buf.extend_from_slice(&self.data.as_ref()[body]);
                true
            }
            None => false,
        }
    }

    /// The next datagram to send, in two parts so the file's data need not
    /// be copied: appends its head to `head` (a whole OACK, or a DATA
    /// header) and returns the range of [`Self::data`] that follows it
    /// (empty for an OACK); `None` when there is nothing to send now.
    pub fn poll_transmit_parts(&mut self, head: &mut Vec<u8>) -> Option<Range<usize>> {
        if self.outcome.is_some() {
            return None;
        }
        if self.send_oack {
            self.send_oack = false;
            head.extend_from_slice(self.oack.as_deref().unwrap_or_default());
            return Some(0..0);
        }
        if self.next > self.window_end {
            return None;
        }
        let block = self.next;
        self.next += 1;
        let len = self.data.total_len();
        let start = (((block - 1) * self.blksize) as usize).min(len);
        let end = (start + self.blksize as usize).min(len);
        head.extend_from_slice(&data_header(block as u16));
        Some(start..end)
    }

    /// The file being served, as far as it is read (the ranges
    /// [`Self::poll_transmit_parts`] returns index it; wait for them first).
    pub fn data(&self) -> &[u8] {
        self.data.as_ref()
    }

    /// Feeds one datagram that came from the client's address and port.
    pub fn handle(&mut self, datagram: &[u8], now: Instant) -> Event {
        if self.outcome.is_some() {
            return Event::Finished;
        }
        match Packet::decode(datagram) {
            Err(e) => Event::Malformed(e),
            Ok(Packet::Error { code, message }) => {
                self.outcome = Some(Outcome::ClientError { code, message });
                Event::Finished
            }
            Ok(Packet::Ack { block }) => self.on_ack(block, now),
            Ok(_) => Event::Ignored,
        }
    }

    fn on_ack(&mut self, wire: u16, now: Instant) -> Event {
        if self.oack.is_some() && self.window_end == 0 {
            // Waiting for ACK 0, which acknowledges the OACK and starts the data.
            if wire != 0 {
                return Event::Ignored;
            }
            self.retries = 0;
            self.open_window(now);
            return Event::Progress;
        }
        // The absolute block this ACK names: the one with these low 16 bits
        // in (acked, last sent]. Anything else is a duplicate or stale.
        let last_sent = self.next - 1;
        let Some(block) = (self.acked + 1..=last_sent).find(|b| *b as u16 == wire) else {
            return Event::Ignored;
        };
        self.acked = block;
        self.retries = 0;
        if block == self.total_blocks {
            self.outcome = Some(Outcome::Completed {
                bytes: self.data.total_len() as u64,
            });
            return Event::Finished;
        }
        if block >= self.window_end || block + 1 < self.next {
            // End of the window, or a gap: (re)send from the first
            // unacknowledged block.
            self.open_window(now);
        }
        Event::Progress
    }

    /// Starts a window at the first unacknowledged block.
    fn open_window(&mut self, now: Instant) {
        self.next = self.acked + 1;
        self.window_end = (self.acked + self.windowsize).min(self.total_blocks);
        self.deadline = Some(now + self.timeout());
    }

    fn timeout(&self) -> Duration {
        (self.base_timeout * 2u32.saturating_pow(self.retries))
            .min(self.retry.max_timeout.max(self.base_timeout))
    }

    /// Resends what is unacknowledged, or gives up after the last retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() || self.deadline.is_some_and(|d| now < d) {
            return;
        }
        if self.retries >= self.retry.max_retries {
            self.outcome = Some(Outcome::TimedOut {
                acked_blocks: self.acked,
                total_blocks: self.total_blocks,
            });
            return;
        }
        self.retries += 1;
        if self.oack.is_some() && self.window_end == 0 {
            self.send_oack = true;
            self.deadline = Some(now + self.timeout());
        } else {
            self.open_window(now);
        }
    }
}

#[cfg(test)]
mod tests;
