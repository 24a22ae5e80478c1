//! Everything that must survive a restart, behind one contract per kind of
//! state: leases ([`Leases`]), enrolled machines ([`Machines`]), the site
//! key ([`Keys`]) and boot timelines ([`Timelines`]). Two backends keep
//! them: [`embedded`] (one redb file in the state directory; the default,
//! nothing to set up) and [`etcd`] (a site of several bootfleet servers).
//! Both pass the same conformance suite (`conformance.rs`).
//!
//! The store knows no protocol: it keeps records (a lease is an address, a
//! MAC and an expiry; a timeline is opaque bytes per MAC) and decides only
//! what must be decided in one place: which machine holds an address,
//! which name and address an enrolled machine gets, which key the site
//! signs with. Calls block; the servers make them off their async workers.

pub mod embedded;
pub mod error;
pub mod etcd;
mod import;

#[cfg(test)]
mod conformance;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use error::StoreError;

use crate::spec::{Mac, StateBackend};

/// One lease: who holds an address until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    /// Unix seconds when it ends.
    pub expires: u64,
}

/// One change to the stored leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store (or replace) the lease on `lease.ip`: an ACK's lease.
    Put(Lease),
    /// Hold `lease.ip` for `lease.mac` briefly: an OFFER's claim, so that
    /// no other server of the site offers the address to another machine.
    /// Kept only by shared stores, and only while this server lives.
    Hold(Lease),
    /// Forget `mac`'s lease on `ip` (a RELEASE, a DECLINE); nothing when
    /// another machine holds the address now.
    Remove { ip: Ipv4Addr, mac: Mac },
    /// Give back the hold this server made for `mac` on `ip` (the client
    /// took another server's offer); nothing when the address is bound, or
    /// held by another server.
    Unhold { ip: Ipv4Addr, mac: Mac },
    /// Keep `ip` from every machine until `until` (a DECLINE: something
    /// else answers at that address). A shared store tells every server
    /// (stored as a lease of [`QUARANTINED`]); the embedded one forgets the
    /// lease there, and the server keeps the quarantine in memory.
    Quarantine { ip: Ipv4Addr, until: u64 },
    /// Forget `mac`'s lease on `ip` if it expired by `expired_by` (unix
    /// seconds): the sweep of leases long expired. A lease renewed since
    /// (by any server) or another machine's is kept, and reported as
    /// [`Applied::Taken`].
    Forget {
        ip: Ipv4Addr,
        mac: Mac,
        expired_by: u64,
    },
}

/// The MAC a quarantined address is stored under in a shared store.
pub const QUARANTINED: Mac = Mac([0; 6]);

impl Op {
    /// The address the change is about.
    pub fn ip(&self) -> Ipv4Addr {
        match self {
            Op::Put(l) | Op::Hold(l) => l.ip,
            Op::Remove { ip, .. }
            | Op::Unhold { ip, .. }
            | Op::Quarantine { ip, .. }
            | Op::Forget { ip, .. } => *ip,
        }
    }
}

/// What became of one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// Another machine holds the address (an unexpired lease or hold made
    /// by another server): its lease as the store has it, if it still has
    /// one. Nothing was changed for this address.
    Taken(Option<Lease>),
}

/// Where leases survive restarts.
///
/// Contract: when `apply` returns `Ok`, every change marked
/// [`Applied::Done`] is on stable storage and `load` (after a crash, on any
/// server of the site) reflects it; when it returns `Err`, none is. The
/// DHCP server gathers the changes of all the requests it read in one go
/// into one batch (group commit: one fsync or one transaction for many
/// ACKs) and sends no ACK whose change is not done. A shared store
/// ([`Leases::shared`]) never lets a `Put` or `Hold` replace another MAC's
/// unexpired lease or hold, whichever server made it, even when two servers
/// write at once: one wins, the other hears [`Applied::Taken`]. Changes other
/// servers made reach this one through [`Leases::changes`].
/// Implementations are called from one thread at a time.
pub trait Leases: Send + Sync {
    /// Every stored lease.
    fn load(&self) -> Result<Vec<Lease>, StoreError>;
    /// Applies `ops` in order; one result per op.
    fn apply(&self, ops: &[Op]) -> Result<Vec<Applied>, StoreError>;
    /// Whether other servers share these leases (offers must then be
    /// claimed with [`Op::Hold`]).
    fn shared(&self) -> bool {
        false
    }
    /// What other servers changed since the last call: each address with
    /// its lease now, or `None` when it was freed.
    fn changes(&self) -> Vec<(Ipv4Addr, Option<Lease>)> {
        Vec::new()
    }
    /// Whether the last call reached the store (a shared one can be away).
    fn reachable(&self) -> bool {
        true
    }
    /// Whether this server is the one of its site that forgets leases long
    /// expired (one server alone always is; on a shared store one server
    /// at a time holds the role, and another takes it over when it dies).
    fn sweeper(&self) -> bool {
        true
    }
    /// Times this server read every lease again because it could not
    /// follow the others' changes (a shared store's history was compacted
    /// past what it had seen).
    fn rereads(&self) -> u64 {
        0
    }
    /// Every stored lease with the server that wrote it, where the store
    /// knows (`host:pid/n`; none for the embedded store: one server).
    fn listing(&self) -> Result<Vec<(Lease, Option<String>)>, StoreError> {
        Ok(self.load()?.into_iter().map(|l| (l, None)).collect())
    }
}

