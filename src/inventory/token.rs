//! Node tokens: an HMAC of the node's identity under a site key that lives
//! in the state directory, so tokens are stable across restarts and renders
//! but cannot be guessed from the spec.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::InventoryError;
use crate::spec::Mac;

/// File name of the site key inside the state directory.
pub const KEY_FILE: &str = "site.key";

/// The secret every node token is derived from.
#[derive(Clone)]
pub struct SiteKey([u8; 32]);

impl std::fmt::Debug for SiteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteKey(..)")
    }
}

impl SiteKey {
    /// A key from known bytes (tests and benchmarks).
    pub fn from_bytes(bytes: [u8; 32]) -> SiteKey {
        SiteKey(bytes)
    }

    /// The key's bytes, to store.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A fresh random key.
    pub fn generate() -> SiteKey {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        SiteKey(bytes)
    }

    /// Reads the key in `state_dir`, or `None` if there is none yet.
    pub fn load(state_dir: &Path) -> Result<Option<SiteKey>, InventoryError> {
        let path = state_dir.join(KEY_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(InventoryError::StateIo { path, source }),
        };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| InventoryError::KeyDamaged(path))?;
        Ok(Some(SiteKey(bytes)))
    }

    /// Writes the key to `state_dir` (created if missing), mode 0600, never
    /// replacing an existing key.
    pub fn save(&self, state_dir: &Path) -> Result<PathBuf, InventoryError> {
        let path = state_dir.join(KEY_FILE);
        let io = |source| InventoryError::StateIo {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        file.write_all(format!("{}\n", hex::encode(self.0)).as_bytes())
            .map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(path)
    }

    /// The key that `bootfleet power` and `reprovision` present to report
    /// power actions (`POST /api/v1/nodes/<name>/power`): HMAC-SHA256(key,
    /// "bootfleet-api-v1"), in hex. Every server of a site derives the same.
    pub fn api_key(&self) -> String {
        let mut h = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        h.update(b"bootfleet-api-v1");
        hex::encode(h.finalize().into_bytes())
    }

    /// The token of the node `name` with `mac`: 128 bits of
    /// HMAC-SHA256(key, "bootfleet-node-v1" NUL name NUL mac), in hex.
    pub fn token(&self, name: &str, mac: Mac) -> String {
        let mut h = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        h.update(b"bootfleet-node-v1\0");
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(&mac.0);
        hex::encode(&h.finalize().into_bytes()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_by_node_and_key() {
        let k1 = SiteKey::from_bytes([1; 32]);
        let k2 = SiteKey::from_bytes([2; 32]);
        let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
        let other: Mac = "52:54:00:00:00:02".parse().unwrap();
        let t = k1.token("a", mac);
        assert_eq!(t.len(), 32);
        assert_eq!(t, k1.token("a", mac));
        assert_ne!(t, k1.token("b", mac));
        assert_ne!(t, k1.token("a", other));
        assert_ne!(t, k2.token("a", mac));
        assert_eq!(k1.api_key().len(), 64);
        assert_ne!(k1.api_key(), k2.api_key());
        assert!(!k1.api_key().starts_with(&t), "not a node's token");
    }

    #[test]
    fn save_then_load_round_trips_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(SiteKey::load(dir.path()).unwrap().is_none());
        let key = SiteKey::generate();
        let path = key.save(&dir.path().join("state")).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = SiteKey::load(&dir.path().join("state")).unwrap().unwrap();
        let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
        assert_eq!(back.token("n", mac), key.token("n", mac));
        assert!(
            key.save(&dir.path().join("state")).is_err(),
            "never overwrites a key"
        );
    }

    #[test]
    fn damaged_key_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), "not hex").unwrap();
        assert!(matches!(
            SiteKey::load(dir.path()),
            Err(InventoryError::KeyDamaged(_))
        ));
    }
}
