//! Sending a window of datagrams in as few system calls as the kernel
//! allows. Equal-sized datagrams laid end to end go out with one `sendmsg`
//! and UDP segmentation offload (`UDP_SEGMENT`, Linux 4.18+): the kernel
//! cuts the buffer into datagrams, so a window of 44 blocks costs one pass
//! through the network stack instead of 44, a quarter of the server's CPU
//! time of `sendmmsg(2)` at windowsize 64 (BENCHMARKS.md). Where the kernel
//! or the route refuses segmentation (no checksum offload on the device, an
//! old kernel) the batch falls back to `sendmmsg` for the rest of its life.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// `UDP_SEGMENT` from `linux/udp.h` (not in the libc crate for glibc).
const UDP_SEGMENT: libc::c_int = 103;
/// The kernel's limit of segments in one send (`UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;
/// The most payload one UDP send may carry (IPv6's 65535 less its 40-byte
/// header and UDP's 8, which also fits IPv4).
const MAX_PAYLOAD: usize = 65_487;

/// Set once any send here had segmentation refused.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// True once the kernel refused segmentation for some send: windows then
/// go out as separate datagrams, which cost a receiver more socket buffer
/// each (a whole allocation per datagram instead of a share of the
/// segmented buffer's pages), so the server grants smaller ones.
pub fn offload_refused() -> bool {
    REFUSED.load(Ordering::Relaxed)
}

/// A window of datagrams, end to end in one buffer.
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    /// Where each datagram ends in `buf`.
    ends: Vec<usize>,
    /// Segmentation offload still worth trying.
    gso: bool,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            buf: Vec::new(),
            ends: Vec::new(),
            gso: true,
        }
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// Datagrams in the batch.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends the datagram `write` appends to the buffer; false, adding
    /// nothing, when `write` returns false.
    pub fn push(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let start = self.buf.len();
        if write(&mut self.buf) {
            self.ends.push(self.buf.len());
            true
        } else {
            self.buf.truncate(start);
            false
        }
    }

    /// Datagram `i`'s byte range in the buffer.
    fn range(&self, i: usize) -> Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    /// Turns off segmentation offload (for tests of the fallback).
    #[cfg(test)]
    fn without_offload(mut self) -> Batch {
        self.gso = false;
        self
    }

    /// Sends every datagram to `peer`, in order; returns the bytes sent.
    pub async fn send(&mut self, socket: &UdpSocket, peer: SocketAddr) -> io::Result<u64> {
        let addr = socket2::SockAddr::from(peer);
        let mut done = 0;
        while done < self.len() {
            // With offload: the next run of equal datagrams in one send (a
            // run of one, such as an OACK, alone). Without: all the rest.
            let run = if self.gso {
                segment_run((done..self.len()).map(|i| self.range(i).len()))
            } else {
                self.len() - done
            };
            let segmented = self.gso && run > 1;
            socket.writable().await?;
            let result = socket.try_io(Interest::WRITABLE, || {
                if segmented {
                    let bytes = self.range(done).start..self.range(done + run - 1).end;
                    let segment = self.range(done).len();
                    send_segmented(socket, &self.buf[bytes], segment, &addr).map(|()| run)
                } else {
                    let ranges: Vec<Range<usize>> =
                        (done..done + run).map(|i| self.range(i)).collect();
                    sendmmsg(socket, &self.buf, &ranges, &addr)
                }
            });
            match result {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if segmented && refuses_offload(&e) => {
                    tracing::debug!(error = %e, "UDP segmentation refused; sending datagrams one by one");
                    self.gso = false;
                    REFUSED.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.buf.len() as u64)
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

/// One `sendmsg` of `payload` cut by the kernel into `segment`-byte
/// datagrams (the last may be shorter). Public for the benchmark's
/// ideal sender (`examples/tftp_ceiling.rs`), which must send the same way.
pub fn send_segmented(
    socket: &impl AsRawFd,
    payload: &[u8],
    segment: usize,
    addr: &socket2::SockAddr,
) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // Room for one control message carrying a u16, 8-byte aligned.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; the fields that matter are set below.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
    hdr.msg_namelen = addr.len();
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
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
    // SAFETY: `hdr` points at `iov`, `payload`, `control` and `addr`, which
    // outlive the call; the kernel only reads them.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &hdr, 0) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One `sendmmsg` call for up to 1024 of the datagrams at `ranges` of
/// `buf`; how many were sent.
fn sendmmsg(
    socket: &UdpSocket,
    buf: &[u8],
    ranges: &[Range<usize>],
    addr: &socket2::SockAddr,
) -> io::Result<usize> {
    let count = ranges.len().min(1024);
    let mut iovecs: Vec<libc::iovec> = ranges[..count]
        .iter()
        .map(|r| libc::iovec {
            iov_base: buf[r.clone()].as_ptr() as *mut libc::c_void,
            iov_len: r.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero msghdr is valid; the fields that matter are set below.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = addr.len();
            hdr.msg_iov = iov as *mut libc::iovec;
            hdr.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect();
    // SAFETY: `headers` points at `iovecs` and `addr`, which outlive the
    // call; the kernel only reads the buffers.
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

    /// Sends a window (an OACK-sized datagram, full blocks, a short tail)
    /// and checks the receiver sees the same datagrams, in order.
    async fn round_trip(batch: Batch) -> Batch {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut want: Vec<Vec<u8>> = vec![b"oack".to_vec()];
        want.extend((0..20u8).map(|i| vec![i; 1472]));
        want.push(vec![99; 100]);
        let mut batch = batch;
        for d in &want {
            assert!(batch.push(|b| {
                b.extend_from_slice(d);
                true
            }));
        }
        assert!(!batch.push(|b| {
            b.push(1);
            false
        }));
        assert_eq!(batch.len(), want.len());
        let sent = batch
            .send(&server, client.local_addr().unwrap())
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
