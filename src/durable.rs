//! Writes that survive a crash: a file replaced by writing a temporary
//! copy, syncing it, renaming it over the old one and syncing the
//! directory (without the last step a crash can lose the rename, leaving
//! the old file or none).

use std::fs;
use std::io::Write as _;
use std::path::Path;

/// Replaces `path` with `bytes`: `.NAME.tmp` beside it, synced, renamed
/// over it, the directory synced.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    rename(&tmp, path)
}

/// Renames `from` to `to` (a file already synced) and syncs the
/// directories the rename changed.
pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::rename(from, to)?;
    fs::File::open(dir(to))?.sync_all()?;
    if dir(from) != dir(to) {
        fs::File::open(dir(from))?.sync_all()?;
    }
    Ok(())
}

/// The directory `p` is in.
fn dir(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_replaced_file_holds_the_new_bytes_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest");
        super::write(&p, b"one").unwrap();
        super::write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
