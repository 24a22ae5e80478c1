//! Ethernet MAC addresses: parsing, printing and the forms PXE tools use.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A 48-bit Ethernet hardware address.
///
/// ```
/// use bootfleet::spec::Mac;
/// let mac: Mac = "52-54-00-AB-CD-01".parse().unwrap();
/// assert_eq!(mac.to_string(), "52:54:00:ab:cd:01");
/// assert_eq!(mac.dashed(), "52-54-00-ab-cd-01"); // pxelinux.cfg/01-<this>
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// Why a MAC address did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MacError {
    /// Not six two-digit hex groups.
    #[error("`{0}` is not a MAC address: write six two-digit hex groups such as 52:54:00:12:34:56")]
    Malformed(String),
}

impl Mac {
    /// `52-54-00-12-34-56`: the form pxelinux uses in `pxelinux.cfg/01-<mac>`.
    pub fn dashed(&self) -> String {
        self.join('-')
    }

    /// `525400123456`: a compact form for names.
    pub fn compact(&self) -> String {
        hex::encode(self.0)
    }

    /// The MAC of node `index` of cluster `cluster` when the spec gives
    /// none: QEMU's locally administered prefix 52:54:00, two bytes of
    /// SHA-256 of the cluster name (so two clusters on one host differ) and
    /// the index. `None` past index 255.
    pub fn derived(cluster: &str, index: usize) -> Option<Mac> {
        use sha2::Digest as _;
        let index = u8::try_from(index).ok()?;
        let h = sha2::Sha256::digest(format!("bootfleet-mac:{cluster}").as_bytes());
        Some(Mac([0x52, 0x54, 0x00, h[0], h[1], index]))
    }

    /// True when the group bit is set (a multicast or broadcast address).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    fn join(&self, sep: char) -> String {
        let mut out = String::with_capacity(17);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(sep);
            }
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

impl FromStr for Mac {
    type Err = MacError;

    /// Accepts `:` or `-` separators, upper or lower case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let bad = || MacError::Malformed(s.to_owned());
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(bad());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    /// `52:54:00:12:34:56`, lower case.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(':'))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_separators_and_prints_forms() {
        let mac: Mac = "52-54-00-AB-cd-01".parse().unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:01");
        assert_eq!(mac.dashed(), "52-54-00-ab-cd-01");
        assert_eq!(mac.compact(), "525400abcd01");
        assert_eq!("52:54:00:ab:cd:01".parse::<Mac>().unwrap(), mac);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:01:02",
            "5:54:00:ab:cd:01",
            "zz:54:00:ab:cd:01",
            "525400abcd01",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn multicast_bit() {
        assert!("01:00:5e:00:00:01".parse::<Mac>().unwrap().is_multicast());
        assert!(!"52:54:00:00:00:01".parse::<Mac>().unwrap().is_multicast());
    }
}
