//! Which boot file a DHCP client gets, decided from what it says about
//! itself. Pure: a decoded request in, a choice out.
//!
//! - iPXE (user class `iPXE`, or option 175 present) gets the HTTP boot
//!   script, never a loader again: no chainload loop. The exception is a
//!   BIOS iPXE (a NIC's iPXE ROM) when the spec says `pxelinux`: it gets
//!   `pxelinux.0`, which boots from the ROM's cached DHCP reply and never
//!   asks again, so it cannot loop either.
//! - Otherwise option 93 (RFC 4578, IANA registry) picks the loader: BIOS
//!   gets `undionly.kpxe` or `pxelinux.0` as the spec says; x64 UEFI
//!   `ipxe.efi`; IA32 UEFI `ipxe-i386.efi`; arm64 UEFI `ipxe-arm64.efi`; the
//!   UEFI HTTP boot types get an `http://` URL of the same loader and the
//!   reply must carry option 60 `HTTPClient`.
//! - An option 93 value not in that list gets the spec's BIOS default and is
//!   reported, so the server logs it rather than dropping the client.
//! - A client with neither option 93, a PXE vendor class nor iPXE (the
//!   booted OS renewing its lease) gets no boot file.

use dhcproto::v4::{DhcpOption, Message, OptionCode};

use crate::spec::BiosLoader;

/// The firmware a client declares with option 93.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// 0: x86 BIOS.
    Bios,
    /// 6: x86 UEFI.
    UefiIa32,
    /// 7 and 9: x64 UEFI.
    UefiX64,
    /// 11: arm64 UEFI.
    UefiArm64,
    /// 15: x86 UEFI HTTP boot.
    HttpIa32,
    /// 16: x64 UEFI HTTP boot.
    HttpX64,
    /// 19: arm64 UEFI HTTP boot.
    HttpArm64,
    /// Any other value.
    Unknown(u16),
}

impl Firmware {
    /// From an option 93 value.
    pub fn from_arch(arch: u16) -> Firmware {
        match arch {
            0 => Firmware::Bios,
            6 => Firmware::UefiIa32,
            7 | 9 => Firmware::UefiX64,
            11 => Firmware::UefiArm64,
            15 => Firmware::HttpIa32,
            16 => Firmware::HttpX64,
            19 => Firmware::HttpArm64,
            other => Firmware::Unknown(other),
        }
    }

    /// A short name for logs and the boot timeline.
    pub fn name(&self) -> String {
        match self {
            Firmware::Bios => "bios".into(),
            Firmware::UefiIa32 => "uefi-ia32".into(),
            Firmware::UefiX64 => "uefi-x64".into(),
            Firmware::UefiArm64 => "uefi-arm64".into(),
            Firmware::HttpIa32 => "uefi-http-ia32".into(),
            Firmware::HttpX64 => "uefi-http-x64".into(),
            Firmware::HttpArm64 => "uefi-http-arm64".into(),
            Firmware::Unknown(v) => format!("unknown-{v}"),
        }
    }
}

/// What a request says about the client's boot firmware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Option 93, when sent (the first value if several).
    pub arch: Option<u16>,
    /// Option 60 starts with `PXEClient`.
    pub pxe_client: bool,
    /// Option 60 starts with `HTTPClient`.
    pub http_client: bool,
    /// User class `iPXE` or option 175 present.
    pub ipxe: bool,
}

impl Client {
    /// Reads the client's options from a request.
    pub fn from_request(msg: &Message) -> Client {
        let opts = msg.opts();
        let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
            Some(DhcpOption::ClientSystemArchitecture(a)) => Some(a.0),
            _ => None,
        };
        let class = match opts.get(OptionCode::ClassIdentifier) {
            Some(DhcpOption::ClassIdentifier(c)) => c.as_slice(),
            _ => &[],
        };
        let user_class_ipxe = match opts.get(OptionCode::UserClass) {
            Some(DhcpOption::UserClass(u)) => user_class_says_ipxe(u),
            _ => false,
        };
        let option_175 = opts.get(OptionCode::Unknown(175)).is_some();
        Client {
            arch,
            pxe_client: class.starts_with(b"PXEClient"),
            http_client: class.starts_with(b"HTTPClient"),
            ipxe: user_class_ipxe || option_175,
        }
    }

    /// True for a client that is booting over the network.
    pub fn is_booting(&self) -> bool {
        self.arch.is_some() || self.pxe_client || self.http_client || self.ipxe
    }

    /// The declared firmware; without option 93 a PXE client is BIOS, and
    /// an HTTP client is x64 UEFI HTTP boot.
    pub fn firmware(&self) -> Firmware {
        match self.arch {
            Some(a) => Firmware::from_arch(a),
            None if self.http_client => Firmware::HttpX64,
            None => Firmware::Bios,
        }
    }
}

