//! The transfer state machine against a simulated client over a simulated
//! network that loses, duplicates and reorders datagrams, on a fake clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::tftp::options::Negotiated;
use crate::tftp::packet::Packet;

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A receiver that behaves like RFC 7440 clients: ACK at the end of each
/// window or of the file; on silence, re-ACK the last good block.
struct Client {
    blksize: usize,
    windowsize: u64,
    expected: u64,
    in_window: u64,
    received: Vec<u8>,
    done: bool,
    last_heard: Instant,
    wants_oack: bool,
}

impl Client {
    fn on_datagram(&mut self, d: &[u8], now: Instant) -> Option<Vec<u8>> {
        self.last_heard = now;
        match Packet::decode(d).unwrap() {
            Packet::Oack { .. } if self.wants_oack => Some(Packet::Ack { block: 0 }.to_bytes()),
            Packet::Data { block, data } if block == self.expected as u16 && !self.done => {
                self.wants_oack = false;
                self.received.extend_from_slice(data);
                self.expected += 1;
                self.in_window += 1;
                if data.len() < self.blksize {
                    self.done = true;
                    return Some(Packet::Ack { block }.to_bytes());
                }
                if self.in_window == self.windowsize {
                    self.in_window = 0;
                    return Some(Packet::Ack { block }.to_bytes());
                }
                None
            }
            Packet::Data { block, .. } if self.done && block == (self.expected - 1) as u16 => {
                // The final ACK was lost: ACK the last block again.
                Some(Packet::Ack { block }.to_bytes())
            }
            _ => None,
        }
    }

    fn on_silence(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.done || now.duration_since(self.last_heard) < Duration::from_millis(1500) {
            return None;
        }
        self.last_heard = now;
        self.in_window = 0;
        Some(
            Packet::Ack {
                block: (self.expected - 1) as u16,
            }
            .to_bytes(),
        )
    }
}

struct Net {
    rng: Rng,
    loss: u64,
    dup: u64,
    reorder: bool,
    /// Delivery time (with a sequence number for ties) -> (to_server, bytes).
    queue: BTreeMap<(Instant, u64), (bool, Vec<u8>)>,
    seq: u64,
}

impl Net {
    fn send(&mut self, now: Instant, to_server: bool, bytes: Vec<u8>) {
        if self.rng.chance(self.loss) {
            return;
        }
        let copies = if self.rng.chance(self.dup) { 2 } else { 1 };
        for _ in 0..copies {
            // 1-20 ms of latency, so packets can overtake each other; or a
            // fixed 5 ms, in order.
            let delay = Duration::from_millis(if self.reorder {
                1 + self.rng.next() % 20
            } else {
                5
            });
            self.seq += 1;
            self.queue
                .insert((now + delay, self.seq), (to_server, bytes.clone()));
        }
    }
}

fn negotiated(blksize: u16, windowsize: u16) -> Negotiated {
    Negotiated {
        blksize,
        windowsize,
        timeout: Duration::from_secs(1),
    }
}

