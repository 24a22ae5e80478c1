//! Fuzzes what the TFTP server does with a datagram before any file is
//! touched: decode, re-encode round trip, option negotiation, and the
//! name check. Checks, besides "never panics": a decoded packet encodes
//! back to a packet that decodes the same; a normalized name never holds
//! `..`, a leading `/`, a backslash or a control byte.

#![no_main]

use bootfleet::files::normalize;
use bootfleet::tftp::options::{Limits, negotiate};
use bootfleet::tftp::packet::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::decode(data) else {
        return;
    };
    let bytes = p.to_bytes();
    let again = Packet::decode(&bytes).expect("an encoded packet decodes");
    assert_eq!(again.to_bytes(), bytes, "encoding is stable");
    if let Packet::Rrq { filename, options, .. } = &p {
        let size = u64::from(data.len() as u32) << 20;
        let limits = Limits {
            max_blksize: 1468,
            max_windowsize: 64,
            max_window_bytes: 64 * 1024,
            default_timeout: std::time::Duration::from_secs(1),
        };
        let (n, acked) = negotiate(options, size, &limits);
        assert!(acked.len() <= options.len(), "only requested options are acknowledged");
        let _ = n;
        if let Ok(path) = normalize(filename) {
            assert!(!path.split('/').any(|c| c == ".." || c.is_empty()), "{path}");
            assert!(!path.contains('\\') && !path.bytes().any(|b| b < 0x20));
        }
    }
});
