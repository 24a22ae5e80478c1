use std::collections::HashMap;

use dhcproto::v4::relay::{RelayAgentInformation, RelayInfo};
use dhcproto::v4::{DhcpOption, MessageType};

use super::*;
use crate::dhcp::policy::tests::{MAC, cfg, msg};
use crate::dhcp::pool::Pool;
use crate::spec::Mac;

const NODE1: [u8; 6] = [0x52, 0x54, 0, 0xbf, 0, 1];
const NODE2: [u8; 6] = [0x52, 0x54, 0, 0xbf, 0, 2];

/// `br0` 10.0.0.0/24 (direct; NODE1 at .10) and `rack2` 10.1.0.0/24
/// (relayed; NODE2 at .10), each with a pool of its own.
fn site() -> Site {
    let a = cfg();
    let mut b = cfg();
    b.segment = "rack2".into();
    b.subnet = "10.1.0.0/24".parse().unwrap();
    b.gateway = Some(Ipv4Addr::new(10, 1, 0, 1));
    b.pool = Pool {
        first: Ipv4Addr::new(10, 1, 0, 100),
        last: Ipv4Addr::new(10, 1, 0, 110),
        reservations: HashMap::from([(Mac(NODE2), Ipv4Addr::new(10, 1, 0, 10))]),
        excluded: [Ipv4Addr::new(10, 1, 0, 10)].into_iter().collect(),
    };
    Site {
        home: HashMap::from([(Mac(NODE1), 0), (Mac(NODE2), 1)]),
        keep_expired_secs: a.keep_expired_secs,
        segments: vec![a, b],
    }
}

fn relayed(mac: [u8; 6], giaddr: [u8; 4], opts: Vec<DhcpOption>) -> Message {
    let mut m = msg(MessageType::Discover, mac, opts);
    m.set_giaddr(Ipv4Addr::from(giaddr));
    m
}

fn link_selection(ip: [u8; 4]) -> DhcpOption {
    let mut info = RelayAgentInformation::default();
    info.insert(RelayInfo::LinkSelection(Ipv4Addr::from(ip)));
    DhcpOption::RelayAgentInformation(info)
}

fn offered(d: &Decision) -> Option<Ipv4Addr> {
    d.reply.as_ref().map(|(m, _)| m.yiaddr())
}

#[test]
fn a_broadcast_is_for_the_segment_it_arrived_on_and_a_relayed_request_for_its_giaddrs() {
    let s = site();
    let t = Table::default();
    let (d, sel) = decide_site(&msg(MessageType::Discover, MAC, vec![]), &s, Some(0), &t, 0);
    assert_eq!(sel, Selected::Segment(0));
    assert_eq!(offered(&d), Some(Ipv4Addr::new(10, 0, 0, 100)));
    let (d, sel) = decide_site(&relayed(MAC, [10, 1, 0, 1], vec![]), &s, Some(0), &t, 0);
    assert_eq!(sel, Selected::Segment(1), "giaddr, not the socket");
    assert_eq!(offered(&d), Some(Ipv4Addr::new(10, 1, 0, 100)));
    let (reply, dest) = d.reply.unwrap();
    assert_eq!(
        dest,
        crate::dhcp::policy::Dest::Relay(Ipv4Addr::new(10, 1, 0, 1))
    );
    assert_eq!(
        reply.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 1, 0, 1)])),
        "the segment's own gateway"
    );
    // A broadcast on a socket of no segment, and a relay from nowhere.
    let (d, sel) = decide_site(&msg(MessageType::Discover, MAC, vec![]), &s, None, &t, 0);
    assert_eq!((sel, d.reply.is_none()), (Selected::Nowhere, true));
    let (d, sel) = decide_site(&relayed(MAC, [192, 168, 5, 1], vec![]), &s, Some(0), &t, 0);
    assert_eq!(sel, Selected::Unserved(Ipv4Addr::new(192, 168, 5, 1)));
    assert_eq!(d.outcome, Outcome::RelayFromUnservedSubnet);
}

#[test]
fn link_selection_and_option_118_name_the_subnet_when_giaddr_cannot() {
    let s = site();
    let t = Table::default();
    // The relay's own address is on the server's segment; the client's
    // link is rack2 (RFC 3527).
    let req = relayed(MAC, [10, 0, 0, 254], vec![link_selection([10, 1, 0, 0])]);
    let (d, sel) = decide_site(&req, &s, Some(0), &t, 0);
    assert_eq!(sel, Selected::Segment(1));
    assert_eq!(offered(&d), Some(Ipv4Addr::new(10, 1, 0, 100)));
    // Option 82 is echoed to the relay (RFC 3046).
    let (reply, _) = d.reply.unwrap();
    assert_eq!(
        reply.opts().get(OptionCode::RelayAgentInformation),
        Some(&link_selection([10, 1, 0, 0]))
    );
    // Option 118 (RFC 3011).
    let req = relayed(
        MAC,
        [10, 0, 0, 254],
        vec![DhcpOption::SubnetSelection(Ipv4Addr::new(10, 1, 0, 0))],
    );
    assert_eq!(
        decide_site(&req, &s, Some(0), &t, 0).1,
        Selected::Segment(1)
    );
    // Link selection wins over option 118.
    let req = relayed(
        MAC,
        [10, 1, 0, 1],
        vec![
            link_selection([10, 0, 0, 0]),
            DhcpOption::SubnetSelection(Ipv4Addr::new(10, 1, 0, 0)),
        ],
    );
    assert_eq!(
        decide_site(&req, &s, Some(0), &t, 0).1,
        Selected::Segment(0)
    );
    // Neither counts without a relay: a broadcast is its socket's.
    let mut direct = msg(
        MessageType::Discover,
        MAC,
        vec![DhcpOption::SubnetSelection(Ipv4Addr::new(10, 1, 0, 0))],
    );
    direct.set_giaddr(Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        decide_site(&direct, &s, Some(0), &t, 0).1,
        Selected::Segment(0)
    );
}

