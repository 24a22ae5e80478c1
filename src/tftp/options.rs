//! Option negotiation (RFC 2347): blksize (RFC 2348), timeout and tsize
//! (RFC 2349), windowsize (RFC 7440). Pure: requested options and limits in,
//! the values to use and the OACK to send out.

use std::time::Duration;

use super::packet::Options;

/// RFC 1350's block size, used when the client asks for nothing else.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// RFC 2348's largest block size.
pub const MAX_BLKSIZE: u16 = 65464;

/// What the server allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest block that fits the path MTU to this client.
    pub max_blksize: u16,
    /// The largest window the server will send without an ACK.
    pub max_windowsize: u16,
    /// The most bytes one window may carry. A window is sent as one burst,
    /// and a burst larger than the client's socket buffer is lost in part
    /// (atftp asking for 64 blocks of 8 KiB with 192 KiB allowed loses most
    /// of each window on loopback); RFC 7440 lets the server grant a
    /// smaller window.
    pub max_window_bytes: u32,
    /// Retransmission timeout when the client does not set one.
    pub default_timeout: Duration,
}

/// The values a transfer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    pub timeout: Duration,
}

/// Negotiates `requested` for a file of `size` bytes. Returns the values and
/// the options to acknowledge (empty: send no OACK). Unknown options,
/// malformed values and repeats are ignored, as RFC 2347 asks.
pub fn negotiate(requested: &Options, size: u64, limits: &Limits) -> (Negotiated, Options) {
    // First occurrence of each option we know, with a valid value.
    let mut seen: Vec<(String, u64)> = Vec::new();
    for (name, value) in requested {
        let name = name.to_ascii_lowercase();
        let Ok(v) = value.trim().parse::<u64>() else {
            continue;
        };
        let valid = match name.as_str() {
            "blksize" => (8..=u64::from(MAX_BLKSIZE)).contains(&v),
            "windowsize" => (1..=65535).contains(&v),
            "timeout" => (1..=255).contains(&v),
            "tsize" => true,
            _ => false,
        };
        if valid && !seen.iter().any(|(k, _)| *k == name) {
            seen.push((name, v));
        }
    }
    let get = |k: &str| seen.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    let blksize = get("blksize").map_or(DEFAULT_BLKSIZE, |v| (v as u16).min(limits.max_blksize));
    let by_bytes = (limits.max_window_bytes / u32::from(blksize)).clamp(1, 65535) as u16;
    let windowsize = get("windowsize").map_or(1, |v| {
        (v as u16).min(limits.max_windowsize).min(by_bytes).max(1)
    });
    let timeout = get("timeout").map_or(limits.default_timeout, Duration::from_secs);
    let mut ack = Options::new();
    for (name, v) in &seen {
        let value = match name.as_str() {
            "blksize" => blksize.to_string(),
            "windowsize" => windowsize.to_string(),
            "timeout" => v.to_string(),
            // An empty file's size goes unacknowledged: curl rejects an OACK
            // with tsize 0 as invalid, and a client that gets no tsize
            // learns the size from the single empty block anyway.
            _ if size == 0 => continue,
            _ => size.to_string(),
        };
        ack.push((name.clone(), value));
    }
    (
        Negotiated {
            blksize,
            windowsize,
            timeout,
        },
        ack,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_blksize: 1468,
        max_windowsize: 64,
        max_window_bytes: 128 * 1024,
        default_timeout: Duration::from_secs(1),
    };

    fn opts(pairs: &[(&str, &str)]) -> Options {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_options_means_rfc_1350_and_no_oack() {
        let (n, ack) = negotiate(&vec![], 10, &LIMITS);
        assert_eq!(
            n,
            Negotiated {
                blksize: 512,
                windowsize: 1,
                timeout: Duration::from_secs(1)
            }
        );
        assert!(ack.is_empty());
    }

    #[test]
    fn values_are_capped_and_echoed() {
        let (n, ack) = negotiate(
            &opts(&[
                ("BLKSIZE", "65464"),
                ("windowsize", "128"),
                ("tsize", "0"),
                ("timeout", "3"),
            ]),
            1234,
            &LIMITS,
        );
        assert_eq!(
            n,
            Negotiated {
                blksize: 1468,
                windowsize: 64,
                timeout: Duration::from_secs(3)
            }
        );
        assert_eq!(
            ack,
            opts(&[
                ("blksize", "1468"),
                ("windowsize", "64"),
                ("tsize", "1234"),
                ("timeout", "3")
            ])
        );
    }

    #[test]
    fn the_window_is_capped_in_bytes_whatever_order_the_options_come_in() {
        let big = Limits {
            max_blksize: 65464,
            ..LIMITS
        };
        let (n, _) = negotiate(&opts(&[("windowsize", "64"), ("blksize", "8192")]), 1, &big);
        assert_eq!((n.blksize, n.windowsize), (8192, 16));
        let (n, _) = negotiate(
            &opts(&[("blksize", "65464"), ("windowsize", "64")]),
            1,
            &big,
        );
        assert_eq!((n.blksize, n.windowsize), (65464, 2));
    }

    #[test]
    fn an_empty_file_gets_no_tsize() {
        let (_, ack) = negotiate(&opts(&[("tsize", "0")]), 0, &LIMITS);
        assert!(ack.is_empty());
    }

    #[test]
    fn bad_unknown_and_repeated_options_are_ignored() {
        let (n, ack) = negotiate(
            &opts(&[
                ("blksize", "4"),
                ("timeout", "0"),
                ("windowsize", "x"),
                ("multicast", ""),
                ("tsize", "0"),
                ("tsize", "0"),
            ]),
            7,
            &LIMITS,
        );
        assert_eq!(n.blksize, 512);
        assert_eq!(ack, opts(&[("tsize", "7")]));
    }
}
