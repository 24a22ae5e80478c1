//! The API key file: `serve` writes the key that power reports must
//! present (`POST /api/v1/nodes/<name>/power`) to `api.key` in its state
//! directory, mode 0600, so that `bootfleet power` and `reprovision` run
//! by whoever can read the server's state (root, on the boot server's
//! host) can tell it what they did. Every server of a site derives the
//! same key from the site key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file in the state directory.
pub const FILE: &str = "api.key";

/// Writes `key` to `state_dir/api.key` (mode 0600), replacing what is
/// there; the directory is made if missing (a site on etcd keeps nothing
/// else there).
pub fn write(state_dir: &Path, key: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(state_dir)?;
    let path = state_dir.join(FILE);
    let tmp = state_dir.join(format!(".{FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(format!("{key}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The key in the first of `dirs` that holds one, with its path.
pub fn read(dirs: &[PathBuf]) -> Option<(String, PathBuf)> {
    dirs.iter().find_map(|d| {
        let path = d.join(FILE);
        let text = std::fs::read_to_string(&path).ok()?;
        let key = text.trim();
        (key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| (key.to_owned(), path))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_key_is_written_0600_and_found_in_the_first_directory_that_has_one() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let key = "ab".repeat(32);
        let path = write(&b.path().join("made"), &key).unwrap();
        assert!(path.starts_with(b.path().join("made")));
        let path = write(b.path(), &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write(b.path(), &key).unwrap();
        let dirs = [a.path().to_owned(), b.path().to_owned()];
        assert_eq!(read(&dirs), Some((key, path)));
        std::fs::write(a.path().join(FILE), "not a key\n").unwrap();
        assert_eq!(read(&dirs).map(|(_, p)| p), Some(b.path().join(FILE)));
        assert_eq!(read(&[a.path().to_owned()]), None);
    }
}
