//! The whole loop with real firmware: `bootfleet serve` on a bridge in a
//! network namespace, QEMU (TCG) booting from the network with its iPXE
//! ROM, a real kernel and the test OS (src/images/testos.sh) that fetches
//! its cloud-config, prints it on the serial console and calls home. Needs
//! root, qemu-system-x86, ipxe-qemu and apt-get access to build the test
//! OS; skips with a message elsewhere. CI runs it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

fn mac(i: usize) -> String {
    format!("52:54:00:e2:00:{:02x}", i + 1)
}

/// A VM: the node it should become, its MAC and the address it gets.
struct Guest {
    name: String,
    mac: String,
    ip: String,
}

/// Guests e1..: with `enrolled`, the last one is a machine the spec does
/// not list, enrolled as `w-<mac>` with the first pool address.
fn guests(vms: usize, enrolled: bool) -> Vec<Guest> {
    (0..vms)
        .map(|i| {
            if enrolled && i == vms - 1 {
                Guest {
                    name: "w-525400e20099".into(),
                    mac: "52:54:00:e2:00:99".into(),
                    ip: "10.98.0.100".into(),
                }
            } else {
                Guest {
                    name: format!("e{}", i + 1),
                    mac: mac(i),
                    ip: format!("10.98.0.{}", 11 + i),
                }
            }
        })
        .collect()
}

/// Four nodes; e4 exists so that a node that never boots shows as waiting.
/// `pxelinux` makes it the BIOS loader.
fn spec(pxelinux: bool) -> String {
    let mut s = r#"[cluster]
name = "e2e"

[network]
interface = "br0"
subnet = "10.98.0.0/24"
server = "10.98.0.2"
dynamic_range = ["10.98.0.100", "10.98.0.150"]

[boot]
kernel = "testos/vmlinuz"
initrd = "testos/initrd.img"
console = ["ttyS0"]
"#
    .to_owned();
    if pxelinux {
        s.push_str("bios_loader = \"pxelinux\"\n");
    }
    s.push_str("\n[enrolment]\nrole = \"worker\"\nname = \"w-{mac}\"\n");
    for i in 0..4 {
        let role = if i == 0 {
            "\"etcd\", \"worker\""
        } else {
            "\"worker\""
        };
        s.push_str(&format!(
            "\n[[nodes]]\nname = \"e{}\"\nmac = \"{}\"\nip = \"10.98.0.{}\"\nroles = [{role}]\n",
            i + 1,
            mac(i),
            11 + i
        ));
    }
    s
}

/// Where Debian's pxelinux and syslinux-common packages put the loader.
const PXELINUX: [&str; 2] = [
    "/usr/lib/PXELINUX/pxelinux.0",
    "/usr/lib/syslinux/modules/bios/ldlinux.c32",
];

/// Where Debian's ipxe package puts the UEFI loader.
const IPXE_EFI: &str = "/usr/lib/ipxe/ipxe.efi";

fn ready(vm: Vm) -> bool {
    let ok = is_root()
        && have("qemu-system-x86_64")
        && have("curl")
        && Path::new("/usr/lib/ipxe/qemu/pxe-virtio.rom").exists()
        && (!matches!(vm, Vm::Uefi | Vm::UefiPxe) || Path::new("/usr/share/ovmf/OVMF.fd").exists())
        && (vm != Vm::UefiPxe || Path::new(IPXE_EFI).exists())
        && (vm != Vm::BiosE1000 || PXELINUX.iter().all(|p| Path::new(p).exists()));
    if !ok {
        cannot_run(
            "needs root, qemu-system-x86, ipxe-qemu, ovmf and ipxe (UEFI), pxelinux and syslinux-common (pxelinux) and curl",
        );
    }
    ok
}

