//! The default store: one redb file, `state.redb` in the state directory
//! (mode 0600: it holds the site key), with a table per kind of state.
//! Every write is one transaction, committed (fsync) before it returns.
//! Opened the first time over a state directory of an older layout
//! (`leases.redb`, `boot.redb`, `enrolled.json`, `site.key`), it imports
//! them ([`super::import`]).

// redb's own error is large (160 bytes); it is boxed where it leaves this
// module (`StoreError`), and the transactions inside return it as it is.
#![allow(clippy::result_large_err)]

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable, TableDefinition};

use super::{
    Applied, Enrolled, Enrolment, Keys, Lease, Leases, Machines, Op, StoreError, Timelines,
};
use crate::spec::Mac;

/// The file in the state directory.
pub const FILE: &str = "state.redb";

/// ip (as u32) -> mac (6 bytes) + expiry (unix seconds, 8 bytes big-endian).
pub(super) const LEASES: TableDefinition<u32, &[u8]> = TableDefinition::new("leases");
/// sequence number -> enrolled machine (JSON), in enrolment order.
pub(super) const MACHINES: TableDefinition<u64, &[u8]> = TableDefinition::new("machines");
/// name -> value: `site_key` (32 bytes).
pub(super) const SITE: TableDefinition<&str, &[u8]> = TableDefinition::new("site");
/// mac (6 bytes) -> timeline record.
pub(super) const TIMELINES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("timelines");

const SITE_KEY: &str = "site_key";

/// The state of one server, in one file.
pub struct Embedded {
    db: Database,
    path: PathBuf,
}

impl Embedded {
    /// Opens (or creates) `state_dir/state.redb`.
    pub fn open(state_dir: &Path) -> Result<Embedded, StoreError> {
        let path = state_dir.join(FILE);
        let io = |source| StoreError::Io {
            path: state_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let fresh = !path.exists();
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source: Box::new(source),
        })?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::Io {
                path: path.clone(),
                source,
            },
        )?;
        let store = Embedded { db, path };
        store.write("creating the tables", |txn| {
            txn.open_table(LEASES)?;
            txn.open_table(MACHINES)?;
            txn.open_table(SITE)?;
            txn.open_table(TIMELINES)?;
            Ok(())
        })?;
        if fresh {
            super::import::older_layout(&store, state_dir)?;
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, what: &'static str) -> impl Fn(redb::Error) -> StoreError + '_ {
        move |source| StoreError::Embedded {
            path: self.path.clone(),
            what,
            source: Box::new(source),
        }
    }

    /// Runs `f` in one write transaction and commits it; nothing of it is
    /// kept when it fails.
    pub(super) fn write<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, redb::Error> {
            let txn = self.db.begin_write()?;
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        };
        run().map_err(self.fail(what))
    }

    fn read<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, redb::Error> { f(&self.db.begin_read()?) };
        run().map_err(self.fail(what))
    }
}

/// The embedded store as commands use it: opened (its file created) at
/// the first write, or at the first read when it exists (or an older
/// layout is there to import). Reading a site that has no state yet finds
/// it empty, so a command that fails before it writes leaves nothing.
pub struct Lazy {
    dir: PathBuf,
    db: Mutex<Option<Arc<Embedded>>>,
}

impl Lazy {
    pub fn new(state_dir: &Path) -> Lazy {
        Lazy {
            dir: state_dir.to_owned(),
            db: Mutex::new(None),
        }
    }

    /// The database file (which may not exist yet).
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    fn get(&self, create: bool) -> Result<Option<Arc<Embedded>>, StoreError> {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let there = || {
            std::iter::once(FILE)
                .chain(super::import::OLDER_FILES)
                .any(|f| self.dir.join(f).exists())
        };
        if db.is_none() && (create || there()) {
            *db = Some(Arc::new(Embedded::open(&self.dir)?));
        }
        Ok(db.clone())
    }

    fn opened(&self) -> Result<Arc<Embedded>, StoreError> {
        Ok(self.get(true)?.expect("opened when asked to create"))
    }
}

impl Leases for Lazy {
    fn load(&self) -> Result<Vec<Lease>, StoreError> {
        self.get(false)?
            .map_or(Ok(Vec::new()), |db| Leases::load(&*db))
    }
    fn apply(&self, ops: &[Op]) -> Result<Vec<Applied>, StoreError> {
        self.opened()?.apply(ops)
    }
}