/// Runs a whole transfer; returns the outcome, what the client got, and the
/// number of datagrams the server sent.
fn simulate(
    size: usize,
    blksize: u16,
    windowsize: u16,
    loss: u64,
    dup: u64,
    seed: u64,
    oack: bool,
) -> (Outcome, Vec<u8>, u64) {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
    let start = Instant::now();
    let oack_bytes = oack.then(|| {
        Packet::Oack {
            options: vec![("blksize".into(), blksize.to_string())],
        }
        .to_bytes()
    });
    let retry = Retry {
        max_retries: 8,
        max_timeout: Duration::from_secs(8),
    };
    let mut t = ReadTransfer::new(
        data.clone(),
        negotiated(blksize, windowsize),
        oack_bytes,
        retry,
        start,
    );
    let mut client = Client {
        blksize: blksize as usize,
        windowsize: u64::from(windowsize),
        expected: 1,
        in_window: 0,
        received: Vec::new(),
        done: false,
        last_heard: start,
        wants_oack: oack,
    };
    let mut net = Net {
        rng: Rng(seed | 1),
        loss,
        dup,
        reorder: loss + dup > 0,
        queue: BTreeMap::new(),
        seq: 0,
    };
    let mut now = start;
    let mut buf = Vec::new();
    let mut sent = 0u64;
    for _ in 0..2_000_000 {
        while {
            buf.clear();
            t.poll_transmit(&mut buf)
        } {
            sent += 1;
            net.send(now, false, buf.clone());
        }
        if let Some(outcome) = t.outcome() {
            return (outcome.clone(), client.received, sent);
        }
        if let Some(ack) = client.on_silence(now) {
            net.send(now, true, ack);
        }
        // Advance the fake clock to the next thing that happens.
        let next_packet = net.queue.keys().next().map(|k| k.0);
        let next_timer = t.poll_timeout();
        let client_timer = now + Duration::from_millis(1500);
        let wake = [next_packet, next_timer, Some(client_timer)]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        now = now.max(wake);
        if let Some((&key, _)) = net.queue.iter().next().filter(|(k, _)| k.0 <= now) {
            let (to_server, bytes) = net.queue.remove(&key).unwrap();
            if to_server {
                t.handle(&bytes, now);
            } else if let Some(reply) = client.on_datagram(&bytes, now) {
                net.send(now, true, reply);
            }
        }
        t.handle_timeout(now);
    }
    panic!("simulation did not finish");
}

#[test]
fn clean_transfers_of_every_shape_complete_with_the_right_bytes() {
    for (size, blksize, window) in [
        (0, 512, 1),
        (512, 512, 1),
        (511, 512, 1),
        (513, 512, 1),
        (100_000, 1468, 1),
        (100_000, 1468, 16),
        (1 << 20, 8192, 64),
        (512 * 4, 512, 4),
    ] {
        let (outcome, got, sent) = simulate(size, blksize, window, 0, 0, 1, true);
        assert_eq!(
            outcome,
            Outcome::Completed { bytes: size as u64 },
            "{size}/{blksize}/{window}"
        );
        assert_eq!(got.len(), size);
        let blocks = size as u64 / u64::from(blksize) + 1;
        assert_eq!(
            sent,
            blocks + 1,
            "no resends on a clean network ({size}/{blksize}/{window})"
        );
    }
}

#[test]
fn block_numbers_wrap_past_65535() {
    let size = 70_000 * 8;
    let (outcome, got, _) = simulate(size, 8, 32, 0, 0, 3, false);
    assert_eq!(outcome, Outcome::Completed { bytes: size as u64 });
    assert_eq!(got.len(), size);
}

#[test]
fn loss_duplication_and_reordering_still_deliver_every_byte() {
    for seed in 1..=20u64 {
        for window in [1u16, 4, 16] {
            let size = 200_000 + seed as usize * 977;
            let (outcome, got, _) = simulate(size, 1468, window, 10, 10, seed, seed % 2 == 0);
            assert_eq!(
                outcome,
                Outcome::Completed { bytes: size as u64 },
                "seed {seed} window {window}"
            );
            let want: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
            assert!(got == want, "seed {seed} window {window}: corrupted data");
        }
    }
}

#[test]
fn a_silent_client_times_out_after_the_retries_with_backoff() {
    let start = Instant::now();
    let retry = Retry {
        max_retries: 3,
        max_timeout: Duration::from_secs(4),
    };
    let mut t = ReadTransfer::new(vec![1u8; 2000], negotiated(512, 1), None, retry, start);
    let mut buf = Vec::new();
    let mut deadlines = Vec::new();
    let mut sends = 0;
    while t.outcome().is_none() {
        while t.poll_transmit(&mut buf) {
            sends += 1;
        }
        let Some(d) = t.poll_timeout() else { break };
        deadlines.push(d.duration_since(start).as_secs());
        t.handle_timeout(d);
    }
    assert_eq!(
        deadlines,
        vec![1, 3, 7, 11],
        "1 s, then 2, 4, and capped at 4"
    );
    assert_eq!(sends, 4, "the first block, then three resends");
    assert_eq!(
        t.outcome(),
        Some(&Outcome::TimedOut {
            acked_blocks: 0,
            total_blocks: 4
        })
    );
}

