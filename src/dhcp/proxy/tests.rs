use dhcproto::v4::{Architecture, DhcpOption, MessageType, OptionCode};

use super::*;
use crate::dhcp::policy::tests::{MAC, cfg, kind, msg};
use crate::dhcp::pool::Table;
use crate::spec::DhcpMode;

fn proxy_cfg() -> Config {
    Config {
        mode: DhcpMode::Proxy,
        ..cfg()
    }
}

fn pxe_opts(arch: Architecture) -> Vec<DhcpOption> {
    vec![
        DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
        DhcpOption::ClientSystemArchitecture(arch),
        DhcpOption::ClientMachineIdentifier(vec![0; 17]),
    ]
}

fn class(m: &Message) -> Vec<u8> {
    match m.opts().get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(c)) => c.clone(),
        _ => vec![],
    }
}

#[test]
fn a_pxe_discover_gets_an_addressless_offer_with_the_boot_file() {
    let c = proxy_cfg();
    let d = crate::dhcp::policy::decide(
        &msg(MessageType::Discover, MAC, pxe_opts(Architecture(0))),
        &c,
        &Table::default(),
        0,
    );
    assert_eq!(d.outcome, Outcome::ProxyOffer);
    assert_eq!(d.change, None, "a proxy never touches leases");
    let (offer, dest) = d.reply.unwrap();
    assert_eq!((kind(&offer), dest), (MessageType::Offer, Dest::Broadcast));
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED, "no address");
    assert_eq!(offer.siaddr(), c.server);
    assert_eq!(class(&offer), b"PXEClient");
    assert_eq!(offer.fname().unwrap_or_default(), b"pxelinux.0");
    for absent in [
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::AddressLeaseTime,
        OptionCode::DomainNameServer,
    ] {
        assert!(
            offer.opts().get(absent).is_none(),
            "{absent:?} in a proxy offer"
        );
    }
    assert!(offer.opts().get(OptionCode::VendorExtensions).is_some());
    assert!(
        offer
            .opts()
            .get(OptionCode::ClientMachineIdentifier)
            .is_some()
    );
}

#[test]
fn ipxe_behind_a_proxy_gets_the_script_and_option_60() {
    let mut c = proxy_cfg();
    c.boot.bios_loader = crate::spec::BiosLoader::Ipxe;
    let mut opts = pxe_opts(Architecture(0));
    opts.push(DhcpOption::UserClass(b"iPXE".to_vec()));
    let d = crate::dhcp::policy::decide(
        &msg(MessageType::Discover, MAC, opts),
        &c,
        &Table::default(),
        0,
    );
    let (offer, _) = d.reply.unwrap();
    assert_eq!(class(&offer), b"PXEClient");
    assert_eq!(
        offer.fname().unwrap_or_default(),
        b"http://10.0.0.2:8080/boot.ipxe"
    );
}

#[test]
fn the_proxy_leaves_everything_else_to_the_real_server() {
    let c = proxy_cfg();
    let t = Table::default();
    let plain = crate::dhcp::policy::decide(&msg(MessageType::Discover, MAC, vec![]), &c, &t, 0);
    assert_eq!(
        (plain.outcome, plain.reply.is_none()),
        (Outcome::ProxyNotPxe, true)
    );
    let request = crate::dhcp::policy::decide(
        &msg(MessageType::Request, MAC, pxe_opts(Architecture(0))),
        &c,
        &t,
        0,
    );
    assert_eq!(
        (request.outcome, request.reply.is_none()),
        (Outcome::ProxyNotOurs, true)
    );
    let release = crate::dhcp::policy::decide(&msg(MessageType::Release, MAC, vec![]), &c, &t, 0);
    assert!(release.reply.is_none() && release.change.is_none());
}

#[test]
fn port_4011_requests_get_an_ack_back_to_the_sender() {
    let c = proxy_cfg();
    let mut req = msg(MessageType::Request, MAC, pxe_opts(Architecture(7)));
    req.set_ciaddr(Ipv4Addr::new(192, 168, 1, 50));
    let d = on_port_4011(&req, &c);
    let (ack, dest) = d.reply.unwrap();
    assert_eq!(
        (kind(&ack), dest, d.outcome),
        (MessageType::Ack, Dest::Sender, Outcome::ProxyAck)
    );
    assert_eq!(ack.ciaddr(), Ipv4Addr::new(192, 168, 1, 50));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.fname().unwrap_or_default(), b"ipxe.efi");
    let discover = on_port_4011(
        &msg(MessageType::Discover, MAC, pxe_opts(Architecture(0))),
        &c,
    );
    assert!(discover.reply.is_none());
    let not_pxe = on_port_4011(&msg(MessageType::Request, MAC, vec![]), &c);
    assert_eq!(not_pxe.outcome, Outcome::ProxyNotPxe);
}

#[test]
fn uefi_http_boot_behind_a_proxy_gets_a_url_and_httpclient() {
    let c = proxy_cfg();
    let opts = vec![
        DhcpOption::ClassIdentifier(b"HTTPClient:Arch:00016:UNDI:003001".to_vec()),
        DhcpOption::ClientSystemArchitecture(Architecture(16)),
    ];
    let d = crate::dhcp::policy::decide(
        &msg(MessageType::Discover, MAC, opts),
        &c,
        &Table::default(),
        0,
    );
    let (offer, _) = d.reply.unwrap();
    assert_eq!(class(&offer), b"HTTPClient");
    assert!(
        offer
            .fname()
            .unwrap_or_default()
            .starts_with(b"http://10.0.0.2:8080/")
    );
}

#[test]
fn without_enrolment_a_proxy_ignores_unknown_machines_on_both_ports() {
    let c = Config {
        enrol_unknown: false,
        keep_expired_secs: 3 * 12 * 3600,
        ..proxy_cfg()
    };
    let discover = msg(MessageType::Discover, MAC, pxe_opts(Architecture(0)));
    let d = crate::dhcp::policy::decide(&discover, &c, &Table::default(), 0);
    assert_eq!(d.outcome, Outcome::UnknownRefused);
    let request = msg(MessageType::Request, MAC, pxe_opts(Architecture(0)));
    assert_eq!(on_port_4011(&request, &c).outcome, Outcome::UnknownRefused);
    let known = msg(
        MessageType::Request,
        [0x52, 0x54, 0, 0xbf, 0, 1],
        pxe_opts(Architecture(0)),
    );
    assert_eq!(on_port_4011(&known, &c).outcome, Outcome::ProxyAck);
}
