//! Sending a window of datagrams in one system call (`sendmmsg(2)`): a
//! window of 64 small blocks costs one syscall instead of 64, which is most
//! of the server's CPU time on a fast link.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Sends every datagram in `datagrams` to `peer`, in order. Returns the
/// bytes sent. Datagrams the kernel refuses with an error other than "would
/// block" are dropped (the transfer's timeout resends them).
pub async fn send_all(
    socket: &UdpSocket,
    datagrams: &[Vec<u8>],
    peer: SocketAddr,
) -> io::Result<u64> {
    let addr = socket2::SockAddr::from(peer);
    let mut done = 0;
    let mut bytes = 0u64;
    while done < datagrams.len() {
        socket.writable().await?;
        match socket.try_io(Interest::WRITABLE, || {
            sendmmsg(socket, &datagrams[done..], &addr)
        }) {
            Ok(n) => {
                bytes += datagrams[done..done + n]
                    .iter()
                    .map(|d| d.len() as u64)
                    .sum::<u64>();
                done += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(bytes)
}

/// One `sendmmsg` call for up to 1024 datagrams; how many were sent.
fn sendmmsg(
    socket: &UdpSocket,
    datagrams: &[Vec<u8>],
    addr: &socket2::SockAddr,
) -> io::Result<usize> {
    let count = datagrams.len().min(1024);
    let mut iovecs: Vec<libc::iovec> = datagrams[..count]
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
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
