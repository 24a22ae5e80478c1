//! The first DHCPDISCOVER of real clients, captured byte for byte by
//! `tests/fixtures/dhcp/capture.sh` (QEMU's iPXE ROMs in BIOS and UEFI
//! mode, busybox udhcpc, dhclient), decoded and answered by the pure
//! policy: each must get the boot file its firmware can run.

use dhcproto::v4::{DhcpOption, MessageType, OptionCode};

use super::boot::{BootFile, Firmware};
use super::policy::tests::{cfg, kind};
use super::policy::{Dest, decide};
use super::pool::Table;
use super::wire;

struct Case {
    name: &'static str,
    bytes: &'static [u8],
    firmware: Option<Firmware>,
    file: Option<&'static str>,
    ipxe: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "iPXE ROM, BIOS, virtio",
        bytes: include_bytes!("../../tests/fixtures/dhcp/ipxe-bios-virtio.bin"),
        firmware: Some(Firmware::Bios),
        file: Some("http://10.0.0.2:8080/boot.ipxe"),
        ipxe: true,
    },
    Case {
        name: "iPXE ROM, BIOS, e1000",
        bytes: include_bytes!("../../tests/fixtures/dhcp/ipxe-bios-e1000.bin"),
        firmware: Some(Firmware::Bios),
        file: Some("http://10.0.0.2:8080/boot.ipxe"),
        ipxe: true,
    },
    Case {
        name: "iPXE ROM, UEFI (OVMF), virtio",
        bytes: include_bytes!("../../tests/fixtures/dhcp/ipxe-uefi-virtio.bin"),
        firmware: Some(Firmware::UefiX64),
        file: Some("http://10.0.0.2:8080/boot.ipxe"),
        ipxe: true,
    },
    Case {
        name: "udhcpc with PXE options for x64 UEFI",
        bytes: include_bytes!("../../tests/fixtures/dhcp/udhcpc-pxe-uefi.bin"),
        firmware: Some(Firmware::UefiX64),
        file: Some("ipxe.efi"),
        ipxe: false,
    },
    Case {
        name: "udhcpc, plain (a booted OS)",
        bytes: include_bytes!("../../tests/fixtures/dhcp/udhcpc-plain.bin"),
        firmware: None,
        file: None,
        ipxe: false,
    },
    Case {
        name: "dhclient (a booted OS)",
        bytes: include_bytes!("../../tests/fixtures/dhcp/dhclient.bin"),
        firmware: None,
        file: None,
        ipxe: false,
    },
];

#[test]
fn real_clients_discovers_get_the_right_offer() {
    let mut c = cfg();
    c.boot.bios_loader = crate::spec::BiosLoader::Ipxe;
    for case in CASES {
        let req = wire::decode(case.bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let d = decide(&req, &c, &Table::default(), 1000);
        let (offer, dest) = d.reply.unwrap_or_else(|| panic!("{}: no offer", case.name));
        assert_eq!(kind(&offer), MessageType::Offer, "{}", case.name);
        // RFC 2131 4.1: broadcast only to a client that sets the flag.
        let want = if req.flags().broadcast() {
            Dest::Broadcast
        } else {
            Dest::Hardware(
                offer.yiaddr(),
                crate::dhcp::policy::client_mac(&req).unwrap(),
            )
        };
        assert_eq!(dest, want, "{}", case.name);
        assert_eq!(offer.xid(), req.xid(), "{}", case.name);
        assert!(c.pool.first <= offer.yiaddr() && offer.yiaddr() <= c.pool.last);
        assert_eq!(
            d.boot.as_ref().map(|b| b.firmware),
            case.firmware,
            "{}",
            case.name
        );
        assert_eq!(
            d.boot.as_ref().map(|b| b.file.as_str()),
            case.file,
            "{}",
            case.name
        );
        let opt175 = offer.opts().get(OptionCode::Unknown(175)).is_some();
        assert_eq!(opt175, case.ipxe, "{}: option 175", case.name);
        if let Some(b) = &d.boot {
            assert_eq!(
                offer.fname().unwrap_or_default(),
                b.file.as_str().as_bytes(),
                "{}",
                case.name
            );
            if let BootFile::Tftp(_) = b.file {
                assert_eq!(offer.siaddr(), c.server, "{}", case.name);
            }
            if req
                .opts()
                .get(OptionCode::ClientMachineIdentifier)
                .is_some()
            {
                assert!(
                    matches!(
                        offer.opts().get(OptionCode::ClientMachineIdentifier),
                        Some(DhcpOption::ClientMachineIdentifier(_))
                    ),
                    "{}: option 97 echoed",
                    case.name
                );
            }
        }
        dhcproto::Encodable::to_vec(&offer).unwrap();
    }
}
