use std::collections::HashMap;

use dhcproto::v4::Architecture;

use super::*;
use crate::spec::BiosLoader;

pub(crate) const MAC: [u8; 6] = [0x52, 0x54, 0, 0xbf, 0, 9];

pub(crate) fn cfg() -> Config {
    let mut reservations = HashMap::new();
    reservations.insert(
        Mac([0x52, 0x54, 0, 0xbf, 0, 1]),
        Ipv4Addr::new(10, 0, 0, 10),
    );
    Config {
        segment: "br0".into(),
        mode: crate::spec::DhcpMode::Full,
        server: Ipv4Addr::new(10, 0, 0, 2),
        subnet: "10.0.0.0/24".parse().unwrap(),
        gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
        dns: vec![Ipv4Addr::new(10, 0, 0, 1)],
        lease_secs: 3600,
        pool: Pool {
            first: Ipv4Addr::new(10, 0, 0, 100),
            last: Ipv4Addr::new(10, 0, 0, 110),
            reservations,
            excluded: [Ipv4Addr::new(10, 0, 0, 10)].into_iter().collect(),
        },
        boot: BootConfig {
            bios_loader: BiosLoader::Pxelinux,
            http_base: "http://10.0.0.2:8080".into(),
        },
        enrol_unknown: true,
        keep_expired_secs: 3 * 12 * 3600,
    }
}

pub(crate) fn msg(kind: MessageType, mac: [u8; 6], opts: Vec<DhcpOption>) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(0x1234, z, z, z, z, &mac);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m
}

pub(crate) fn kind(m: &Message) -> MessageType {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(k)) => *k,
        _ => panic!("no type"),
    }
}

#[test]
fn discover_then_request_binds_a_pool_address_with_network_options() {
    let c = cfg();
    let mut t = Table::default();
    let d = decide(&msg(MessageType::Discover, MAC, vec![]), &c, &t, 1000);
    let (offer, dest) = d.reply.unwrap();
    assert_eq!(
        (kind(&offer), dest, d.outcome),
        (
            MessageType::Offer,
            Dest::Hardware(Ipv4Addr::new(10, 0, 0, 100), Mac(MAC)),
            Outcome::Offer
        )
    );
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!(offer.xid(), 0x1234);
    assert!(
        matches!(offer.opts().get(OptionCode::Router), Some(DhcpOption::Router(r)) if r == &vec![Ipv4Addr::new(10, 0, 0, 1)])
    );
    assert!(
        offer.opts().get(OptionCode::BootfileName).is_none(),
        "not booting: no boot file"
    );
    let Some(Change::Offer(hold)) = d.change else {
        panic!()
    };
    t.insert(hold);
    let req = msg(
        MessageType::Request,
        MAC,
        vec![
            DhcpOption::RequestedIpAddress(offer.yiaddr()),
            DhcpOption::ServerIdentifier(c.server),
        ],
    );
    let d = decide(&req, &c, &t, 1001);
    let (ack, _) = d.reply.unwrap();
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(
        d.change,
        Some(Change::Bind(Lease {
            ip: offer.yiaddr(),
            mac: Mac(MAC),
            expires: 1001 + 3600
        }))
    );
}

#[test]
fn a_second_client_is_not_offered_a_held_address() {
    let c = cfg();
    let mut t = Table::default();
    let d = decide(&msg(MessageType::Discover, MAC, vec![]), &c, &t, 0);
    let Some(Change::Offer(hold)) = d.change else {
        panic!()
    };
    t.insert(hold);
    let other = decide(
        &msg(MessageType::Discover, [2, 0, 0, 0, 0, 7], vec![]),
        &c,
        &t,
        1,
    );
    assert_eq!(
        other.reply.unwrap().0.yiaddr(),
        Ipv4Addr::new(10, 0, 0, 101)
    );
}

#[test]
fn reservations_and_pxe_boot_options() {
    let c = cfg();
    let opts = vec![
        DhcpOption::ClientSystemArchitecture(Architecture(0)),
        DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
        DhcpOption::ClientMachineIdentifier(vec![0; 17]),
    ];
    let d = decide(
        &msg(MessageType::Discover, [0x52, 0x54, 0, 0xbf, 0, 1], opts),
        &c,
        &Table::default(),
        0,
    );
    let (offer, _) = d.reply.unwrap();
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 0, 10));
    assert_eq!(offer.siaddr(), c.server);
    assert_eq!(offer.fname_str().unwrap().unwrap(), "pxelinux.0");
    assert!(
        matches!(offer.opts().get(OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(v)) if v == b"PXEClient")
    );
    assert!(
        matches!(offer.opts().get(OptionCode::VendorExtensions), Some(DhcpOption::VendorExtensions(v)) if v == &vec![6, 1, 8, 255])
    );
    assert!(
        offer
            .opts()
            .get(OptionCode::ClientMachineIdentifier)
            .is_some(),
        "option 97 echoed"
    );
    assert!(d.change.is_none(), "a reservation needs no hold");
}