#[test]
fn a_node_gets_its_reservation_only_on_its_own_segment() {
    let s = site();
    let t = Table::default();
    let (d, _) = decide_site(&relayed(NODE2, [10, 1, 0, 1], vec![]), &s, Some(0), &t, 0);
    assert_eq!(offered(&d), Some(Ipv4Addr::new(10, 1, 0, 10)));
    // NODE2 plugged into br0, and NODE1 relayed from rack2: nothing.
    for (mac, req, arrived) in [
        (NODE2, msg(MessageType::Discover, NODE2, vec![]), Some(0)),
        (NODE1, relayed(NODE1, [10, 1, 0, 1], vec![]), Some(0)),
    ] {
        let (d, _) = decide_site(&req, &s, arrived, &t, 0);
        assert_eq!(d.outcome, Outcome::WrongSegment, "{mac:?}");
        assert!(d.reply.is_none() && d.change.is_none());
    }
    // A REQUEST too; a RELEASE is still taken.
    let mut req = msg(
        MessageType::Request,
        NODE1,
        vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 10))],
    );
    req.set_giaddr(Ipv4Addr::new(10, 1, 0, 1));
    assert_eq!(
        decide_site(&req, &s, Some(0), &t, 0).0.outcome,
        Outcome::WrongSegment
    );
    let mut rel = msg(MessageType::Release, NODE1, vec![]);
    rel.set_giaddr(Ipv4Addr::new(10, 1, 0, 1));
    assert_eq!(
        decide_site(&rel, &s, Some(0), &t, 0).0.outcome,
        Outcome::Release
    );
    assert!(s.reserved(Mac(NODE2), Ipv4Addr::new(10, 1, 0, 10)));
    assert!(!s.reserved(Mac(NODE2), Ipv4Addr::new(10, 0, 0, 10)));
}

#[test]
fn each_segment_fills_its_own_pool_and_the_search_hints_do_not_mix() {
    let s = site();
    let mut t = Table::default();
    let mut got = Vec::new();
    for n in 0..6u8 {
        let mac = [2, 0, 0, 0, 0, n];
        let (req, arrived) = if n % 2 == 0 {
            (msg(MessageType::Discover, mac, vec![]), Some(0))
        } else {
            (relayed(mac, [10, 1, 0, 1], vec![]), Some(0))
        };
        let (d, _) = decide_site(&req, &s, arrived, &t, 0);
        let ip = offered(&d).unwrap();
        t.insert(crate::dhcp::pool::Lease {
            ip,
            mac: Mac(mac),
            expires: 100,
        });
        got.push(ip);
    }
    assert_eq!(
        got,
        [
            [10, 0, 0, 100],
            [10, 1, 0, 100],
            [10, 0, 0, 101],
            [10, 1, 0, 101],
            [10, 0, 0, 102],
            [10, 1, 0, 102]
        ]
        .map(Ipv4Addr::from)
    );
}

#[test]
fn a_proxy_answers_a_relayed_pxe_client_for_its_segment_through_the_relay() {
    let mut s = site();
    for seg in &mut s.segments {
        seg.mode = crate::spec::DhcpMode::Proxy;
    }
    s.segments[1].server = Ipv4Addr::new(10, 0, 0, 9);
    s.segments[1].boot.http_base = "http://10.0.0.9:8080".into();
    let pxe = vec![
        DhcpOption::ClientSystemArchitecture(dhcproto::v4::Architecture(0)),
        DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
    ];
    let (d, sel) = decide_site(
        &relayed(MAC, [10, 1, 0, 1], pxe),
        &s,
        Some(0),
        &Table::default(),
        0,
    );
    assert_eq!(
        (sel, d.outcome),
        (Selected::Segment(1), Outcome::ProxyOffer)
    );
    let (reply, dest) = d.reply.unwrap();
    assert_eq!(
        dest,
        crate::dhcp::policy::Dest::Relay(Ipv4Addr::new(10, 1, 0, 1))
    );
    assert_eq!(
        reply.yiaddr(),
        Ipv4Addr::UNSPECIFIED,
        "a proxy gives no address"
    );
    assert_eq!(
        reply.siaddr(),
        Ipv4Addr::new(10, 0, 0, 9),
        "rack2's server address"
    );
}
