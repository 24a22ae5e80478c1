//! Router advertisements that say "there is no IPv6 router here".
//!
//! iPXE configures IPv6 as well as IPv4 and waits about 16 s for a router
//! advertisement before it goes on; a boot segment without an IPv6 router
//! pays that on every boot and every retry. Answering its router
//! solicitation with an advertisement of router lifetime 0, no prefixes
//! and neither the managed nor the other-configuration flag tells it at
//! once that there is no router, no address to take and no DHCPv6 to ask
//! (RFC 4861 4.2, 6.3.4): nothing is configured, nothing is routed, and the
//! wait ends. This module is the packet format (no I/O); [`server`] answers
//! on the boot interface, and goes quiet when another router advertises.

pub mod server;

/// ICMPv6 message types (RFC 4861 4.1, 4.2).
const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;

/// An ICMPv6 message of interest here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A host asks for routers.
    Solicitation,
    /// A router (or another like us) advertises; lifetime in seconds,
    /// 0 meaning "not a default router".
    Advertisement { router_lifetime: u16 },
}

/// Reads an ICMPv6 message (as a raw ICMPv6 socket returns it: from the
/// type byte on). Anything else, short or malformed, is `None`.
pub fn parse(icmp: &[u8]) -> Option<Message> {
    match (icmp.first()?, icmp.get(1)?) {
        // A solicitation is at least 8 bytes (type, code, checksum, reserved).
        (&ROUTER_SOLICITATION, 0) if icmp.len() >= 8 => Some(Message::Solicitation),
        (&ROUTER_ADVERTISEMENT, 0) if icmp.len() >= 16 => Some(Message::Advertisement {
            router_lifetime: u16::from_be_bytes([icmp[6], icmp[7]]),
        }),
        _ => None,
    }
}

/// The advertisement sent: router lifetime 0, no flags, no reachable or
/// retransmit times, and one option, the sender's link-layer address
/// (RFC 4861 4.6.1) when it is known. The checksum is left 0: the kernel
/// fills it in for raw ICMPv6 sockets.
pub fn advertisement(link_layer: Option<[u8; 6]>) -> Vec<u8> {
    let mut p = vec![
        ROUTER_ADVERTISEMENT,
        0, // code
        0,
        0, // checksum (the kernel's)
        0, // current hop limit: unspecified
        0, // flags: no M, no O
        0,
        0, // router lifetime: not a default router
        0,
        0,
        0,
        0, // reachable time: unspecified
        0,
        0,
        0,
        0, // retransmit timer: unspecified
    ];
    if let Some(mac) = link_layer {
        p.extend_from_slice(&[1, 1]); // source link-layer address, 8 bytes
        p.extend_from_slice(&mac);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertisement_says_no_router_no_flags_no_prefix() {
        let p = advertisement(Some([0x52, 0x54, 0, 1, 2, 3]));
        assert_eq!(p.len(), 24);
        assert_eq!(
            parse(&p),
            Some(Message::Advertisement { router_lifetime: 0 })
        );
        assert_eq!(p[5], 0, "neither managed nor other configuration");
        assert_eq!(&p[16..], &[1, 1, 0x52, 0x54, 0, 1, 2, 3]);
        assert_eq!(advertisement(None).len(), 16);
    }

    #[test]
    fn solicitations_and_advertisements_are_told_apart_and_junk_is_not_read() {
        assert_eq!(
            parse(&[133, 0, 0x12, 0x34, 0, 0, 0, 0]),
            Some(Message::Solicitation)
        );
        let mut ra = advertisement(None);
        ra[6..8].copy_from_slice(&1800u16.to_be_bytes());
        assert_eq!(
            parse(&ra),
            Some(Message::Advertisement {
                router_lifetime: 1800
            })
        );
        assert_eq!(parse(&[133, 0, 0]), None, "short");
        assert_eq!(parse(&[133, 1, 0, 0, 0, 0, 0, 0]), None, "bad code");
        assert_eq!(parse(&[128, 0, 0, 0, 0, 0, 0, 0]), None, "an echo request");
        assert_eq!(parse(&[]), None);
    }
}
