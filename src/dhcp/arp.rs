//! Telling the kernel's ARP table that a new address is at a client's
//! hardware address, so an OFFER or ACK can go to the client by unicast
//! before it has an address to answer ARP with (RFC 2131 4.1; dnsmasq and
//! ISC dhcpd do the same). The entry is an ordinary one that ages out; the
//! TFTP server's first packet to that machine then needs no ARP either.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;

use crate::spec::Mac;

/// `ATF_COM` from `linux/if_arp.h`: the entry is complete.
const ATF_COM: libc::c_int = 0x02;

/// Records `ip` at `mac` on `device` (the interface the socket is bound
/// to). Needs CAP_NET_ADMIN.
pub fn set(socket: &UdpSocket, device: &[u8], ip: Ipv4Addr, mac: Mac) -> io::Result<()> {
    // SAFETY: an all-zero arpreq is valid; the fields are set below.
    let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
    if device.is_empty() || device.len() >= req.arp_dev.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let pa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux, and
    // `arp_pa` is exactly a sockaddr.
    req.arp_pa = unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(pa) };
    req.arp_ha.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in req.arp_ha.sa_data.iter_mut().zip(mac.0) {
        *d = s as libc::c_char;
    }
    req.arp_flags = ATF_COM;
    for (d, s) in req.arp_dev.iter_mut().zip(device) {
        *d = *s as libc::c_char;
    }
    // SAFETY: a valid socket and a fully initialised arpreq that lives
    // across the call; the kernel only reads it.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSARP, &req) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
