//! bootfleet's DHCPv4 server (RFC 2131/2132, PXE per RFC 4578).
//!
//! So far, two pure pieces: [`boot`], what a booting machine is told to
//! load (from option 93, vendor and user class, iPXE options), and
//! [`pool`], which address a client gets. The message policy, the durable
//! lease store and the sockets come next.

pub mod boot;
pub mod config;
pub mod policy;
pub mod pool;
pub mod server;
pub mod store;
pub mod wire;
