//! proxyDHCP against real firmware: on a bridge where dnsmasq hands out
//! the addresses, QEMU's iPXE ROM (BIOS, virtio) takes its address from
//! dnsmasq and what to boot from bootfleet in proxy mode, then runs the
//! script bootfleet named. Also a crafted PXE REQUEST to port 4011. Needs
//! root, qemu-system-x86_64 (TCG), Debian's ipxe-qemu ROMs, dnsmasq and
//! python3; skips with a message elsewhere. CI runs it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn ready() -> bool {
    let ok = is_root()
        && have("qemu-system-x86_64")
        && have("dnsmasq")
        && have("python3")
        && Path::new("/usr/lib/ipxe/qemu/pxe-virtio.rom").exists();
    if !ok {
        cannot_run("needs root, qemu-system-x86, ipxe-qemu, dnsmasq and python3");
    }
    ok
}

fn spec() -> &'static str {
    r#"[cluster]
name = "proxytest"

[network]
interface = "br0"
subnet = "10.78.0.0/24"
server = "10.78.0.2"
mode = "proxy"
http_port = 8080

[boot]
kernel = "k/vmlinuz"
initrd = "k/initrd.gz"

# Every machine that boots here is enrolled (no [[nodes]]).
[enrolment]
role = "worker"
"#
}

#[test]
fn the_ipxe_rom_takes_its_address_from_dnsmasq_and_its_boot_script_from_the_proxy_needs_root_and_qemu()
 {
    if !ready() {
        return;
    }
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut srv = Netns::new(&format!("bfp-srv-{id}"));
    let mut other = Netns::new(&format!("bfp-dns-{id}"));
    let (srv_ns, other_ns) = (srv.name.clone(), other.name.clone());
    for args in [
        vec!["ip", "-n", &srv_ns, "link", "set", "lo", "up"],
        vec!["ip", "-n", &srv_ns, "link", "add", "br0", "type", "bridge"],
        vec![
            "ip",
            "-n",
            &srv_ns,
            "addr",
            "add",
            "10.78.0.2/24",
            "dev",
            "br0",
        ],
        vec!["ip", "-n", &srv_ns, "link", "set", "br0", "up"],
        vec![
            "ip", "-n", &srv_ns, "link", "add", "pd0", "type", "veth", "peer", "name", "pd1",
            "netns", &other_ns,
        ],
        vec![
            "ip", "-n", &srv_ns, "link", "set", "pd0", "master", "br0", "up",
        ],
        vec![
            "ip",
            "-n",
            &other_ns,
            "addr",
            "add",
            "10.78.0.3/24",
            "dev",
            "pd1",
        ],
        vec!["ip", "-n", &other_ns, "link", "set", "pd1", "up"],
        vec!["ip", "-n", &srv_ns, "tuntap", "add", "pt0", "mode", "tap"],
        vec![
            "ip", "-n", &srv_ns, "link", "set", "pt0", "master", "br0", "up",
        ],
    ] {
        run(&args);
    }

    // The site's own DHCP server: addresses only, no boot options.
    let dnsmasq_log = d.join("dnsmasq.log");
    other.children.push(
        other
            .exec(&[
                "dnsmasq",
                "--no-daemon",
                "--port=0",
                "--interface=pd1",
                "--bind-interfaces",
                "--dhcp-range=10.78.0.100,10.78.0.150,1h",
                "--no-ping",
                "--log-dhcp",
            ])
            .arg(format!(
                "--dhcp-leasefile={}",
                d.join("dnsmasq.leases").display()
            ))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&dnsmasq_log).unwrap())
            .spawn()
            .unwrap(),
    );

    // The boot script iPXE is sent to: it fetches a marker naming the
    // machine, which the HTTP server's log records, then powers off.
    let www = d.join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(
        www.join("boot.ipxe"),
        "#!ipxe\nimgfetch http://10.78.0.2:8080/marker-${net0/mac:hexhyp}-${net0/ip} ||\npoweroff\n",
    )
    .unwrap();
    let http_log = d.join("http.log");
    srv.children.push(
        srv.exec(&[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "10.78.0.2",
            "--directory",
        ])
        .arg(&www)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&http_log).unwrap())
        .spawn()
        .unwrap(),
    );

    std::fs::write(d.join("spec.toml"), spec()).unwrap();
    let log = d.join("bootfleet.log");
    let mut cmd = srv.exec(&[
        env!("CARGO_BIN_EXE_bootfleet"),
        "--state-dir",
        d.join("state").to_str().unwrap(),
        "dhcp",
        d.join("spec.toml").to_str().unwrap(),
    ]);
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let (server, line) = spawn_until_line(&mut cmd);
    assert!(line.contains("proxyDHCP"), "{line:?}");

    let serial = d.join("serial.log");
    let vm = qemu_pxe(
        &srv,
        "pt0",
        "52:54:00:fd:00:01",
        256,
        Vm::BiosVirtio,
        &serial,
    )
    .spawn();
    srv.children.push(vm.unwrap());

    let booted = wait_for(
        &http_log,
        "GET /marker-52-54-00-fd-00-01-10.78.0.1",
        Duration::from_secs(150),
    );
    let http = std::fs::read_to_string(&http_log).unwrap_or_default();
    let ours = std::fs::read_to_string(&log).unwrap_or_default();
    let theirs = std::fs::read_to_string(&dnsmasq_log).unwrap_or_default();
    assert!(
        booted,
        "iPXE never ran the proxy's script with a dnsmasq address\nhttp: {http}\nbootfleet: {ours}\ndnsmasq: {theirs}"
    );
    assert!(http.contains("GET /boot.ipxe"), "{http}");
    // dnsmasq's range is 10.78.0.100-150: every address starts "10.78.0.1".
    assert!(
        theirs.contains("DHCPACK(pd1) 10.78.0.1"),
        "the address came from dnsmasq: {theirs}"
    );
    drop(server);
    let ours = std::fs::read_to_string(&log).unwrap();
    let offers: Vec<&str> = ours
        .lines()
        .filter(|l| l.contains("52:54:00:fd:00:01") && l.contains("outcome=\"proxy_offer\""))
        .collect();
    assert!(!offers.is_empty(), "{ours}");
    for l in &offers {
        assert!(
            l.contains("ip=0.0.0.0"),
            "a proxy offer carried an address: {l}"
        );
        assert!(
            l.contains("boot=\"http://10.78.0.2:8080/boot.ipxe\""),
            "{l}"
        );
    }
    assert!(
        !ours.contains("outcome=\"ack\"") && !ours.contains("outcome=\"offer\""),
        "the proxy handed out an address: {ours}"
    );
}

