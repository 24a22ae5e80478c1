//! Checking a release's signed digests. Pure: key text, signature text
//! and file bytes in; a verdict out.
//!
//! A Flatcar release publishes, next to each file `F`, `F.DIGESTS` (MD5,
//! SHA1 and SHA512 sums, `sha512sum` format under `# SHA512 HASH`) and
//! `F.DIGESTS.asc`, an OpenPGP signature by the image signing key: either
//! the digests clear-signed, or a detached signature over `F.DIGESTS`.
//! Both forms are accepted. Only a SHA512 sum is trusted.

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::KeyDetails as _;

use super::ImagesError;

/// The fingerprint of the Flatcar image signing key (primary key), as
/// Flatcar publishes it. A key fetched from the network must have it.
pub const FLATCAR_KEY_FINGERPRINT: &str = "F88CFEDEFF29A5B4D9523864E25D9AED0593B34A";

/// A public key whose self-signatures hold.
pub struct TrustedKey {
    key: SignedPublicKey,
}

impl TrustedKey {
    /// Reads an armored public key; `pin`, when given, is the primary
    /// key's fingerprint it must have (hex, any case, spaces ignored).
    pub fn parse(armored: &str, pin: Option<&str>) -> Result<TrustedKey, ImagesError> {
        let (key, _) = SignedPublicKey::from_string(armored).map_err(ImagesError::KeyUnreadable)?;
        key.verify().map_err(ImagesError::KeySelfSignatures)?;
        let got = hex::encode_upper(key.primary_key.fingerprint().as_bytes());
        if let Some(want) = pin {
            let want: String = want.chars().filter(|c| !c.is_whitespace()).collect();
            if !got.eq_ignore_ascii_case(&want) {
                return Err(ImagesError::KeyNotPinned {
                    got,
                    want: want.to_uppercase(),
                });
            }
        }
        Ok(TrustedKey { key })
    }

    /// The primary key's fingerprint, upper-case hex.
    pub fn fingerprint(&self) -> String {
        hex::encode_upper(self.key.primary_key.fingerprint().as_bytes())
    }

    /// True when `sig` over `data` was made by the primary key or one
    /// of its subkeys (releases are usually signed by a subkey).
    fn made(&self, sig: &Signature, data: &[u8]) -> bool {
        sig.verify(&self.key.primary_key, data).is_ok()
            || self
                .key
                .public_subkeys
                .iter()
                .any(|s| sig.verify(&s.key, data).is_ok())
    }
}

/// The digests text `asc` vouches for: the clear-signed text itself, or
/// `detached_over` (the `.DIGESTS` file) when `asc` is a detached
/// signature. `what` names the file in errors.
pub fn signed_digests(
    key: &TrustedKey,
    asc: &str,
    detached_over: Option<&str>,
    what: &str,
) -> Result<String, ImagesError> {
    let bad = |why: &'static str| ImagesError::BadSignature {
        file: what.to_owned(),
        why,
    };
    let unreadable = |source| ImagesError::SignatureUnreadable {
        file: what.to_owned(),
        source,
    };
    if asc
        .trim_start()
        .starts_with("-----BEGIN PGP SIGNED MESSAGE-----")
    {
        let (msg, _) = CleartextSignedMessage::from_string(asc).map_err(unreadable)?;
        let text = msg.signed_text();
        let ok = msg
            .signatures()
            .iter()
            .any(|sig| key.made(sig, text.as_bytes()));
        return if ok {
            Ok(text.replace("\r\n", "\n"))
        } else {
            Err(bad("no signature by the trusted key"))
        };
    }
    let Some(data) = detached_over else {
        return Err(bad(
            "a detached signature, but no digests file to check it against",
        ));
    };
    let (sig, _) = DetachedSignature::from_string(asc).map_err(unreadable)?;
    if key.made(&sig.signature, data.as_bytes()) {
        Ok(data.to_owned())
    } else {
        Err(bad("no signature by the trusted key"))
    }
}

/// The SHA512 sum the digests give for `file` (matched by its base name).
pub fn sha512_for(digests: &str, file: &str) -> Option<[u8; 64]> {
    let mut in_sha512 = false;
    for line in digests.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('#') {
            in_sha512 = header.trim().eq_ignore_ascii_case("SHA512 HASH");
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(sum), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        let name = name.trim_start_matches('*');
        let base = name.rsplit('/').next().unwrap_or(name);
        let mut out = [0u8; 64];
        let is_sha512 = in_sha512 || sum.len() == 128;
        if is_sha512 && base == file && hex::decode_to_slice(sum, &mut out).is_ok() {
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGESTS: &str = "# MD5 HASH\n0123456789abcdef0123456789abcdef  flatcar_production_pxe.vmlinuz\n# SHA1 HASH\n0123456789abcdef0123456789abcdef01234567  flatcar_production_pxe.vmlinuz\n# SHA512 HASH\n";

    #[test]
    fn only_the_sha512_line_of_the_named_file_counts() {
        let sum = "ab".repeat(64);
        let text = format!(
            "{DIGESTS}{sum}  flatcar_production_pxe.vmlinuz\n{}  other\n",
            "cd".repeat(64)
        );
        assert_eq!(
            sha512_for(&text, "flatcar_production_pxe.vmlinuz"),
            Some([0xab; 64])
        );
        assert_eq!(sha512_for(&text, "other"), Some([0xcd; 64]));
        assert_eq!(sha512_for(DIGESTS, "flatcar_production_pxe.vmlinuz"), None);
        assert_eq!(sha512_for("garbage\n# SHA512 HASH\nzz  f\n", "f"), None);
    }

    #[test]
    fn garbage_is_not_a_key_or_a_signature() {
        assert!(matches!(
            TrustedKey::parse("not a key", None),
            Err(ImagesError::KeyUnreadable(_))
        ));
    }
}
