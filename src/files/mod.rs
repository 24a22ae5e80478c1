//! The files TFTP and HTTP serve, and how they are read: one copy in
//! memory of each, whichever way it is fetched.
//!
//! A request name is mapped into the root: `\` counts as `/`, a leading `/`
//! is dropped (absolute names stay inside the root), `.` and empty parts are
//! skipped, and `..`, control or non-ASCII bytes and overlong names are
//! refused outright. The resolved path must stay under the root after
//! symlinks are followed and be a regular file. Generated files (boot
//! scripts rendered from the spec) are looked up first.
//!
//! Files are read into memory once and shared: every transfer of the same
//! file (same path, size and modification time) holds the same bytes, and
//! concurrent first requests wait for one read. The last [`KEEP`] files
//! opened stay in memory after their transfers end: machines boot in
//! waves, and a file read again costs its whole read before its first
//! block leaves (for a 64 MiB file, a third of the server's time in a
//! lock-step transfer went to zeroing the pages of that read).
//! The bytes held are bounded; kept files make room for new ones, and past
//! the bound new files are refused as busy.

pub mod netascii;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::SystemTime;

/// How many recently opened files stay in memory after their transfers.
pub const KEEP: usize = 16;

/// The longest request name accepted.
pub const MAX_NAME: usize = 512;

/// Why a request was refused; each is logged and counted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("the name has a `..` component")]
    Traversal,
    #[error("the name has control or non-ASCII characters")]
    BadCharacters,
    #[error("the name is longer than {MAX_NAME} bytes")]
    TooLong,
    #[error("the name is empty")]
    Empty,
    #[error("the file resolves outside the served root")]
    OutsideRoot,
    #[error("not a regular file")]
    NotAFile,
    #[error("file not found")]
    NotFound,
    #[error(
        "not enough memory for another file: {needed} bytes wanted, {in_use} of {limit} in use"
    )]
    MemoryFull {
        needed: u64,
        in_use: u64,
        limit: u64,
    },
    /// The I/O error is kept (shared: a refusal is cloned into logs and
    /// counters) so that its kind and text reach the log.
    #[error("cannot read the file")]
    Unreadable(#[source] std::sync::Arc<std::io::Error>),
}

/// Two refusals are the same when they are of one kind and say the same
/// (an I/O error has no equality of its own).
impl PartialEq for Refusal {
    fn eq(&self, other: &Refusal) -> bool {
        self.kind() == other.kind() && crate::error_chain(self) == crate::error_chain(other)
    }
}

impl Eq for Refusal {}

fn unreadable(e: std::io::Error) -> Refusal {
    Refusal::Unreadable(std::sync::Arc::new(e))
}

impl Refusal {
    /// A short name for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Traversal => "traversal",
            Refusal::BadCharacters => "bad_characters",
            Refusal::TooLong => "too_long",
            Refusal::Empty => "empty",
            Refusal::OutsideRoot => "outside_root",
            Refusal::NotAFile => "not_a_file",
            Refusal::NotFound => "not_found",
            Refusal::MemoryFull { .. } => "memory_full",
            Refusal::Unreadable(_) => "unreadable",
        }
    }
}

/// How far a file's read has come.
#[derive(Debug, Clone)]
enum Fill {
    /// This many bytes are there.
    Reading(usize),
    Done,
    Failed(Arc<std::io::Error>),
}

/// A file's bytes, shared by every transfer that serves it, and filled
/// while it is served: a file read from disk is read by a thread of its
/// own, a chunk at a time, and a transfer waits only for the blocks it is
/// about to send ([`Shared::ready`]). The first transfer of a file used to
/// wait for the whole read first (a 64 MiB file: 45-60 ms of page faults
/// and copying before its first block, most of why a server's first
/// transfer of a big file was the slowest). Dropping the last holder gives
/// its bytes back to the memory bound.
///
/// The buffer is written by one thread only, each byte once, past
/// `filled`; everyone else reads only below `filled` (loaded with Acquire
/// after the writer's Release), which never changes again.
#[derive(Debug)]
pub struct FileData {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    filled: std::sync::atomic::AtomicUsize,
    /// Shared with the reading thread, which holds the bytes only weakly
    /// (and only while it writes a chunk): a file every transfer gave up
    /// on is freed, and its read stops.
    progress: Arc<tokio::sync::watch::Sender<Fill>>,
    accounted: Option<Arc<AtomicU64>>,
}