/// A PXE client's REQUEST to the boot-server port, built by python3 (no
/// client on this machine sends one without a boot menu).
const CRAFTED_4011: &str = r#"
import socket, struct, sys
mac = bytes.fromhex("525400fd0002")
m = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0xabcd, 0, 0,
    socket.inet_aton("10.79.0.50"), bytes(4), bytes(4), bytes(4), mac + bytes(10), bytes(64), bytes(128))
opts = bytes([99, 130, 83, 99, 53, 1, 3, 60, 32]) + b"PXEClient:Arch:00007:UNDI:003016" + bytes([93, 2, 0, 7, 255])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.bind(("10.79.0.50", 0))
s.sendto(m + opts, ("10.79.0.2", 4011))
reply, frm = s.recvfrom(2048)
o = reply[240:]
i, found = 0, {}
while i < len(o) and o[i] != 255:
    if o[i] == 0:
        i += 1
        continue
    found[o[i]] = o[i + 2:i + 2 + o[i + 1]]
    i += 2 + o[i + 1]
print("from", frm[0], frm[1])
print("type", found[53][0])
print("yiaddr", socket.inet_ntoa(reply[16:20]))
print("file", reply[108:236].rstrip(b"\0").decode())
print("class", found[60].decode())
"#;

#[test]
fn a_crafted_pxe_request_on_port_4011_gets_an_ack_with_the_boot_file_and_no_address_needs_root() {
    if !(is_root() && have("python3")) {
        return;
    }
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ns = Netns::new(&format!("bfp-4011-{id}"));
    let cli = Netns::new(&format!("bfp-4011c-{id}"));
    let (a, b) = (format!("p4s{id}"), format!("p4c{id}"));
    run(&[
        "ip", "-n", &ns.name, "link", "add", &a, "type", "veth", "peer", "name", &b, "netns",
        &cli.name,
    ]);
    run(&[
        "ip",
        "-n",
        &ns.name,
        "addr",
        "add",
        "10.79.0.2/24",
        "dev",
        &a,
    ]);
    run(&["ip", "-n", &ns.name, "link", "set", &a, "up"]);
    run(&[
        "ip",
        "-n",
        &cli.name,
        "addr",
        "add",
        "10.79.0.50/24",
        "dev",
        &b,
    ]);
    run(&["ip", "-n", &cli.name, "link", "set", &b, "up"]);
    let spec = spec().replace("br0", &a).replace("10.78.0.", "10.79.0.");
    std::fs::write(d.join("spec.toml"), spec).unwrap();
    let mut cmd = ns.exec(&[
        env!("CARGO_BIN_EXE_bootfleet"),
        "--state-dir",
        d.join("state").to_str().unwrap(),
        "dhcp",
        d.join("spec.toml").to_str().unwrap(),
    ]);
    cmd.stderr(Stdio::null());
    let (_server, line) = spawn_until_line(&mut cmd);
    assert!(line.contains("4011"), "{line:?}");
    let out = Command::new("ip")
        .args(["netns", "exec", &cli.name, "python3", "-c", CRAFTED_4011])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("from 10.79.0.2 4011"), "{text}");
    assert!(text.contains("type 5"), "an ACK: {text}");
    assert!(text.contains("yiaddr 0.0.0.0"), "{text}");
    assert!(text.contains("file ipxe.efi"), "{text}");
    assert!(text.contains("class PXEClient"), "{text}");
}
