//! bootfleet's read-only TFTP server.
//!
//! RFC 1350 (octet and netascii), RFC 2347 option negotiation, RFC 2348
//! blksize, RFC 2349 timeout and tsize, RFC 7440 windowsize. The protocol
//! core ([`packet`], [`options`], [`transfer`]) does no I/O and reads no
//! clock; [`crate::files`] (shared with HTTP) resolves names safely under
//! a root; [`server`] runs it all on tokio with one socket (TID) per
//! transfer.

pub mod batch;
pub mod options;
pub mod packet;
pub mod server;
pub mod spin;
pub mod transfer;