#[test]
fn duplicate_acks_do_not_cause_resends() {
    let now = Instant::now();
    let mut t = ReadTransfer::new(
        vec![0u8; 5000],
        negotiated(512, 1),
        None,
        Retry::default(),
        now,
    );
    let mut buf = Vec::new();
    assert!(t.poll_transmit(&mut buf));
    let ack1 = Packet::Ack { block: 1 }.to_bytes();
    assert_eq!(t.handle(&ack1, now), Event::Progress);
    assert!(t.poll_transmit(&mut buf));
    assert!(!t.poll_transmit(&mut buf));
    assert_eq!(t.handle(&ack1, now), Event::Ignored);
    assert!(
        !t.poll_transmit(&mut buf),
        "Sorcerer's Apprentice: no resend on a duplicate ACK"
    );
}

#[test]
fn a_client_error_ends_the_transfer_at_once() {
    let now = Instant::now();
    let oack = Packet::Oack {
        options: vec![("tsize".into(), "5000".into())],
    }
    .to_bytes();
    let mut t = ReadTransfer::new(
        vec![0u8; 5000],
        negotiated(512, 1),
        Some(oack.clone()),
        Retry::default(),
        now,
    );
    let mut buf = Vec::new();
    assert!(t.poll_transmit(&mut buf));
    assert_eq!(buf, oack);
    let abort = Packet::Error {
        code: 8,
        message: "size probe".into(),
    }
    .to_bytes();
    assert_eq!(t.handle(&abort, now), Event::Finished);
    assert_eq!(
        t.outcome(),
        Some(&Outcome::ClientError {
            code: 8,
            message: "size probe".into()
        })
    );
    assert!(!t.poll_transmit(&mut buf));
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn garbage_is_reported_not_fatal() {
    let now = Instant::now();
    let mut t = ReadTransfer::new(
        vec![0u8; 10],
        negotiated(512, 1),
        None,
        Retry::default(),
        now,
    );
    assert!(matches!(t.handle(b"\x00", now), Event::Malformed(_)));
    assert!(matches!(t.handle(b"\x00\x04\x00\x09", now), Event::Ignored));
    assert!(t.outcome().is_none());
}

#[test]
fn parts_name_the_oack_then_each_blocks_header_and_range_of_the_file() {
    let now = Instant::now();
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let oack = Packet::Oack {
        options: vec![("blksize".into(), "512".into())],
    }
    .to_bytes();
    let mut t = ReadTransfer::new(
        data.clone(),
        negotiated(512, 4),
        Some(oack.clone()),
        Retry::default(),
        now,
    );
    let mut head = Vec::new();
    assert_eq!(t.poll_transmit_parts(&mut head), Some(0..0));
    assert_eq!(head, oack, "the OACK goes whole");
    assert_eq!(t.poll_transmit_parts(&mut head), None, "until ACK 0");
    t.handle(&Packet::Ack { block: 0 }.to_bytes(), now);
    head.clear();
    assert_eq!(t.poll_transmit_parts(&mut head), Some(0..512));
    assert_eq!(t.poll_transmit_parts(&mut head), Some(512..1000));
    assert_eq!(head, [0, 3, 0, 1, 0, 3, 0, 2], "two DATA headers");
    assert_eq!(t.poll_transmit_parts(&mut head), None, "the file ended");
    assert_eq!(t.data(), &data[..]);
}
