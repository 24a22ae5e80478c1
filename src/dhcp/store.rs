//! Durable leases. [`LeaseStore`] is the contract; [`RedbStore`] keeps
//! leases in a redb file in the state directory. A lease is written and
//! committed (fsync) before its ACK leaves, so a crash never forgets an
//! address a client was told it holds.

use std::net::Ipv4Addr;
use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use super::pool::Lease;
use crate::spec::Mac;

/// ip (as u32) -> mac (6 bytes) + expiry (unix seconds, 8 bytes big-endian).
const LEASES: TableDefinition<u32, &[u8]> = TableDefinition::new("leases");

/// Why the lease store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lease database {path}: {message}")]
    Database { path: String, message: String },
    #[error("lease database: {0}")]
    Operation(String),
}

/// One change to the stored leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store (or replace) the lease on `lease.ip`.
    Put(Lease),
    /// Forget the lease on this address.
    Remove(Ipv4Addr),
}

/// Where leases survive restarts.
///
/// Contract: when `apply` returns `Ok`, every change in the batch is on
/// stable storage and `load` after a crash reflects it; when it fails, none
/// is. The server gathers the changes of all the requests it read in one
/// go into one batch (group commit): one fsync for many ACKs.
/// Implementations are called from one thread at a time.
pub trait LeaseStore: Send {
    /// Every stored lease.
    fn load(&self) -> Result<Vec<Lease>, StoreError>;
    /// Applies `ops` in order, atomically and durably.
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError>;

    /// Stores one lease durably.
    fn put(&self, lease: &Lease) -> Result<(), StoreError> {
        self.apply(&[Op::Put(lease.clone())])
    }

    /// Forgets one lease durably.
    fn remove(&self, ip: Ipv4Addr) -> Result<(), StoreError> {
        self.apply(&[Op::Remove(ip)])
    }
}

/// Leases in a redb database file.
pub struct RedbStore {
    db: Database,
}

fn op<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Operation(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        let db = Database::create(path).map_err(|e| StoreError::Database {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let txn = db.begin_write().map_err(op)?;
        txn.open_table(LEASES).map_err(op)?;
        txn.commit().map_err(op)?;
        Ok(RedbStore { db })
    }
}

fn encode(l: &Lease) -> [u8; 14] {
    let mut v = [0u8; 14];
    v[..6].copy_from_slice(&l.mac.0);
    v[6..].copy_from_slice(&l.expires.to_be_bytes());
    v
}

fn decode(ip: u32, v: &[u8]) -> Option<Lease> {
    let mac: [u8; 6] = v.get(..6)?.try_into().ok()?;
    let expires = u64::from_be_bytes(v.get(6..14)?.try_into().ok()?);
    Some(Lease {
        ip: Ipv4Addr::from(ip),
        mac: Mac(mac),
        expires,
    })
}

impl LeaseStore for RedbStore {
    fn load(&self) -> Result<Vec<Lease>, StoreError> {
        let txn = self.db.begin_read().map_err(op)?;
        let table = txn.open_table(LEASES).map_err(op)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(op)? {
            let (k, v) = row.map_err(op)?;
            if let Some(l) = decode(k.value(), v.value()) {
                out.push(l);
            }
        }
        Ok(out)
    }

    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(op)?;
        {
            let mut t = txn.open_table(LEASES).map_err(op)?;
            for o in ops {
                match o {
                    Op::Put(lease) => {
                        t.insert(u32::from(lease.ip), encode(lease).as_slice())
                            .map_err(op)?;
                    }
                    Op::Remove(ip) => {
                        t.remove(u32::from(*ip)).map_err(op)?;
                    }
                }
            }
        }
        // A dropped transaction aborts: nothing of a failed batch is kept.
        txn.commit().map_err(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/leases.redb");
        let a = Lease {
            ip: Ipv4Addr::new(10, 0, 0, 100),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            expires: 1234,
        };
        let b = Lease {
            ip: Ipv4Addr::new(10, 0, 0, 101),
            mac: Mac([2, 0, 0, 0, 0, 2]),
            expires: 99,
        };
        {
            let s = RedbStore::open(&path).unwrap();
            s.put(&a).unwrap();
            s.put(&b).unwrap();
            s.remove(b.ip).unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), vec![a.clone()]);
        let c = Lease {
            ip: Ipv4Addr::new(10, 0, 0, 102),
            ..a.clone()
        };
        s.apply(&[Op::Put(b.clone()), Op::Remove(a.ip), Op::Put(c.clone())])
            .unwrap();
        drop(s);
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), vec![b, c], "one batch, applied in order");
    }
}
