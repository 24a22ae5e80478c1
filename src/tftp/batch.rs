//! Sending a window of datagrams in as few system calls as the kernel
//! allows, without copying the file's data. Equal-sized datagrams go out
//! with one `sendmsg` and UDP segmentation offload (`UDP_SEGMENT`, Linux
//! 4.18+): the kernel cuts what the send's pieces add up to into datagrams,
//! so a window of 44 blocks costs one pass through the network stack
//! instead of 44, a quarter of the server's CPU time of `sendmmsg(2)` at
//! windowsize 64 (BENCHMARKS.md). Each datagram is two pieces, its head (a
//! DATA header, or a whole OACK) kept here and its body a range of the
//! file in memory, so the kernel copies the data straight from the file.
//! Where the kernel or the route refuses segmentation (no checksum offload
//! on the device, an old kernel) the batch falls back to `sendmmsg` for the
//! rest of its life.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// `UDP_SEGMENT` from `linux/udp.h` (not in the libc crate for glibc).
const UDP_SEGMENT: libc::c_int = 103;
/// The kernel's limit of segments in one send (`UDP_MAX_SEGMENTS`).
pub const MAX_SEGMENTS: usize = 64;
/// The most payload one UDP send may carry (IPv6's 65535 less its 40-byte
/// header and UDP's 8, which also fits IPv4).
pub const MAX_PAYLOAD: usize = 65_487;