/// iPXE sends user class `iPXE`, either bare or in RFC 3004 form (length
/// byte, then the text).
fn user_class_says_ipxe(raw: &[u8]) -> bool {
    if raw == b"iPXE" {
        return true;
    }
    let mut rest = raw;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if tail.len() < len {
            return false;
        }
        if &tail[..len] == b"iPXE" {
            return true;
        }
        rest = &tail[len..];
    }
    false
}

/// Where the boot file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootFile {
    /// A file name on the TFTP server (`siaddr`, options 66/67).
    Tftp(String),
    /// A URL: the iPXE script, or a loader for UEFI HTTP boot.
    Http(String),
}

impl BootFile {
    /// The value for the `file` field and option 67.
    pub fn as_str(&self) -> &str {
        match self {
            BootFile::Tftp(s) | BootFile::Http(s) => s,
        }
    }
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub file: BootFile,
    /// The reply must carry option 60 `HTTPClient` (UEFI HTTP boot).
    pub http_client: bool,
    /// Set when option 93 held a value bootfleet does not know: the server
    /// logs it and the client got the spec's BIOS default.
    pub unknown_arch: Option<u16>,
    /// Firmware, for logs and the boot timeline.
    pub firmware: Firmware,
}

/// What the choice depends on, from the spec.
#[derive(Debug, Clone)]
pub struct BootConfig {
    pub bios_loader: BiosLoader,
    /// `http://server:port`.
    pub http_base: String,
}

