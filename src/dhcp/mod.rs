//! bootfleet's DHCPv4 server (RFC 2131/2132, PXE per RFC 4578).
//!
//! Pure pieces: [`wire`] decodes without panicking, [`boot`] picks what a
//! booting machine is told to load (option 93, vendor and user class,
//! iPXE), [`pool`] which address a client gets, [`site`] which segment a
//! request is for, [`policy`] the full-mode answer to each message and
//! [`proxy`] the proxyDHCP one, each with its [`outcome`]. [`server`] runs the sockets (leases made durable in the
//! store by group commit) and [`arp`]
//! lets it answer a client that has no address yet by unicast.

pub mod arp;
pub mod boot;
pub mod config;
#[cfg(test)]
mod fixtures;
pub mod outcome;
pub mod policy;
pub mod pool;
pub mod proxy;
pub mod server;
pub mod site;
pub mod wire;
