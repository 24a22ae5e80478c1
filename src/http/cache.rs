//! Whole files kept in memory for `/assets/`: a boot storm asks for the
//! same kernel and initrd hundreds of times at once, and serving them from
//! one shared copy saves a read from the page cache (and a copy) per
//! request and per chunk. Entries are keyed by path and validator (size
//! and mtime), so a replaced file is read afresh; concurrent first
//! requests wait for one read. Files are read, never mapped, so a file
//! truncated on disk cannot fault the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::sync::OnceCell;

/// Files at least this big are served from memory; smaller ones (loaders,
/// scripts) go through ServeDir as before.
pub const MIN_CACHED: u64 = 1 << 20;

/// One file version: its size and its contents once read.
type Entry = (u64, Arc<OnceCell<Bytes>>);

/// The cache; `budget` bounds the bytes held.
pub struct FileCache {
    budget: u64,
    /// By (path, validator).
    entries: Mutex<HashMap<(PathBuf, String), Entry>>,
}

impl FileCache {
    pub fn new(budget: u64) -> FileCache {
        FileCache {
            budget,
            entries: Mutex::default(),
        }
    }

    /// The contents of `path` (of `len` bytes, validator `tag`), read once;
    /// `None` when it does not fit the budget or cannot be read (the
    /// caller serves it from disk instead).
    pub async fn get(&self, path: &Path, len: u64, tag: &str) -> Option<Bytes> {
        if len > self.budget {
            return None;
        }
        let cell = {
            let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let key = (path.to_owned(), tag.to_owned());
            if !m.contains_key(&key) {
                // Older versions of this file, then others, make room.
                m.retain(|(p, _), _| p != path);
                let mut held: u64 = m.values().map(|(n, _)| n).sum();
                while held + len > self.budget {
                    let Some(k) = m.keys().next().cloned() else {
                        break;
                    };
                    held -= m.remove(&k).map_or(0, |(n, _)| n);
                }
                m.insert(key.clone(), (len, Arc::new(OnceCell::new())));
            }
            m.get(&key)?.1.clone()
        };
        let path = path.to_owned();
        let bytes = cell
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || std::fs::read(path))
                    .await
                    .map_err(|_| ())?
                    .map(Bytes::from)
                    .map_err(|_| ())
            })
            .await
            .ok()?;
        // The file changed between stat and read: let the caller go to disk.
        (bytes.len() as u64 == len).then(|| bytes.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_once_per_version_and_keeps_to_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, vec![1u8; 100]).unwrap();
        std::fs::write(&b, vec![2u8; 100]).unwrap();
        let c = FileCache::new(150);
        assert_eq!(c.get(&a, 100, "v1").await.unwrap()[0], 1);
        // A new version of a replaces the old one.
        std::fs::write(&a, vec![3u8; 100]).unwrap();
        assert_eq!(c.get(&a, 100, "v2").await.unwrap()[0], 3);
        // b does not fit beside a: a is dropped.
        assert_eq!(c.get(&b, 100, "v1").await.unwrap()[0], 2);
        assert_eq!(c.entries.lock().unwrap().len(), 1);
        assert!(c.get(&b, 200, "v2").await.is_none(), "over budget");
        // A length that no longer matches the file is not served.
        assert!(c.get(&a, 99, "v3").await.is_none());
    }
}
