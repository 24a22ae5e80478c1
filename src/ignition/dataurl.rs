//! RFC 2397 data URLs, as Ignition reads file contents inline:
//! `data:,` followed by the bytes, percent-encoded.

/// `data:,` and `bytes`, every byte but unreserved ones percent-encoded.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(6 + bytes.len() * 2);
    out.push_str("data:,");
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The bytes of a `data:` URL: percent-encoded (`data:,...`) or base64
/// (`data:;base64,...`); `None` if it is not one.
pub fn decode(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let raw = percent_decode(data)?;
    if meta.ends_with(";base64") {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(&raw).ok()
    } else {
        Some(raw)
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}