/// Boots `vms` machines at once (nodes e1.., firmware and NIC as `vm`
/// says) from `bootfleet serve`, and checks that each printed its own
/// cloud-config, called home, and shows as booted with every stage in the
/// API and on the page. On `Vm::BiosE1000` the spec's BIOS loader is
/// pxelinux: the ROM fetches pxelinux.0, its config, the kernel and the
/// initrd over TFTP. On `Vm::UefiPxe` OVMF's own PXE fetches bootfleet's
/// `ipxe.efi` over TFTP and iPXE asks DHCP again: one boot all the same.
fn boot(vms: usize, vm: Vm, enrolled: bool) {
    let guests = guests(vms, enrolled);
    let uefi = matches!(vm, Vm::Uefi | Vm::UefiPxe);
    let pxelinux = vm == Vm::BiosE1000;
    let Some(os) = test_os() else { return };
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tag = match vm {
        Vm::BiosVirtio => "b",
        Vm::BiosE1000 => "p",
        Vm::Uefi => "u",
        Vm::UefiPxe => "x",
    };
    let mut ns = Netns::bridged(&format!("bfe2e-{tag}{vms}-{id}"), "10.98.0.2/24");
    let images = d.join("images/testos");
    std::fs::create_dir_all(&images).unwrap();
    for f in ["vmlinuz", "initrd.img"] {
        std::fs::copy(os.join(f), images.join(f)).unwrap();
    }
    if vm == Vm::UefiPxe {
        std::fs::copy(IPXE_EFI, d.join("images/ipxe.efi")).unwrap();
    }
    if pxelinux {
        for p in PXELINUX {
            let p = Path::new(p);
            std::fs::copy(p, d.join("images").join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(d.join("spec.toml"), spec(pxelinux)).unwrap();
    let (_server, log) = serve_in(&ns, d);

    let started = Instant::now();
    let mut serials = Vec::new();
    for (i, guest) in guests.iter().enumerate() {
        let tap = format!("et{i}");
        ns.tap(&tap);
        let serial = d.join(format!("serial{i}.log"));
        let vm = qemu_pxe(&ns, &tap, &guest.mac, 384, vm, &serial).spawn();
        ns.children.push(vm.unwrap());
        serials.push(serial);
    }
    let get = |path: &str| {
        let o = ns
            .exec(&[
                "curl",
                "-s",
                "--max-time",
                "10",
                &format!("http://10.98.0.2:8080{path}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut token = String::new();
    for (i, serial) in serials.iter().enumerate() {
        let done = wait_for(serial, "testos: done", Duration::from_secs(300));
        let console = std::fs::read_to_string(serial).unwrap_or_default();
        let served = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            done,
            "guest {i} never finished\nserial:\n{console}\nserve:\n{served}"
        );
        let config = console
            .split("=====BEGIN CLOUD-CONFIG=====")
            .nth(1)
            .and_then(|s| s.split("=====END CLOUD-CONFIG=====").next())
            .unwrap_or_default();
        assert!(config.contains("#cloud-config"), "{console}");
        let me = format!("{} ({})", guests[i].name, guests[i].mac);
        assert!(
            config.contains(&me),
            "guest {i} got its own config: {config}"
        );
        for j in (0..4).filter(|j| *j != i) {
            assert!(
                !config.contains(&format!("e{} ({})", j + 1, mac(j))),
                "guest {i} got e{}'s config",
                j + 1
            );
        }
        assert!(console.contains("testos: phoned home"), "{console}");
        if i == 0 {
            token = token_in(config);
        }
    }
    eprintln!(
        "{vms} {} VM(s) printed their cloud-configs within {:.1} s",
        match vm {
            Vm::BiosVirtio => "BIOS iPXE",
            Vm::BiosE1000 => "BIOS pxelinux",
            Vm::Uefi => "UEFI",
            Vm::UefiPxe => "UEFI PXE to iPXE",
        },
        started.elapsed().as_secs_f64()
    );

    // The timeline, through the API and the page, as served to people.
    std::thread::sleep(Duration::from_millis(300));
    let page = get("/");
    for guest in &guests {
        let api = get(&format!("/api/v1/nodes/{}", guest.name));
        let v: serde_json::Value =
            serde_json::from_str(&api).unwrap_or_else(|e| panic!("{e}: {api}"));
        assert_eq!(v["state"], "booted", "{api}");
        assert_eq!(v["ip"], guest.ip, "{api}");
        assert_eq!(v["known"], true, "{api}");
        assert_eq!(v["arch"], if uefi { "uefi-x64" } else { "bios" }, "{api}");
        let stages = stage_names(&v);
        // pxelinux fetches itself and its config over TFTP (the loader
        // stage) instead of an iPXE script; OVMF's PXE fetches ipxe.efi
        // (the loader) and iPXE then its script.
        let loaded: &[&str] = match vm {
            Vm::BiosE1000 => &["loader"],
            Vm::UefiPxe => &["loader", "script"],
            _ => &["script"],
        };
        let mut want = vec!["dhcp"];
        want.extend_from_slice(loaded);
        want.extend(["kernel", "initrd", "os_boot", "cloud_config", "booted"]);
        assert_eq!(stages, want, "{api}");
        // Each stage's time is what the firmware did in it: the firmware's
        // DHCP (a chainloaded iPXE's included) ends before it asks for its
        // script or config (the OS's own DHCP belongs to os_boot), and the
        // kernel's and initrd's stages last their transfers, over HTTP or
        // TFTP alike.
        let span = |name: &str| {
            let t = v["stages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["stage"] == name)
                .unwrap_or_else(|| panic!("no {name}: {api}"));
            let at = t["at"].as_u64().unwrap();
            (at, at + t["ms"].as_u64().unwrap())
        };
        let last = loaded[loaded.len() - 1];
        assert!(
            span("dhcp").1 <= span(last).0,
            "dhcp runs into {last}: {api}"
        );
        for transfer in ["kernel", "initrd"] {
            let (start, end) = span(transfer);
            assert!(end > start, "{transfer} took no time: {api}");
        }
        assert!(span("os_boot").0 >= span("initrd").1, "{api}");
        assert_eq!(
            (v["boots"].as_u64(), v["tries"].as_u64()),
            (Some(1), Some(1)),
            "{api}"
        );
        assert!(v["failure"].is_null(), "{api}");
        assert!(
            page.contains(&format!("data-mac=\"{}\" data-state=\"booted\"", guest.mac)),
            "{page}"
        );
    }
    let idle = get("/api/v1/nodes/e4");
    assert!(idle.contains("\"state\":\"waiting\""), "{idle}");
    // e1's token does not open another node's config.
    let o = ns
        .exec(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://10.98.0.2:8080/cloud-config/e2?token={token}"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "403");
}

#[test]
fn bios_ipxe_rom_boots_the_test_os_which_prints_its_own_cloud_config_and_calls_home_needs_root_and_qemu()
 {
    if ready(Vm::BiosVirtio) {
        boot(1, Vm::BiosVirtio, false);
    }
}

#[test]
fn uefi_pxe_chainloading_bootfleets_ipxe_efi_is_one_boot_with_the_firmwares_stages_needs_root_and_qemu()
 {
    if ready(Vm::UefiPxe) {
        boot(1, Vm::UefiPxe, false);
    }
}

#[test]
fn uefi_ovmf_with_ipxe_boots_the_test_os_needs_root_and_qemu() {
    if ready(Vm::Uefi) {
        boot(1, Vm::Uefi, false);
    }
}

#[test]
fn three_vms_boot_at_once_each_with_its_own_config_one_of_them_enrolled_needs_root_and_qemu() {
    if ready(Vm::BiosVirtio) {
        boot(3, Vm::BiosVirtio, true);
    }
}

#[test]
fn bios_e1000_with_pxelinux_fetches_everything_over_tftp_and_an_unknown_machine_is_enrolled_needs_root_and_qemu()
 {
    if ready(Vm::BiosE1000) {
        boot(1, Vm::BiosE1000, true);
    }
}
