//! netascii (RFC 764 as used by RFC 1350): LF becomes CR LF, a bare CR
//! becomes CR NUL.

/// `data` in netascii form.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let extra = data.iter().filter(|b| **b == b'\n' || **b == b'\r').count();
    let mut out = Vec::with_capacity(data.len() + extra);
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_ends_and_bare_cr() {
        assert_eq!(super::encode(b"a\nb\rc"), b"a\r\nb\r\0c");
        assert_eq!(super::encode(b""), b"");
    }
}
