//! bootfleet's DHCPv4 server (RFC 2131/2132, PXE per RFC 4578).
//!
//! So far: [`boot`], the pure choice of what a booting machine is told to
//! load, from its option 93, vendor and user class and iPXE options. The
//! address policy, lease store and sockets come next.

pub mod boot;