#[test]
fn ipxe_gets_option_175_and_the_script() {
    let opts = vec![
        DhcpOption::ClientSystemArchitecture(Architecture(7)),
        DhcpOption::UserClass(b"iPXE".to_vec()),
    ];
    let d = decide(
        &msg(MessageType::Discover, MAC, opts),
        &cfg(),
        &Table::default(),
        0,
    );
    let (offer, _) = d.reply.unwrap();
    assert_eq!(
        offer.fname_str().unwrap().unwrap(),
        "http://10.0.0.2:8080/boot.ipxe"
    );
    assert!(
        matches!(offer.opts().get(OptionCode::Unknown(175)), Some(DhcpOption::Unknown(u)) if u.data() == [176, 1, 1])
    );
}

#[test]
fn a_request_for_someone_elses_address_is_naked_by_broadcast() {
    let c = cfg();
    let req = msg(
        MessageType::Request,
        MAC,
        vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 10))],
    );
    let d = decide(&req, &c, &Table::default(), 0);
    let (nak, dest) = d.reply.unwrap();
    assert_eq!(
        (kind(&nak), dest, d.outcome),
        (MessageType::Nak, Dest::Broadcast, Outcome::Nak)
    );
    assert!(nak.yiaddr().is_unspecified() && nak.ciaddr().is_unspecified());
}

#[test]
fn a_relayed_nak_goes_to_the_relay_with_option_82() {
    let c = cfg();
    let relay = DhcpOption::RelayAgentInformation(Default::default());
    let mut req = msg(
        MessageType::Request,
        MAC,
        vec![
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 10)),
            relay,
        ],
    );
    req.set_giaddr(Ipv4Addr::new(10, 0, 0, 1));
    req.set_ciaddr(Ipv4Addr::new(10, 0, 0, 55));
    let (nak, dest) = decide(&req, &c, &Table::default(), 0).reply.unwrap();
    assert_eq!(
        (kind(&nak), dest),
        (MessageType::Nak, Dest::Relay(Ipv4Addr::new(10, 0, 0, 1)))
    );
    assert!(nak.ciaddr().is_unspecified());
    assert!(nak.opts().get(OptionCode::RelayAgentInformation).is_some());
}

#[test]
fn renewal_is_unicast_and_relayed_requests_go_to_the_relay() {
    let c = cfg();
    let mut t = Table::default();
    let ip = Ipv4Addr::new(10, 0, 0, 105);
    t.insert(Lease {
        ip,
        mac: Mac(MAC),
        expires: 10,
    });
    let mut renew = msg(MessageType::Request, MAC, vec![]);
    renew.set_ciaddr(ip);
    let d = decide(&renew, &c, &t, 100);
    assert_eq!(d.reply.as_ref().unwrap().1, Dest::Client(ip));
    assert_eq!(d.outcome, Outcome::Ack);
    let mut relayed = msg(MessageType::Discover, [2, 0, 0, 0, 0, 8], vec![]);
    relayed.set_giaddr(Ipv4Addr::new(10, 0, 0, 254));
    let d = decide(&relayed, &c, &t, 100);
    assert_eq!(
        d.reply.unwrap().1,
        Dest::Relay(Ipv4Addr::new(10, 0, 0, 254))
    );
}

#[test]
fn the_broadcast_flag_gets_a_broadcast_unless_the_client_has_an_address() {
    let c = cfg();
    let mut t = Table::default();
    let mut discover = msg(MessageType::Discover, MAC, vec![]);
    discover.set_flags(discover.flags().set_broadcast());
    let d = decide(&discover, &c, &t, 100);
    let (offer, dest) = d.reply.unwrap();
    assert_eq!(dest, Dest::Broadcast);
    let ip = offer.yiaddr();
    t.insert(Lease {
        ip,
        mac: Mac(MAC),
        expires: 1000,
    });
    let mut request = msg(
        MessageType::Request,
        MAC,
        vec![DhcpOption::RequestedIpAddress(ip)],
    );
    request.set_flags(request.flags().set_broadcast());
    assert_eq!(
        decide(&request, &c, &t, 100).reply.unwrap().1,
        Dest::Broadcast
    );
    // RFC 2131 4.1: ciaddr wins over the flag.
    request.set_ciaddr(ip);
    assert_eq!(
        decide(&request, &c, &t, 100).reply.unwrap().1,
        Dest::Client(ip)
    );
    // A multicast chaddr cannot be an ARP entry.
    let odd = msg(MessageType::Discover, [3, 0, 0, 0, 0, 7], vec![]);
    assert_eq!(decide(&odd, &c, &t, 100).reply.unwrap().1, Dest::Broadcast);
}

