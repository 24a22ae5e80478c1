//! State directories written before the one store kept four files:
//! `leases.redb`, `boot.redb` (timelines), `enrolled.json` and `site.key`.
//! A new `state.redb` takes over what they hold, in one transaction, and
//! each imported file is renamed `<name>.imported`, so nothing is lost and
//! nothing is read twice.

// redb's own error is large (160 bytes); it is boxed where it leaves this
// module (`StoreError`), and the transactions inside return it as it is.
#![allow(clippy::result_large_err)]

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use super::embedded::{self, Embedded};
use super::{Enrolled, StoreError};

/// The files of the older layout.
pub(super) const OLDER_FILES: [&str; 4] = ["leases.redb", "boot.redb", "enrolled.json", "site.key"];

const OLD_LEASES: TableDefinition<u32, &[u8]> = TableDefinition::new("leases");
const OLD_TIMELINES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("timelines");

/// What an older layout held.
#[derive(Default)]
struct Found {
    leases: Vec<(u32, Vec<u8>)>,
    timelines: Vec<(Vec<u8>, Vec<u8>)>,
    machines: Vec<Enrolled>,
    key: Option<[u8; 32]>,
    files: Vec<&'static str>,
}

/// A table's rows: key and value bytes.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Every row of `table` in the redb file at `path`, keys and values as
/// bytes (`key` turns a key into bytes).
fn redb_rows<K: redb::Key + 'static>(
    path: &Path,
    table: TableDefinition<K, &'static [u8]>,
    key: impl Fn(&redb::AccessGuard<'_, K>) -> Vec<u8>,
) -> Result<Rows, StoreError> {
    let fail = |source: redb::Error| StoreError::Import {
        path: path.to_owned(),
        source: Box::new(StoreError::Embedded {
            path: path.to_owned(),
            what: "reading",
            source: Box::new(source),
        }),
    };
    let db = Database::open(path).map_err(|e| fail(e.into()))?;
    let read = || -> Result<Rows, redb::Error> {
        let txn = db.begin_read()?;
        let t = match txn.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for r in t.iter()? {
            let (k, v) = r?;
            out.push((key(&k), v.value().to_vec()));
        }
        Ok(out)
    };
    read().map_err(fail)
}

/// Imports what `state_dir` holds in the older layout into `store`.
pub(super) fn older_layout(store: &Embedded, state_dir: &Path) -> Result<(), StoreError> {
    let mut found = Found::default();
    let leases = state_dir.join("leases.redb");
    if leases.exists() {
        found.leases = redb_rows(&leases, OLD_LEASES, |k| k.value().to_be_bytes().to_vec())?
            .into_iter()
            .filter_map(|(k, v)| Some((u32::from_be_bytes(k.try_into().ok()?), v)))
            .collect();
        found.files.push("leases.redb");
    }
    let boot = state_dir.join("boot.redb");
    if boot.exists() {
        found.timelines = redb_rows(&boot, OLD_TIMELINES, |k| k.value().to_vec())?;
        found.files.push("boot.redb");
    }
    let enrolled = state_dir.join("enrolled.json");
    if let Some(text) = read(&enrolled)? {
        found.machines = serde_json::from_str(&text).map_err(|source| StoreError::Import {
            path: enrolled.clone(),
            source: Box::new(StoreError::EnrolledDamaged {
                path: enrolled.clone(),
                source,
            }),
        })?;
        found.files.push("enrolled.json");
    }
    found.key = older_key(state_dir)?;
    if found.key.is_some() {
        found.files.push("site.key");
    }
    if found.files.is_empty() {
        return Ok(());
    }
    store.write("importing the older state files", |txn| {
        let mut t = txn.open_table(embedded::LEASES)?;
        for (ip, v) in &found.leases {
            t.insert(*ip, v.as_slice())?;
        }
        drop(t);
        let mut t = txn.open_table(embedded::TIMELINES)?;
        for (mac, v) in &found.timelines {
            t.insert(mac.as_slice(), v.as_slice())?;
        }
        drop(t);
        let mut t = txn.open_table(embedded::MACHINES)?;
        for (seq, m) in found.machines.iter().enumerate() {
            let record = serde_json::to_vec(m).expect("plain data serialises");
            t.insert(seq as u64, record.as_slice())?;
        }
        drop(t);
        if let Some(k) = &found.key {
            txn.open_table(embedded::SITE)?
                .insert("site_key", k.as_slice())?;
        }
        Ok(())
    })?;
    for f in &found.files {
        let from = state_dir.join(f);
        let to = state_dir.join(format!("{f}.imported"));
        crate::durable::rename(&from, &to)
            .map_err(|source| StoreError::Io { path: from, source })?;
    }
    tracing::info!(
        files = %found.files.join(" "),
        leases = found.leases.len(),
        machines = found.machines.len(),
        timelines = found.timelines.len(),
        "imported the older state files into {}",
        embedded::FILE
    );
    Ok(())
}

/// The older layout's `site.key` (64 hex digits), if there is one.
pub(super) fn older_key(state_dir: &Path) -> Result<Option<[u8; 32]>, StoreError> {
    let key = state_dir.join("site.key");
    let Some(text) = read(&key)? else {
        return Ok(None);
    };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| StoreError::KeyDamaged { path: key.clone() })?;
    Ok(Some(bytes))
}

fn read(path: &Path) -> Result<Option<String>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Keys, Leases, Machines, Timelines};

    #[test]
    fn an_older_state_directory_is_imported_once_and_its_files_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("site.key"), format!("{}\n", hex::encode([5u8; 32]))).unwrap();
        std::fs::write(
            d.join("enrolled.json"),
            r#"[{"name":"w-1","mac":"02:00:00:00:00:01","ip":"10.0.0.100","at":7}]"#,
        )
        .unwrap();
        {
            let db = Database::create(d.join("leases.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(OLD_LEASES)
                .unwrap()
                .insert(
                    u32::from(std::net::Ipv4Addr::new(10, 0, 0, 100)),
                    [2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 210].as_slice(),
                )
                .unwrap();
            txn.commit().unwrap();
            let db = Database::create(d.join("boot.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(OLD_TIMELINES)
                .unwrap()
                .insert([2u8, 0, 0, 0, 0, 1].as_slice(), b"{}".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Embedded::open(d).unwrap();
        assert_eq!(store.get().unwrap(), Some([5; 32]));
        let leases = Leases::load(&store).unwrap();
        assert_eq!((leases.len(), leases[0].expires), (1, 1234));
        assert_eq!(store.list().unwrap()[0].name, "w-1");
        assert_eq!(Timelines::load(&store).unwrap().len(), 1);
        for f in ["site.key", "enrolled.json", "leases.redb", "boot.redb"] {
            assert!(!d.join(f).exists(), "{f} moved aside");
            assert!(d.join(format!("{f}.imported")).exists(), "{f} kept");
        }
        drop(store);
        // Opened again: nothing imported twice, nothing lost.
        let store = Embedded::open(d).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
    }
}