// SAFETY: the bytes are reached through `ptr` only as described above: the
// one writer writes where no reader looks, readers look only at bytes that
// are final. The allocation is owned and freed once, on drop.
unsafe impl Send for FileData {}
unsafe impl Sync for FileData {}

impl FileData {
    fn new(bytes: Box<[u8]>, filled: usize, accounted: Option<Arc<AtomicU64>>) -> FileData {
        let len = bytes.len();
        let done = filled == len;
        let ptr =
            std::ptr::NonNull::new(Box::into_raw(bytes).cast::<u8>()).expect("a box is not null");
        FileData {
            ptr,
            len,
            filled: std::sync::atomic::AtomicUsize::new(filled),
            progress: Arc::new(tokio::sync::watch::Sender::new(if done {
                Fill::Done
            } else {
                Fill::Reading(filled)
            })),
            accounted,
        }
    }

    fn filled(&self) -> usize {
        self.filled.load(Ordering::Acquire)
    }
}

impl AsRef<[u8]> for FileData {
    /// The bytes read so far (the whole file once read).
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first `filled` bytes are initialised and final.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.filled()) }
    }
}

impl Drop for FileData {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` came from a boxed slice, freed only here.
        drop(unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ))
        });
        if let Some(a) = &self.accounted {
            a.fetch_sub(self.len as u64, Ordering::Relaxed);
        }
    }
}

/// A file's bytes as every transfer of it holds them.
#[derive(Debug, Clone)]
pub struct Shared(Arc<FileData>);

impl AsRef<[u8]> for Shared {
    /// The bytes read so far: the whole file once [`Shared::complete`].
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref().as_ref()
    }
}

/// How much a file read from disk is read at once before the transfers
/// waiting for it hear of it.
const READ_CHUNK: usize = 1 << 20;

impl Shared {
    fn new(bytes: Vec<u8>, accounted: Option<Arc<AtomicU64>>) -> Shared {
        let len = bytes.len();
        Shared(Arc::new(FileData::new(
            bytes.into_boxed_slice(),
            len,
            accounted,
        )))
    }

    /// `len` bytes of `file`, read from now on by a thread of its own.
    /// The buffer comes zeroed from the allocator (pages the kernel maps
    /// as they are written, so nothing is touched twice).
    fn reading(mut file: std::fs::File, len: usize, accounted: Arc<AtomicU64>) -> Shared {
        let shared = Shared(Arc::new(FileData::new(
            vec![0u8; len].into_boxed_slice(),
            0,
            Some(accounted),
        )));
        let (data, progress, len) = (Arc::downgrade(&shared.0), shared.0.progress.clone(), len);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut filled = 0;
            let fill = loop {
                if filled == len {
                    break Fill::Done;
                }
                // Nobody serves the file any more: stop.
                let Some(data) = data.upgrade() else { return };
                let n = (len - filled).min(READ_CHUNK);
                // SAFETY: bytes from `filled` on are this thread's alone
                // (see `FileData`); the range lies inside the allocation,
                // which `data` keeps alive while it is written.
                let dest =
                    unsafe { std::slice::from_raw_parts_mut(data.ptr.as_ptr().add(filled), n) };
                match file.read(dest) {
                    Ok(0) => {
                        break Fill::Failed(Arc::new(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!(
                                "the file ended after {filled} of {len} bytes while it was read"
                            ),
                        )));
                    }
                    Ok(got) => {
                        filled += got;
                        data.filled.store(filled, Ordering::Release);
                        drop(data);
                        progress.send_replace(Fill::Reading(filled));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Fill::Failed(Arc::new(e)),
                }
            };
            progress.send_replace(fill);
        });
        shared
    }

    /// The whole length of the file (more than [`AsRef::as_ref`] holds
    /// while it is read).
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// Waits until the first `end` bytes are read; the read's error if it
    /// failed before (the file shrank, or the disk failed).
    pub async fn ready(&self, end: usize) -> Result<(), Refusal> {
        let end = end.min(self.0.len);
        if self.0.filled() >= end {
            return Ok(());
        }
        let mut progress = self.0.progress.subscribe();
        let fill = progress
            .wait_for(|f| match f {
                Fill::Reading(n) => *n >= end,
                Fill::Done | Fill::Failed(_) => true,
            })
            .await
            .map(|f| f.clone());
        match fill {
            Ok(Fill::Failed(e)) if self.0.filled() < end => Err(Refusal::Unreadable(e)),
            _ => Ok(()),
        }
    }

    /// Waits until the whole file is read.
    pub async fn complete(&self) -> Result<(), Refusal> {
        self.ready(self.0.len).await
    }

    /// True when both hold the very same bytes (one read, shared).
    pub fn same_as(&self, other: &Shared) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    path: PathBuf,
    netascii: bool,
    len: u64,
    modified: Option<SystemTime>,
}

/// The served root, the generated files, and the shared cache. In `serve`
/// the same cache also backs HTTP's `/assets/` ([`Files::open_path`]), so
/// a kernel or initrd fetched over both is held once.
pub struct Files {
    root: PathBuf,
    generated: RwLock<HashMap<String, Shared>>,
    cache: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Weak<FileData>>>>>,
    /// The last files opened, most recent last (see [`KEEP`]).
    kept: Mutex<VecDeque<Shared>>,
    in_use: Arc<AtomicU64>,
    limit: u64,
    disk_reads: AtomicU64,
    /// Generated files on their way (a machine being enrolled): a request
    /// for one waits for them instead of being refused.
    coming: Mutex<HashSet<String>>,
    /// Woken whenever generated files change or stop being awaited.
    made: tokio::sync::Notify,
}

/// How long a request for a generated file on its way waits for it.
const COMING_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Maps a request name to a relative path under the root.
pub fn normalize(name: &str) -> Result<String, Refusal> {
    if name.len() > MAX_NAME {
        return Err(Refusal::TooLong);
    }
    if name.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return Err(Refusal::BadCharacters);
    }
    let mut parts = Vec::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(Refusal::Traversal),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(Refusal::Empty);
    }
    Ok(parts.join("/"))
}

impl Files {
    /// Serves files under `root` (which must exist), holding at most
    /// `limit` bytes of file data at once.
    pub fn new(root: &Path, limit: u64) -> std::io::Result<Files> {
        Ok(Files {
            root: root.canonicalize()?,
            generated: RwLock::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            kept: Mutex::new(VecDeque::new()),
            in_use: Arc::new(AtomicU64::new(0)),
            limit,
            disk_reads: AtomicU64::new(0),
            coming: Mutex::new(HashSet::new()),
            made: tokio::sync::Notify::new(),
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Replaces the generated files (relative path -> content).
    pub fn set_generated(&self, files: impl IntoIterator<Item = (String, Vec<u8>)>) {
        let map = files
            .into_iter()
            .map(|(p, b)| (p, Shared::new(b, None)))
            .collect();
        *self
            .generated
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = map;
        self.made.notify_waiters();
    }

    /// Says that generated files `names` are being made: until
    /// [`Files::settled`], a request for one of them waits (up to 3 s) for
    /// it. A machine that DHCP has just answered asks for its
    /// `pxelinux.cfg/01-<mac>` a fraction of a second later, often before
    /// its enrolment has rendered it.
    pub fn coming(&self, names: impl IntoIterator<Item = String>) {
        self.coming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(names);
    }

    /// Files `names` are no longer awaited (made, or refused): waiting
    /// requests look again.
    pub fn settled(&self, names: &[String]) {
        let mut coming = self
            .coming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for n in names {
            coming.remove(n);
        }
        drop(coming);
        self.made.notify_waiters();
    }

    fn generated(&self, rel: &str) -> Option<Shared> {
        self.generated
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(rel)
            .cloned()
    }

    /// The generated file `rel`, waiting for it while it is on its way.
    async fn generated_or_coming(&self, rel: &str) -> Option<Shared> {
        let deadline = tokio::time::Instant::now() + COMING_WAIT;
        loop {
            let made = self.made.notified();
            tokio::pin!(made);
            made.as_mut().enable();
            if let Some(g) = self.generated(rel) {
                return Some(g);
            }
            if !self
                .coming
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(rel)
            {
                return None;
            }
            if tokio::time::timeout_at(deadline, made).await.is_err() {
                return self.generated(rel);
            }
        }
    }

    /// Bytes of file data held now, by transfers and kept files.
    pub fn bytes_in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Files read from disk so far.
    pub fn disk_reads(&self) -> u64 {
        self.disk_reads.load(Ordering::Relaxed)
    }

    /// Marks `shared` as the most recently opened file.
    fn keep(&self, shared: &Shared) {
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.retain(|k| !k.same_as(shared));
        kept.push_back(shared.clone());
        while kept.len() > KEEP {
            kept.pop_front();
        }
    }

    /// Lets go of kept files no transfer holds, oldest first, until
    /// `needed` more bytes fit (one still in a transfer would free nothing).
    fn make_room(&self, needed: u64) {
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while self.in_use.load(Ordering::Relaxed) + needed > self.limit {
            let Some(idle) = kept.iter().position(|k| Arc::strong_count(&k.0) == 1) else {
                break;
            };
            kept.remove(idle);
        }
    }

    /// Opens `name` for reading, in netascii form if asked.
    pub async fn open(&self, name: &str, netascii: bool) -> Result<Shared, Refusal> {
        let rel = normalize(name)?;
        if let Some(g) = self.generated_or_coming(&rel).await {
            if !netascii {
                return Ok(g);
            }
            return Ok(Shared::new(netascii::encode(g.as_ref()), None));
        }
        let (path, meta) = self.resolve(&rel)?;
        self.load(path, meta, netascii).await
    }

    /// Opens the file at `path` (a real path, as `canonicalize` gives)
    /// from the same shared copies, for HTTP's `/assets/`: refused unless
    /// it lies under the root and is a regular file.
    pub async fn open_path(&self, path: &Path) -> Result<Shared, Refusal> {
        let (path, meta) = self.regular_file(path.to_owned())?;
        let shared = self.load(path, meta, false).await?;
        // HTTP hands the bytes over whole.
        shared.complete().await?;
        Ok(shared)
    }

    /// The shared copy of the file at `path` (metadata `meta`), read now
    /// unless a transfer or the kept list holds it.
    async fn load(
        &self,
        path: PathBuf,
        meta: std::fs::Metadata,
        netascii: bool,
    ) -> Result<Shared, Refusal> {
        let key = Key {
            path: path.clone(),
            netascii,
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        let slot = {
            let mut cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() > 256 {
                cache.retain(|_, slot| slot.try_lock().map_or(true, |w| w.strong_count() > 0));
            }
            cache.entry(key).or_default().clone()
        };
        // One reader per file: the others wait here and then share.
        let mut weak = slot.lock().await;
        if let Some(shared) = weak.upgrade() {
            let shared = Shared(shared);
            self.keep(&shared);
            return Ok(shared);
        }
        // Reserve the size on disk, read, then settle to the real size.
        let reserved = meta.len();
        self.make_room(reserved);
        let in_use = self.in_use.fetch_add(reserved, Ordering::Relaxed);
        if in_use + reserved > self.limit {
            self.in_use.fetch_sub(reserved, Ordering::Relaxed);
            return Err(Refusal::MemoryFull {
                needed: reserved,
                in_use,
                limit: self.limit,
            });
        }
        self.disk_reads.fetch_add(1, Ordering::Relaxed);
        let shared = if netascii {
            // Encoding changes the length: the whole file first.
            let read = tokio::task::spawn_blocking(move || std::fs::read(&path))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let bytes = match read {
                Ok(b) => netascii::encode(&b),
                Err(e) => {
                    self.in_use.fetch_sub(reserved, Ordering::Relaxed);
                    return Err(unreadable(e));
                }
            };
            let actual = bytes.len() as u64;
            if actual >= reserved {
                self.in_use.fetch_add(actual - reserved, Ordering::Relaxed);
            } else {
                self.in_use.fetch_sub(reserved - actual, Ordering::Relaxed);
            }
            Shared::new(bytes, Some(self.in_use.clone()))
        } else {
            // Opened here, so that a file that cannot be opened is refused
            // at once; read from then on while it is served.
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    self.in_use.fetch_sub(reserved, Ordering::Relaxed);
                    return Err(unreadable(e));
                }
            };
            Shared::reading(file, reserved as usize, self.in_use.clone())
        };
        *weak = Arc::downgrade(&shared.0);
        self.keep(&shared);
        Ok(shared)
    }

    /// The real path of `rel`, which must stay under the root, with its
    /// metadata (size and time key the shared cache).
    fn resolve(&self, rel: &str) -> Result<(PathBuf, std::fs::Metadata), Refusal> {
        let joined = self.root.join(rel);
        let real = match joined.canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling link pointing outside is still an escape attempt.
                if std::fs::symlink_metadata(&joined).is_ok() {
                    return Err(Refusal::OutsideRoot);
                }
                return Err(Refusal::NotFound);
            }
            Err(e) => return Err(unreadable(e)),
        };
        self.regular_file(real)
    }

    /// `real` (a real path) with its metadata, if it is a regular file
    /// under the root.
    fn regular_file(&self, real: PathBuf) -> Result<(PathBuf, std::fs::Metadata), Refusal> {
        if !real.starts_with(&self.root) {
            return Err(Refusal::OutsideRoot);
        }
        match std::fs::metadata(&real) {
            Ok(m) if m.is_file() => Ok((real, m)),
            Ok(_) => Err(Refusal::NotAFile),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Refusal::NotFound),
            Err(e) => Err(unreadable(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_mapped_into_the_root() {
        assert_eq!(normalize("pxelinux.0").unwrap(), "pxelinux.0");
        assert_eq!(
            normalize("/pxelinux.cfg/default").unwrap(),
            "pxelinux.cfg/default"
        );
        assert_eq!(normalize("\\boot\\\\x.efi").unwrap(), "boot/x.efi");
        assert_eq!(normalize("./a/./b").unwrap(), "a/b");
    }

    #[test]
    fn hostile_names_are_refused() {
        assert_eq!(normalize("../etc/passwd"), Err(Refusal::Traversal));
        assert_eq!(normalize("a/../../b"), Err(Refusal::Traversal));
        assert_eq!(normalize("..\\x"), Err(Refusal::Traversal));
        assert_eq!(normalize("a\u{1}b"), Err(Refusal::BadCharacters));
        assert_eq!(normalize("caf\u{e9}"), Err(Refusal::BadCharacters));
        assert_eq!(normalize("a\u{fffd}"), Err(Refusal::BadCharacters));
        assert_eq!(normalize(&"a".repeat(600)), Err(Refusal::TooLong));
        assert_eq!(normalize("/"), Err(Refusal::Empty));
    }

    #[tokio::test]
    async fn symlinks_out_of_the_root_are_refused_and_files_are_shared() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::fs::write(root.join("sub/file"), "hello\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink("sub/file", root.join("inside")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", root.join("dangling")).unwrap();
        let files = Files::new(&root, 1 << 20).unwrap();
        assert_eq!(
            files.open("escape", false).await.unwrap_err(),
            Refusal::OutsideRoot
        );
        assert_eq!(
            files.open("dangling", false).await.unwrap_err(),
            Refusal::OutsideRoot
        );
        assert_eq!(
            files.open("sub", false).await.unwrap_err(),
            Refusal::NotAFile
        );
        assert_eq!(
            files.open("nope", false).await.unwrap_err(),
            Refusal::NotFound
        );
        let a = files.open("/sub/file", false).await.unwrap();
        let b = files.open("inside", false).await.unwrap();
        assert!(a.same_as(&b), "one read, shared");
        assert_eq!(files.bytes_in_use(), 6);
        let n = files.open("sub/file", true).await.unwrap();
        assert_eq!(n.as_ref(), b"hello\r\n");
        drop((a, b, n));
        assert_eq!(files.bytes_in_use(), 6 + 7, "both forms kept");
        let again = files.open("inside", false).await.unwrap();
        assert_eq!(again.as_ref(), b"hello\n");
        assert_eq!(files.disk_reads(), 2, "kept files are not read again");
    }

    #[tokio::test]
    async fn a_real_path_shares_the_copy_a_name_opened_and_stays_in_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("os")).unwrap();
        std::fs::write(root.join("os/initrd"), vec![5u8; 1000]).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        let files = Files::new(&root, 1 << 20).unwrap();
        let by_name = files.open("os/initrd", false).await.unwrap();
        let real = files.root().join("os/initrd");
        let by_path = files.open_path(&real).await.unwrap();
        assert!(by_path.same_as(&by_name));
        assert_eq!(files.disk_reads(), 1);
        let outside = dir.path().canonicalize().unwrap().join("secret");
        assert_eq!(
            files.open_path(&outside).await.unwrap_err(),
            Refusal::OutsideRoot
        );
        assert_eq!(
            files.open_path(&files.root().join("os")).await.unwrap_err(),
            Refusal::NotAFile
        );
        assert_eq!(
            files
                .open_path(&files.root().join("none"))
                .await
                .unwrap_err(),
            Refusal::NotFound
        );
    }

    #[tokio::test]
    async fn the_memory_bound_refuses_new_files_not_shared_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 600]).unwrap();
        std::fs::write(dir.path().join("b"), vec![0u8; 600]).unwrap();
        let files = Files::new(dir.path(), 1000).unwrap();
        let a = files.open("a", false).await.unwrap();
        a.complete().await.unwrap();
        let again = files.open("a", false).await.unwrap();
        assert!(matches!(
            files.open("b", false).await,
            Err(Refusal::MemoryFull { needed: 600, .. })
        ));
        drop((a, again));
        assert_eq!(files.bytes_in_use(), 600, "a is kept");
        let b = files.open("b", false).await.unwrap();
        assert_eq!(files.bytes_in_use(), 600, "kept a made room for b");
        drop(b);
        for _ in 0..2 * KEEP {
            std::fs::write(dir.path().join("tiny"), b"x").unwrap();
            files.open("tiny", false).await.unwrap();
        }
        assert!(files.kept.lock().unwrap().len() <= KEEP);
    }

    #[tokio::test]
    async fn a_file_is_served_as_it_is_read_and_a_shrunk_one_fails_past_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..3 * READ_CHUNK + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("big"), &body).unwrap();
        let accounted = Arc::new(AtomicU64::new(0));
        let file = std::fs::File::open(dir.path().join("big")).unwrap();
        let shared = Shared::reading(file, body.len(), accounted.clone());
        assert_eq!(shared.len(), body.len(), "the whole length from the start");
        shared.ready(READ_CHUNK).await.unwrap();
        assert!(shared.as_ref().len() >= READ_CHUNK);
        assert_eq!(shared.as_ref(), &body[..shared.as_ref().len()]);
        shared.complete().await.unwrap();
        assert_eq!(shared.as_ref(), &body[..]);
        // A file shorter than its size when it was opened (it shrank):
        // what was there is served, past it the read's error.
        let file = std::fs::File::open(dir.path().join("big")).unwrap();
        let short = Shared::reading(file, body.len() + 5, accounted);
        short.ready(body.len()).await.unwrap();
        let err = short.complete().await.unwrap_err();
        assert_eq!(err.kind(), "unreadable");
        assert!(
            crate::error_chain(&err).contains("ended after"),
            "{}",
            crate::error_chain(&err)
        );
    }

    #[tokio::test]
    async fn generated_files_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path(), 1000).unwrap();
        files.set_generated([("pxelinux.cfg/default".to_owned(), b"DEFAULT x\n".to_vec())]);
        let f = files.open("/pxelinux.cfg/default", false).await.unwrap();
        assert_eq!(f.as_ref(), b"DEFAULT x\n");
    }

    #[tokio::test]
    async fn a_generated_file_on_its_way_is_waited_for_and_a_settled_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let files = Arc::new(Files::new(dir.path(), 1000).unwrap());
        let name = "pxelinux.cfg/01-52-54-00-00-00-01".to_owned();
        files.coming([name.clone()]);
        let f = files.clone();
        let maker = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            f.set_generated([(
                "pxelinux.cfg/01-52-54-00-00-00-01".to_owned(),
                b"LABEL x\n".to_vec(),
            )]);
            f.settled(&["pxelinux.cfg/01-52-54-00-00-00-01".to_owned()]);
        });
        let t = std::time::Instant::now();
        let got = files.open(&name, false).await.unwrap();
        assert_eq!(got.as_ref(), b"LABEL x\n");
        assert!(
            t.elapsed() >= std::time::Duration::from_millis(150),
            "it waited for the file"
        );
        maker.await.unwrap();
        // Settled without being made (a refused enrolment): not found at
        // once, without the 3 s wait.
        let other = "pxelinux.cfg/01-52-54-00-00-00-02".to_owned();
        files.coming([other.clone()]);
        files.settled(std::slice::from_ref(&other));
        let t = std::time::Instant::now();
        assert!(matches!(
            files.open(&other, false).await,
            Err(Refusal::NotFound)
        ));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }
}