impl Machines for Lazy {
    fn list(&self) -> Result<Vec<Enrolled>, StoreError> {
        self.get(false)?.map_or(Ok(Vec::new()), |db| db.list())
    }
    fn enrol(&self, machine: &Enrolled) -> Result<Enrolment, StoreError> {
        self.opened()?.enrol(machine)
    }
}

impl Keys for Lazy {
    fn get(&self) -> Result<Option<[u8; 32]>, StoreError> {
        self.get(false)?.map_or(Ok(None), |db| Keys::get(&*db))
    }
    fn get_or_create(&self, fresh: [u8; 32]) -> Result<([u8; 32], bool), StoreError> {
        self.opened()?.get_or_create(fresh)
    }
}

impl Timelines for Lazy {
    fn load(&self) -> Result<Vec<(Mac, Vec<u8>)>, StoreError> {
        self.get(false)?
            .map_or(Ok(Vec::new()), |db| Timelines::load(&*db))
    }
    fn save(&self, server: &str, rows: &[(Mac, Vec<u8>)]) -> Result<(), StoreError> {
        self.opened()?.save(server, rows)
    }
    fn forget(&self, macs: &[Mac]) -> Result<(), StoreError> {
        self.get(false)?.map_or(Ok(()), |db| db.forget(macs))
    }
}

/// The site key in `state_dir`, read without writing anything: from
/// `state.redb`, or from an older layout's `site.key` not imported yet.
pub fn peek_key(state_dir: &Path) -> Result<Option<[u8; 32]>, StoreError> {
    if state_dir.join(FILE).exists() {
        return Keys::get(&Embedded::open(state_dir)?);
    }
    super::import::older_key(state_dir)
}

pub(super) fn encode_lease(l: &Lease) -> [u8; 14] {
    let mut v = [0u8; 14];
    v[..6].copy_from_slice(&l.mac.0);
    v[6..].copy_from_slice(&l.expires.to_be_bytes());
    v
}

pub(super) fn decode_lease(ip: u32, v: &[u8]) -> Option<Lease> {
    let mac: [u8; 6] = v.get(..6)?.try_into().ok()?;
    let expires = u64::from_be_bytes(v.get(6..14)?.try_into().ok()?);
    Some(Lease {
        ip: Ipv4Addr::from(ip),
        mac: Mac(mac),
        expires,
    })
}

impl Leases for Embedded {
    fn load(&self) -> Result<Vec<Lease>, StoreError> {
        self.read("reading the leases", |txn| {
            let table = txn.open_table(LEASES)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                if let Some(l) = decode_lease(k.value(), v.value()) {
                    out.push(l);
                }
            }
            Ok(out)
        })
    }

    /// One server owns these leases: every change is done; holds need no
    /// claim and are not written.
    fn apply(&self, ops: &[Op]) -> Result<Vec<Applied>, StoreError> {
        let done = vec![Applied::Done; ops.len()];
        if !ops
            .iter()
            .any(|o| matches!(o, Op::Put(_) | Op::Remove { .. } | Op::Forget { .. }))
        {
            return Ok(done);
        }
        self.write("storing leases", |txn| {
            let mut t = txn.open_table(LEASES)?;
            let mut results = done.clone();
            for (o, result) in ops.iter().zip(&mut results) {
                match o {
                    Op::Put(lease) => {
                        t.insert(u32::from(lease.ip), encode_lease(lease).as_slice())?;
                    }
                    Op::Remove { ip, .. } | Op::Quarantine { ip, .. } => {
                        t.remove(u32::from(*ip))?;
                    }
                    Op::Forget {
                        ip,
                        mac,
                        expired_by,
                    } => {
                        let key = u32::from(*ip);
                        let stored = t.get(key)?.and_then(|v| decode_lease(key, v.value()));
                        match stored {
                            Some(l) if l.mac == *mac && l.expires <= *expired_by => {
                                t.remove(key)?;
                            }
                            Some(l) => *result = Applied::Taken(Some(l)),
                            None => {}
                        }
                    }
                    Op::Hold(_) | Op::Unhold { .. } => {}
                }
            }
            Ok(results)
        })
    }
}

fn machines_in(
    table: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Vec<(u64, Option<Enrolled>)>, redb::Error> {
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        out.push((k.value(), serde_json::from_slice(v.value()).ok()));
    }
    Ok(out)
}

impl Machines for Embedded {
    fn list(&self) -> Result<Vec<Enrolled>, StoreError> {
        let rows = self.read("reading the enrolled machines", |txn| {
            machines_in(&txn.open_table(MACHINES)?)
        })?;
        rows.into_iter()
            .map(|(seq, m)| {
                m.ok_or(StoreError::Malformed {
                    key: format!("machines/{seq}"),
                    why: "not an enrolled machine",
                })
            })
            .collect()
    }

