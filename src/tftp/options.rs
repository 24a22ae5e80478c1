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
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: limits.default_timeout,
    };
    let mut ack: Options = Vec::new();
    for (name, value) in requested {
        let name = name.to_ascii_lowercase();
        if ack.iter().any(|(k, _)| *k == name) {
            continue;
        }
        let num = value.trim().parse::<u64>().ok();
        match (name.as_str(), num) {
            ("blksize", Some(v)) if (8..=u64::from(MAX_BLKSIZE)).contains(&v) => {
                n.blksize = (v as u16).min(limits.max_blksize);
                ack.push((name, n.blksize.to_string()));
            }
            ("windowsize", Some(v)) if (1..=65535).contains(&v) => {
                n.windowsize = (v as u16).min(limits.max_windowsize.max(1));
                ack.push((name, n.windowsize.to_string()));
            }
            ("timeout", Some(v)) if (1..=255).contains(&v) => {
                n.timeout = Duration::from_secs(v);
                ack.push((name, v.to_string()));
            }
            ("tsize", Some(_)) => ack.push((name, size.to_string())),
            _ => {}
        }
    }
    (n, ack)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_blksize: 1468,
        max_windowsize: 64,
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