/// A window of datagrams, each a head kept here and a body borrowed from
/// the sender's buffer at [`Batch::send`].
#[derive(Debug)]
pub struct Batch {
    /// The datagrams' heads, end to end.
    heads: Vec<u8>,
    /// Per datagram: where its head ends in `heads`, and its body's range
    /// in the buffer given to [`Batch::send`] (empty for a whole datagram).
    parts: Vec<(usize, Range<usize>)>,
    /// Segmentation offload still worth trying.
    gso: bool,
    /// Set when the kernel refused segmentation for a send: shared by
    /// every batch of one server (see [`Batch::reporting_to`]).
    refused: Option<Arc<AtomicBool>>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            heads: Vec::new(),
            parts: Vec::new(),
            gso: true,
            refused: None,
        }
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// A batch that sets `refused` once the kernel refuses segmentation:
    /// windows then go out as separate datagrams, which cost a receiver
    /// more socket buffer each (a whole allocation per datagram instead of
    /// a share of the segmented buffer's pages), so its server grants
    /// smaller windows from then on.
    pub fn reporting_to(refused: Arc<AtomicBool>) -> Batch {
        Batch {
            refused: Some(refused),
            ..Batch::default()
        }
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.heads.clear();
        self.parts.clear();
    }

    /// Datagrams in the batch.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Appends the whole datagram `write` appends; false, adding nothing,
    /// when `write` returns false.
    pub fn push(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        self.push_parts(|head| write(head).then_some(0..0))
    }

    /// Appends a datagram whose head `write` appends and whose body is the
    /// range it returns; false, adding nothing, when it returns `None`.
    pub fn push_parts(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Option<Range<usize>>) -> bool {
        let start = self.heads.len();
        match write(&mut self.heads) {
            Some(body) => {
                self.parts.push((self.heads.len(), body));
                true
            }
            None => {
                self.heads.truncate(start);
                false
            }
        }
    }

    /// Where the last body of the batch ends in the buffer given to
    /// [`Batch::send`]: that much of the file must be there first.
    pub fn body_end(&self) -> usize {
        self.parts.iter().map(|(_, r)| r.end).max().unwrap_or(0)
    }

    /// Datagram `i`'s head (its range in `heads`) and body range.
    fn part(&self, i: usize) -> (Range<usize>, &Range<usize>) {
        let start = if i == 0 { 0 } else { self.parts[i - 1].0 };
        let (end, body) = &self.parts[i];
        (start..*end, body)
    }

    /// Datagram `i`'s head and body.
    fn pieces<'a>(&'a self, i: usize, body: &'a [u8]) -> [IoSlice<'a>; 2] {
        let (head, range) = self.part(i);
        [
            IoSlice::new(&self.heads[head]),
            IoSlice::new(body.get(range.clone()).unwrap_or_default()),
        ]
    }

    /// Datagram `i`'s length.
    fn datagram_len(&self, i: usize) -> usize {
        let (head, body) = self.part(i);
        head.len() + body.len()
    }

    /// Turns off segmentation offload (for tests of the fallback).
    #[cfg(test)]
    fn without_offload(mut self) -> Batch {
        self.gso = false;
        self
    }

    /// Sends every datagram to `peer`, in order, the bodies taken from
    /// `body`; returns the bytes sent.
    pub async fn send(
        &mut self,
        socket: &UdpSocket,
        peer: SocketAddr,
        body: &[u8],
    ) -> io::Result<u64> {
        let addr = socket2::SockAddr::from(peer);
        let mut done = 0;
        while done < self.len() {
            // With offload: the next run of equal datagrams in one send (a
            // run of one, such as an OACK, alone). Without: all the rest.
            let run = if self.gso {
                segment_run((done..self.len()).map(|i| self.datagram_len(i)))
            } else {
                self.len() - done
            };
            let segmented = self.gso && run > 1;
            let pieces: Vec<IoSlice> = (done..done + run)
                .flat_map(|i| self.pieces(i, body))
                .collect();
            socket.writable().await?;
            let result = socket.try_io(Interest::WRITABLE, || {
                if segmented {
                    let segment = self.datagram_len(done);
                    send_segmented(socket, &pieces, segment, &addr).map(|()| run)
                } else {
                    sendmmsg(socket, &pieces, &addr)
                }
            });
            match result {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if segmented && refuses_offload(&e) => {
                    tracing::debug!(error = %crate::error_chain(&e), "UDP segmentation refused; sending datagrams one by one");
                    self.gso = false;
                    if let Some(r) = &self.refused {
                        r.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok((0..self.len()).map(|i| self.datagram_len(i) as u64).sum())
    }
}

/// How many datagrams from the start of `lens` one segmented send can
/// carry: a run of equal sizes, optionally ended by one shorter datagram,
/// within the kernel's segment and size limits. 1 means send it alone.
fn segment_run(mut lens: impl Iterator<Item = usize>) -> usize {
    let Some(seg) = lens.next() else { return 0 };
    let mut total = seg;
    let mut n = 1;
    for len in lens.take(MAX_SEGMENTS - 1) {
        if len > seg || total + len > MAX_PAYLOAD {
            break;
        }
        total += len;
        n += 1;
        if len < seg {
            break;
        }
    }
    n
}

/// Errors that mean the kernel or route will not segment for us.
fn refuses_offload(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// One `sendmsg` of what `pieces` add up to, cut by the kernel into
/// `segment`-byte datagrams (the last may be shorter). Public for the
/// benchmark's ideal sender (`examples/tftp_ceiling.rs`), which must send
/// the same way.
pub fn send_segmented(
    socket: &impl AsRawFd,
    pieces: &[IoSlice],
    segment: usize,
    addr: &socket2::SockAddr,
) -> io::Result<()> {
    // Room for one control message carrying a u16, 8-byte aligned.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; the fields that matter are set below.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
    hdr.msg_namelen = addr.len();
    // IoSlice is ABI-compatible with iovec on Unix (its documented layout).
    hdr.msg_iov = pieces.as_ptr() as *mut libc::iovec;
    hdr.msg_iovlen = pieces.len() as _;
    hdr.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
    // SAFETY: `control` is large enough and aligned for one cmsghdr with a
    // u16 (checked by CMSG_SPACE above), so CMSG_FIRSTHDR is non-null and
    // its data may be written.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment as u16);
    }
    // SAFETY: `hdr` points at `pieces`, their buffers, `control` and
    // `addr`, which outlive the call; the kernel only reads them.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &hdr, 0) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One `sendmmsg` call for up to 1024 datagrams, each two of `pieces`
/// (head and body); how many were sent.
fn sendmmsg(socket: &UdpSocket, pieces: &[IoSlice], addr: &socket2::SockAddr) -> io::Result<usize> {
    let count = (pieces.len() / 2).min(1024);
    let mut headers: Vec<libc::mmsghdr> = pieces
        .chunks_exact(2)
        .take(count)
        .map(|pair| {
            // SAFETY: an all-zero msghdr is valid; the fields that matter are set below.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = addr.len();
            // IoSlice is ABI-compatible with iovec on Unix.
            hdr.msg_iov = pair.as_ptr() as *mut libc::iovec;
            hdr.msg_iovlen = 2;
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect();
    // SAFETY: `headers` points at `pieces`, their buffers and `addr`, which
    // outlive the call; the kernel only reads them.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            0,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(lens: &[usize]) -> usize {
        segment_run(lens.iter().copied())
    }

    #[test]
    fn runs_take_equal_sizes_and_one_shorter_tail() {
        assert_eq!(run_of(&[]), 0);
        assert_eq!(run_of(&[100]), 1);
        assert_eq!(run_of(&[516, 516, 516, 20]), 4);
        assert_eq!(
            run_of(&[516, 516, 20, 516]),
            3,
            "a short datagram ends the run"
        );
        assert_eq!(run_of(&[30, 516, 516]), 1, "an OACK goes alone");
        assert_eq!(run_of(&[516; 100]), MAX_SEGMENTS);
        assert_eq!(run_of(&[1472; 100]), 44, "44 x 1472 fits in 65,487 bytes");
        assert_eq!(
            run_of(&[8196; 16]),
            7,
            "7 x 8196 fits in 65,487 bytes, 8 do not"
        );
        assert_eq!(run_of(&[65468, 65468]), 1);
    }

    /// Sends a window (a whole OACK-sized datagram, then full blocks and
    /// a short tail, each a 4-byte head and a body from `file`) and checks
    /// the receiver sees the same datagrams, in order.
    async fn round_trip(batch: Batch) -> Batch {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let file: Vec<u8> = (0..20 * 1468 + 96).map(|i| (i % 251) as u8).collect();
        let mut batch = batch;
        let mut want: Vec<Vec<u8>> = vec![b"oack".to_vec()];
        assert!(batch.push(|b| {
            b.extend_from_slice(b"oack");
            true
        }));
        for (i, chunk) in file.chunks(1468).enumerate() {
            let head = [0, 3, 0, i as u8];
            want.push([&head[..], chunk].concat());
            let at = i * 1468;
            assert!(batch.push_parts(|b| {
                b.extend_from_slice(&head);
                Some(at..at + chunk.len())
            }));
        }
        assert!(!batch.push(|b| {
            b.push(1);
            false
        }));
        assert_eq!(batch.len(), want.len());
        let sent = batch
            .send(&server, client.local_addr().unwrap(), &file)
            .await
            .unwrap();
        assert_eq!(sent, want.iter().map(|d| d.len() as u64).sum::<u64>());
        let mut buf = vec![0u8; 65536];
        for (i, d) in want.iter().enumerate() {
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &d[..], "datagram {i}");
        }
        batch
    }

    #[tokio::test]
    async fn a_window_arrives_as_the_same_datagrams_with_offload() {
        let batch = round_trip(Batch::new()).await;
        assert!(batch.gso, "loopback takes segmentation offload");
    }

    #[tokio::test]
    async fn a_window_arrives_as_the_same_datagrams_without_offload() {
        let batch = round_trip(Batch::new().without_offload()).await;
        assert!(!batch.gso);
    }
}
