//! Node tokens: an HMAC of the node's identity under the site key, which
//! the store keeps, so tokens are stable across restarts and renders but
//! cannot be guessed from the spec.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::spec::Mac;

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
}
