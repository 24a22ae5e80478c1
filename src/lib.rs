//! bootfleet: turns machines with nothing installed into a booted cluster.
//!
//! The library holds every capability; `main.rs` only parses arguments and
//! maps errors to exit codes. `docs/architecture.md` says how the modules
//! depend on each other and follows one boot through them; each module's
//! own doc comment says what it holds and why.

pub mod boot;
mod chain;
pub mod cli;
pub mod clock;
pub mod cloudconfig;
pub mod cluster;
pub mod dhcp;
pub mod durable;
pub mod files;
pub mod http;
pub mod ignition;
pub mod images;
pub mod inventory;
pub mod metrics;
pub mod power;
pub mod prepare;
pub mod ra;
pub mod render;
pub mod server;
pub mod spec;
pub mod store;
pub mod tftp;

pub use chain::error_chain;