#[test]
fn release_decline_and_other_servers() {
    let c = cfg();
    let t = Table::default();
    let mut rel = msg(MessageType::Release, MAC, vec![]);
    rel.set_ciaddr(Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!(
        decide(&rel, &c, &t, 0).change,
        Some(Change::Release {
            ip: Ipv4Addr::new(10, 0, 0, 100),
            mac: Mac(MAC)
        })
    );
    let dec = msg(
        MessageType::Decline,
        MAC,
        vec![
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 100)),
            DhcpOption::ServerIdentifier(c.server),
        ],
    );
    assert_eq!(
        decide(&dec, &c, &t, 5).change,
        Some(Change::Decline {
            ip: Ipv4Addr::new(10, 0, 0, 100),
            until: 605
        })
    );
    let other = msg(
        MessageType::Request,
        MAC,
        vec![
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 100)),
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 3)),
        ],
    );
    let d = decide(&other, &c, &t, 0);
    assert!(d.reply.is_none() && d.outcome == Outcome::ChoseAnotherServer);
    assert_eq!(d.change, None, "nothing offered here");
    // What was offered here is given back when the client takes another
    // server's offer; a bound lease is not.
    let mut t = Table::default();
    t.insert(Lease {
        ip: Ipv4Addr::new(10, 0, 0, 120),
        mac: Mac(MAC),
        expires: 30,
    });
    assert_eq!(
        decide(&other, &c, &t, 0).change,
        Some(Change::Release {
            ip: Ipv4Addr::new(10, 0, 0, 120),
            mac: Mac(MAC)
        })
    );
    t.insert(Lease {
        ip: Ipv4Addr::new(10, 0, 0, 120),
        mac: Mac(MAC),
        expires: 3600,
    });
    assert_eq!(decide(&other, &c, &t, 0).change, None);
}

#[test]
fn random_and_mutated_datagrams_never_panic_the_decoder_or_the_policy() {
    use dhcproto::Encodable;
    let c = cfg();
    let t = Table::default();
    let seed_msg = msg(
        MessageType::Discover,
        MAC,
        vec![
            DhcpOption::ClientSystemArchitecture(Architecture(7)),
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00007".to_vec()),
            DhcpOption::UserClass(b"\x04iPXE".to_vec()),
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 100)),
        ],
    );
    let seed = seed_msg.to_vec().unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut decoded = 0;
    for i in 0..50_000 {
        let mut bytes = seed.clone();
        match i % 3 {
            0 => {
                for _ in 0..(1 + rnd() % 8) {
                    let at = (rnd() as usize) % bytes.len();
                    bytes[at] = rnd() as u8;
                }
            }
            1 => bytes.truncate((rnd() as usize) % bytes.len()),
            _ => bytes = (0..(rnd() % 600)).map(|_| rnd() as u8).collect(),
        }
        if let Ok(m) = crate::dhcp::wire::decode(&bytes) {
            decoded += 1;
            let d = decide(&m, &c, &t, 1000);
            if let Some((reply, _)) = d.reply {
                reply.to_vec().unwrap();
            }
        }
    }
    assert!(
        decoded > 10_000,
        "the mutations should mostly still decode ({decoded})"
    );
}

#[test]
fn without_enrolment_unknown_booting_machines_are_refused_and_others_served() {
    let c = Config {
        enrol_unknown: false,
        keep_expired_secs: 3 * 12 * 3600,
        ..cfg()
    };
    let pxe = || {
        vec![
            DhcpOption::ClientSystemArchitecture(Architecture(0)),
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
        ]
    };
    let t = Table::default();
    for kind in [MessageType::Discover, MessageType::Request] {
        let d = decide(&msg(kind, MAC, pxe()), &c, &t, 0);
        assert_eq!(d.outcome, Outcome::UnknownRefused);
        assert!(d.reply.is_none() && d.change.is_none());
    }
    // The same firmware on a machine of the spec boots.
    let known = decide(
        &msg(MessageType::Discover, [0x52, 0x54, 0, 0xbf, 0, 1], pxe()),
        &c,
        &t,
        0,
    );
    assert_eq!(known.outcome, Outcome::Offer);
    // An unknown machine that is not booting still gets a pool address.
    let plain = decide(&msg(MessageType::Discover, MAC, vec![]), &c, &t, 0);
    assert_eq!(plain.outcome, Outcome::Offer);
    assert_eq!(
        plain.reply.unwrap().0.yiaddr(),
        Ipv4Addr::new(10, 0, 0, 100)
    );
}