    fn enrol(&self, machine: &Enrolled) -> Result<Enrolment, StoreError> {
        let record = serde_json::to_vec(machine).expect("plain data serialises");
        self.write("enrolling a machine", |txn| {
            let mut t = txn.open_table(MACHINES)?;
            let rows = machines_in(&t)?;
            let known = rows.iter().filter_map(|(_, m)| m.as_ref());
            for other in known {
                if other.mac == machine.mac {
                    return Ok(Enrolment::Already(other.clone()));
                }
                if other.name == machine.name || other.ip == machine.ip {
                    return Ok(Enrolment::Clash(other.clone()));
                }
            }
            let next = rows.last().map_or(0, |(seq, _)| seq + 1);
            t.insert(next, record.as_slice())?;
            Ok(Enrolment::Added)
        })
    }
}

impl Keys for Embedded {
    fn get(&self) -> Result<Option<[u8; 32]>, StoreError> {
        let raw = self.read("reading the site key", |txn| {
            let t = txn.open_table(SITE)?;
            Ok(t.get(SITE_KEY)?.map(|v| v.value().to_vec()))
        })?;
        raw.map(|v| {
            <[u8; 32]>::try_from(v.as_slice()).map_err(|_| StoreError::Malformed {
                key: "site/site_key".into(),
                why: "not 32 bytes",
            })
        })
        .transpose()
    }

    fn get_or_create(&self, fresh: [u8; 32]) -> Result<([u8; 32], bool), StoreError> {
        let raw = self.write("storing the site key", |txn| {
            let mut t = txn.open_table(SITE)?;
            if let Some(v) = t.get(SITE_KEY)? {
                return Ok(Some(v.value().to_vec()));
            }
            t.insert(SITE_KEY, fresh.as_slice())?;
            Ok(None)
        })?;
        match raw {
            None => Ok((fresh, true)),
            Some(v) => <[u8; 32]>::try_from(v.as_slice())
                .map(|k| (k, false))
                .map_err(|_| StoreError::Malformed {
                    key: "site/site_key".into(),
                    why: "not 32 bytes",
                }),
        }
    }
}

impl Timelines for Embedded {
    fn load(&self) -> Result<Vec<(Mac, Vec<u8>)>, StoreError> {
        self.read("reading the boot timelines", |txn| {
            let t = txn.open_table(TIMELINES)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                if let Ok(mac) = <[u8; 6]>::try_from(k.value()) {
                    out.push((Mac(mac), v.value().to_vec()));
                }
            }
            Ok(out)
        })
    }

    /// One server: `server` names nothing here.
    fn save(&self, _server: &str, rows: &[(Mac, Vec<u8>)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write("saving the boot timelines", |txn| {
            let mut t = txn.open_table(TIMELINES)?;
            for (mac, record) in rows {
                t.insert(mac.0.as_slice(), record.as_slice())?;
            }
            Ok(())
        })
    }

    fn forget(&self, macs: &[Mac]) -> Result<(), StoreError> {
        if macs.is_empty() {
            return Ok(());
        }
        self.write("forgetting boot timelines", |txn| {
            let mut t = txn.open_table(TIMELINES)?;
            for mac in macs {
                t.remove(mac.0.as_slice())?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let db = std::sync::Arc::new(Embedded::open(dir.path()).unwrap());
            super::super::Store {
                description: "embedded".into(),
                leases: db.clone(),
                machines: db.clone(),
                keys: db.clone(),
                timelines: db,
            }
        };
        super::super::conformance::run(&open);
    }

    #[test]
    fn a_lazy_store_writes_nothing_until_it_is_written_to() {
        let dir = tempfile::tempdir().unwrap();
        let lazy = Lazy::new(dir.path());
        assert_eq!(Keys::get(&lazy).unwrap(), None);
        assert!(Leases::load(&lazy).unwrap().is_empty());
        assert!(lazy.list().unwrap().is_empty());
        assert!(!lazy.path().exists(), "reads create nothing");
        lazy.get_or_create([4; 32]).unwrap();
        assert!(lazy.path().exists());
        drop(lazy);
        assert_eq!(Keys::get(&Lazy::new(dir.path())).unwrap(), Some([4; 32]));
    }

    #[test]
    fn the_file_is_private_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let db = Embedded::open(dir.path()).unwrap();
        let mode = std::fs::metadata(db.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
