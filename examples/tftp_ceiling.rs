//! The fastest a server could send one file to one TFTP client on this
//! machine: the bound `bench/tftp_ceiling.sh` measures bootfleet and
//! atftpd against. It does none of a server's work: the file is laid out
//! as DATA datagrams for each block size before the first request, one
//! transfer runs at a time on one thread, and that thread spins on its
//! socket instead of sleeping, so an ACK is answered the moment it lands.
//! Options are granted as bootfleet grants them (`negotiate`, default
//! limits), and windows leave the way bootfleet sends them (one segmented
//! `sendmsg` per run of up to 64 datagrams). No retransmission beyond a window resent
//! after a second of silence; not a server, only a yardstick.
//!
//! Usage: `tftp_ceiling ADDR:PORT FILE BLKSIZE...` (serves FILE under any
//! name, at the block sizes listed).

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::time::{Duration, Instant};

use bootfleet::tftp::batch::{MAX_PAYLOAD, MAX_SEGMENTS, send_segmented};
use bootfleet::tftp::options::{Limits, MAX_BLKSIZE, negotiate};
use bootfleet::tftp::packet::{Options, Packet, data_header};
use bootfleet::tftp::server::DEFAULT_WINDOW_BYTES;

/// A file as DATA datagrams of one block size, end to end.
struct Laid {
    /// Bytes per datagram (block size plus the 4-byte header).
    datagram: usize,
    bytes: Vec<u8>,
    /// Datagrams, the last shorter than a block (perhaps empty).
    blocks: usize,
}

impl Laid {
    fn new(file: &[u8], blksize: usize) -> Laid {
        let blocks = file.len() / blksize + 1;
        let mut bytes = Vec::with_capacity(file.len() + 4 * blocks);
        for i in 0..blocks {
            let data = &file[i * blksize..((i + 1) * blksize).min(file.len())];
            bytes.extend_from_slice(&data_header(((i + 1) % 65_536) as u16));
            bytes.extend_from_slice(data);
        }
        Laid {
            datagram: blksize + 4,
            bytes,
            blocks,
        }
    }

    /// The bytes of datagrams `blocks` (0-based).
    fn range(&self, blocks: Range<usize>) -> Range<usize> {
        blocks.start * self.datagram..(blocks.end * self.datagram).min(self.bytes.len())
    }

    /// Sends datagrams `blocks` in segmented runs.
    fn send(&self, socket: &UdpSocket, to: &socket2::SockAddr, blocks: Range<usize>) {
        let per_send = MAX_SEGMENTS.min(MAX_PAYLOAD / self.datagram).max(1);
        let mut at = blocks.start;
        while at < blocks.end {
            let end = (at + per_send).min(blocks.end);
            let payload = &self.bytes[self.range(at..end)];
            while let Err(e) = send_segmented(socket, &[IoSlice::new(payload)], self.datagram, to) {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    eprintln!("send: {e}");
                    return;
                }
            }
            at = end;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: tftp_ceiling ADDR:PORT FILE BLKSIZE...");
        std::process::exit(2);
    }
    let listen: SocketAddr = args[1].parse().expect("ADDR:PORT");
    let file = std::fs::read(&args[2]).expect("FILE readable");
    let laid: HashMap<usize, Laid> = args[3..]
        .iter()
        .map(|b| {
            let b: usize = b.parse().expect("BLKSIZE a number");
            (b, Laid::new(&file, b))
        })
        .collect();
    let server = UdpSocket::bind(listen).expect("bind");
    println!("listening on {listen}");
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, peer)) = server.recv_from(&mut buf) else {
            continue;
        };
        let Ok(Packet::Rrq { options, .. }) = Packet::decode(&buf[..n]) else {
            continue;
        };
        serve(&laid, file.len(), listen, peer, &options);
    }
}

/// One transfer to `peer`, answering its options.
fn serve(
    laid: &HashMap<usize, Laid>,
    size: usize,
    listen: SocketAddr,
    peer: SocketAddr,
    options: &Options,
) {
    let limits = Limits {
        max_blksize: MAX_BLKSIZE,
        max_windowsize: 64,
        max_window_bytes: DEFAULT_WINDOW_BYTES,
        default_timeout: Duration::from_secs(1),
    };
    let (granted, ack) = negotiate(options, size as u64, &limits);
    let (blksize, window) = (
        usize::from(granted.blksize),
        usize::from(granted.windowsize),
    );
    let Some(laid) = laid.get(&blksize) else {
        eprintln!("blksize {blksize} not laid out; pass it on the command line");
        return;
    };
    let socket = UdpSocket::bind((listen.ip(), 0)).expect("transfer socket");
    socket.set_nonblocking(true).expect("non-blocking");
    let to = socket2::SockAddr::from(peer);
    // Blocks before `from` are acknowledged; `sent` is the window's end.
    let (mut from, mut sent) = (0usize, 0usize);
    if ack.is_empty() {
        sent = window.min(laid.blocks);
        laid.send(&socket, &to, 0..sent);
    } else {
        let oack = Packet::Oack { options: ack }.to_bytes();
        let _ = socket.send_to(&oack, peer);
    }
    let mut buf = [0u8; 1024];
    let mut last = Instant::now();
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, p)) if p == peer => {
                let Ok(Packet::Ack { block }) = Packet::decode(&buf[..n]) else {
                    return; // an ERROR, or anything else, ends it
                };
                let acked = usize::from(block.wrapping_sub(from as u16));
                if acked > sent - from {
                    continue; // not in this window
                }
                from += acked;
                if from == laid.blocks {
                    return;
                }
                sent = (from + window).min(laid.blocks);
                laid.send(&socket, &to, from..sent);
                last = Instant::now();
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if last.elapsed() > Duration::from_secs(1) {
                    if sent > from {
                        laid.send(&socket, &to, from..sent);
                    }
                    last = Instant::now();
                }
                std::hint::spin_loop();
            }
            Err(_) => return,
        }
    }
}
