//! Decoding a DHCP datagram without ever panicking.
//!
//! dhcproto decodes well-formed messages, but some malformed options trip
//! `debug_assert!`s and length arithmetic inside it (found by this module's
//! tests: option 152 with a length other than 4, hlen over 16). A hostile packet must be
//! dropped and counted, never crash the server, so decoding runs behind a
//! structural pre-check and `catch_unwind`.

use dhcproto::v4::Message;
use dhcproto::{Decodable, Decoder};

/// Why a datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0} bytes is shorter than a DHCP message")]
    TooShort(usize),
    #[error("no DHCP magic cookie")]
    NoCookie,
    #[error("hardware address length {0} is over 16")]
    BadHlen(u8),
    #[error("option {code} runs past the end of the message")]
    Truncated { code: u8 },
    #[error("malformed: {0}")]
    Malformed(String),
}

/// The fixed BOOTP header plus the magic cookie.
const HEADER: usize = 236 + 4;
const COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Decodes one datagram.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() < HEADER {
        return Err(WireError::TooShort(bytes.len()));
    }
    if bytes[236..240] != COOKIE {
        return Err(WireError::NoCookie);
    }
    // dhcproto slices chaddr by hlen: more than 16 would panic later.
    if bytes[2] > 16 {
        return Err(WireError::BadHlen(bytes[2]));
    }
    // Every option must fit in the message.
    let mut i = HEADER;
    while i < bytes.len() {
        match bytes[i] {
            0 => i += 1,
            255 => break,
            code => {
                let Some(&len) = bytes.get(i + 1) else {
                    return Err(WireError::Truncated { code });
                };
                i += 2 + usize::from(len);
                if i > bytes.len() {
                    return Err(WireError::Truncated { code });
                }
            }
        }
    }
    let owned = bytes.to_vec();
    match std::panic::catch_unwind(move || Message::decode(&mut Decoder::new(&owned))) {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(WireError::Malformed(e.to_string())),
        Err(_) => Err(WireError::Malformed(
            "the decoder gave up on an option".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cookieless_and_truncated_datagrams_are_errors() {
        assert_eq!(decode(&[0; 10]), Err(WireError::TooShort(10)));
        assert_eq!(decode(&[0; 300]), Err(WireError::NoCookie));
        let mut b = vec![0u8; 240];
        b[236..240].copy_from_slice(&COOKIE);
        b.extend_from_slice(&[53, 5, 1]);
        assert_eq!(decode(&b), Err(WireError::Truncated { code: 53 }));
    }

    #[test]
    fn an_option_that_trips_the_decoder_is_an_error_not_a_panic() {
        let mut b = vec![0u8; 240];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[236..240].copy_from_slice(&COOKIE);
        b.extend_from_slice(&[53, 1, 1, 152, 2, 0, 0, 255]);
        assert!(decode(&b).is_err());
        b[2] = 200;
        assert_eq!(decode(&b).unwrap_err(), WireError::BadHlen(200));
    }
}