/// A machine enrolled without being in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    pub name: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// Unix seconds when it enrolled.
    pub at: u64,
}

/// What [`Machines::enrol`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolment {
    /// Enrolled now, as asked.
    Added,
    /// This MAC was enrolled already (perhaps by another server): the
    /// record that stands.
    Already(Enrolled),
    /// Another machine holds the name or the address: its record.
    Clash(Enrolled),
}

/// Machines enrolled at the site.
///
/// Contract: a MAC is enrolled at most once; no two enrolled machines share
/// a name or an address; the store decides, atomically, when two servers
/// enrol at once (never whoever writes last). An enrolment that returned
/// `Added` is durable and listed by every server from then on.
pub trait Machines: Send + Sync {
    /// Every enrolled machine, in enrolment order.
    fn list(&self) -> Result<Vec<Enrolled>, StoreError>;
    /// Enrols `machine` unless its MAC, name or address is taken.
    fn enrol(&self, machine: &Enrolled) -> Result<Enrolment, StoreError>;
}

/// The site key every node token is derived from.
///
/// Contract: the first `get_or_create` at a site stores `fresh`; every call
/// after it, on any server, returns that same key (create-if-absent, then
/// read, atomically), so every server's tokens open the same cloud-configs.
/// `get` never creates one.
pub trait Keys: Send + Sync {
    fn get(&self) -> Result<Option<[u8; 32]>, StoreError>;
    /// The site's key, `fresh` if there was none (then `true`).
    fn get_or_create(&self, fresh: [u8; 32]) -> Result<([u8; 32], bool), StoreError>;
}

/// Boot timelines: each server's record of each machine.
///
/// Contract: `save(server, rows)` durably replaces the records `server`
/// saved for the MACs it is given; `server` is a name stable across its
/// restarts (its HTTP address), so a restarted server replaces its own
/// records instead of adding more. `load` returns the last saved record
/// of every MAC and server (a store of one server keeps one per MAC).
/// Records are opaque to the store (the timeline registry writes JSON and
/// joins the records of one MAC).
pub trait Timelines: Send + Sync {
    fn load(&self) -> Result<Vec<(Mac, Vec<u8>)>, StoreError>;
    fn save(&self, server: &str, rows: &[(Mac, Vec<u8>)]) -> Result<(), StoreError>;
    /// The records servers other than `server` saved since the last call
    /// (the first call: since `load`). None for a store of one server.
    fn changed(&self, server: &str) -> Result<Vec<(Mac, Vec<u8>)>, StoreError> {
        let _ = server;
        Ok(Vec::new())
    }
    /// Removes every record of these machines' timelines (each server's).
    fn forget(&self, macs: &[Mac]) -> Result<(), StoreError>;
}

/// A site's state: the four stores of one backend.
#[derive(Clone)]
pub struct Store {
    pub leases: Arc<dyn Leases>,
    pub machines: Arc<dyn Machines>,
    pub keys: Arc<dyn Keys>,
    pub timelines: Arc<dyn Timelines>,
    /// For logs: `embedded /var/lib/bootfleet/state.redb`, `etcd http://…`.
    pub description: String,
}

/// Opens the store the spec's `[state]` names: the embedded one in
/// `state_dir` (opened at its first use, importing an older layout found
/// there), or etcd (connected now).
pub fn open(backend: &StateBackend, state_dir: &Path) -> Result<Store, StoreError> {
    match backend {
        StateBackend::Embedded => {
            let db = Arc::new(embedded::Lazy::new(state_dir));
            Ok(Store {
                description: format!("embedded {}", db.path().display()),
                leases: db.clone(),
                machines: db.clone(),
                keys: db.clone(),
                timelines: db,
            })
        }
        StateBackend::Etcd(config) => {
            let e = Arc::new(etcd::Etcd::connect(config)?);
            Ok(Store {
                description: format!("etcd {}", config.endpoints.join(",")),
                leases: e.clone(),
                machines: e.clone(),
                keys: e.clone(),
                timelines: e,
            })
        }
    }
}

impl<T: Leases + ?Sized> Leases for Arc<T> {
    fn load(&self) -> Result<Vec<Lease>, StoreError> {
        (**self).load()
    }
    fn apply(&self, ops: &[Op]) -> Result<Vec<Applied>, StoreError> {
        (**self).apply(ops)
    }
    fn shared(&self) -> bool {
        (**self).shared()
    }
    fn changes(&self) -> Vec<(Ipv4Addr, Option<Lease>)> {
        (**self).changes()
    }
    fn reachable(&self) -> bool {
        (**self).reachable()
    }
    fn rereads(&self) -> u64 {
        (**self).rereads()
    }
    fn sweeper(&self) -> bool {
        (**self).sweeper()
    }
    fn listing(&self) -> Result<Vec<(Lease, Option<String>)>, StoreError> {
        (**self).listing()
    }
}