/// The boot file for `client`, or `None` for a client that is not booting.
pub fn choose(client: &Client, cfg: &BootConfig) -> Option<Choice> {
    if !client.is_booting() {
        return None;
    }
    let firmware = client.firmware();
    let tftp = |f: &str| BootFile::Tftp(f.to_owned());
    let http = |f: &str| BootFile::Http(format!("{}/assets/{f}", cfg.http_base));
    let bios = || match cfg.bios_loader {
        BiosLoader::Ipxe => tftp("undionly.kpxe"),
        BiosLoader::Pxelinux => tftp("pxelinux.0"),
    };
    let mut unknown_arch = None;
    let pxelinux_on_bios = firmware == Firmware::Bios && cfg.bios_loader == BiosLoader::Pxelinux;
    let file = if client.ipxe && !pxelinux_on_bios {
        BootFile::Http(format!("{}/boot.ipxe", cfg.http_base))
    } else {
        match firmware {
            Firmware::Bios => bios(),
            Firmware::UefiIa32 => tftp("ipxe-i386.efi"),
            Firmware::UefiX64 => tftp("ipxe.efi"),
            Firmware::UefiArm64 => tftp("ipxe-arm64.efi"),
            Firmware::HttpIa32 => http("ipxe-i386.efi"),
            Firmware::HttpX64 => http("ipxe.efi"),
            Firmware::HttpArm64 => http("ipxe-arm64.efi"),
            Firmware::Unknown(v) => {
                unknown_arch = Some(v);
                bios()
            }
        }
    };
    let http_client = matches!(
        firmware,
        Firmware::HttpIa32 | Firmware::HttpX64 | Firmware::HttpArm64
    ) && !client.ipxe;
    Some(Choice {
        file,
        http_client,
        unknown_arch,
        firmware,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{Architecture, MessageType};

    fn request(opts: Vec<DhcpOption>) -> Message {
        let mut m = Message::default();
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        for o in opts {
            m.opts_mut().insert(o);
        }
        m
    }

    fn cfg(bios_loader: BiosLoader) -> BootConfig {
        BootConfig {
            bios_loader,
            http_base: "http://10.0.0.2:8080".into(),
        }
    }

    fn pxe(arch: u16) -> Vec<DhcpOption> {
        vec![
            DhcpOption::ClientSystemArchitecture(Architecture(arch)),
            DhcpOption::ClassIdentifier(
                format!("PXEClient:Arch:{arch:05}:UNDI:003016").into_bytes(),
            ),
        ]
    }

    fn file_for(opts: Vec<DhcpOption>, loader: BiosLoader) -> Option<Choice> {
        choose(&Client::from_request(&request(opts)), &cfg(loader))
    }

    #[test]
    fn each_firmware_gets_its_loader() {
        let cases: &[(u16, BiosLoader, BootFile)] = &[
            (0, BiosLoader::Ipxe, BootFile::Tftp("undionly.kpxe".into())),
            (0, BiosLoader::Pxelinux, BootFile::Tftp("pxelinux.0".into())),
            (6, BiosLoader::Ipxe, BootFile::Tftp("ipxe-i386.efi".into())),
            (7, BiosLoader::Pxelinux, BootFile::Tftp("ipxe.efi".into())),
            (9, BiosLoader::Ipxe, BootFile::Tftp("ipxe.efi".into())),
            (
                11,
                BiosLoader::Ipxe,
                BootFile::Tftp("ipxe-arm64.efi".into()),
            ),
        ];
        for (arch, loader, want) in cases {
            let c = file_for(pxe(*arch), *loader).unwrap();
            assert_eq!(&c.file, want, "arch {arch}");
            assert!(!c.http_client && c.unknown_arch.is_none());
        }
    }

    #[test]
    fn uefi_http_boot_gets_a_url_and_the_httpclient_echo() {
        for (arch, file) in [
            (15u16, "ipxe-i386.efi"),
            (16, "ipxe.efi"),
            (19, "ipxe-arm64.efi"),
        ] {
            let opts = vec![
                DhcpOption::ClientSystemArchitecture(Architecture(arch)),
                DhcpOption::ClassIdentifier(b"HTTPClient:Arch:00016".to_vec()),
            ];
            let c = file_for(opts, BiosLoader::Ipxe).unwrap();
            assert_eq!(
                c.file,
                BootFile::Http(format!("http://10.0.0.2:8080/assets/{file}"))
            );
            assert!(c.http_client, "arch {arch}");
        }
    }

    #[test]
    fn ipxe_gets_the_script_never_the_loader_again() {
        let mut by_user_class = pxe(0);
        by_user_class.push(DhcpOption::UserClass(b"iPXE".to_vec()));
        let mut by_175 = pxe(7);
        by_175.push(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
            OptionCode::Unknown(175),
            vec![177, 5, 1, 128, 134, 16, 14],
        )));
        let mut rfc3004 = pxe(16);
        rfc3004.push(DhcpOption::UserClass(b"\x04iPXE".to_vec()));
        for opts in [by_user_class.clone(), by_175.clone(), rfc3004.clone()] {
            let c = file_for(opts, BiosLoader::Ipxe).unwrap();
            assert_eq!(
                c.file,
                BootFile::Http("http://10.0.0.2:8080/boot.ipxe".into())
            );
            assert!(!c.http_client);
        }
        // With the pxelinux loader only the BIOS iPXE ROM is sent to
        // pxelinux.0; iPXE on UEFI still gets the script.
        for opts in [by_175, rfc3004] {
            let c = file_for(opts, BiosLoader::Pxelinux).unwrap();
            assert_eq!(
                c.file,
                BootFile::Http("http://10.0.0.2:8080/boot.ipxe".into())
            );
        }
    }

    #[test]
    fn a_bios_ipxe_rom_gets_pxelinux_when_the_spec_says_so() {
        let mut rom = pxe(0);
        rom.push(DhcpOption::UserClass(b"iPXE".to_vec()));
        let c = file_for(rom, BiosLoader::Pxelinux).unwrap();
        assert_eq!(c.file, BootFile::Tftp("pxelinux.0".into()));
        assert_eq!(c.firmware, Firmware::Bios);
    }

    #[test]
    fn an_unknown_architecture_gets_the_default_and_is_reported() {
        let c = file_for(pxe(42), BiosLoader::Pxelinux).unwrap();
        assert_eq!(c.file, BootFile::Tftp("pxelinux.0".into()));
        assert_eq!(c.unknown_arch, Some(42));
        assert_eq!(c.firmware.name(), "unknown-42");
    }

    #[test]
    fn the_booted_os_gets_no_boot_file() {
        let opts = vec![DhcpOption::Hostname("node".into())];
        assert_eq!(file_for(opts, BiosLoader::Ipxe), None);
    }

    #[test]
    fn a_pxe_client_without_option_93_is_bios() {
        let opts = vec![DhcpOption::ClassIdentifier(b"PXEClient".to_vec())];
        assert_eq!(
            file_for(opts, BiosLoader::Ipxe).unwrap().file,
            BootFile::Tftp("undionly.kpxe".into())
        );
    }

    #[test]
    fn malformed_user_classes_do_not_panic() {
        for raw in [&b""[..], b"\x09iP", b"\xff", b"\x00\x00\x04iPX"] {
            assert!(!user_class_says_ipxe(raw), "{raw:?}");
        }
        assert!(user_class_says_ipxe(b"\x03abc\x04iPXE"));
    }
}
