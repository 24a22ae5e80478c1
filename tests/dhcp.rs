//! The DHCP server against busybox udhcpc in network namespaces joined by
//! a veth pair that the test creates and removes. Needs root, busybox and
//! iproute2; skips with a message without them. CI runs it.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::*;

/// Two namespaces, `srv` and `cli`, joined by a veth pair.
struct Segment {
    srv: Netns,
    cli: Netns,
    srv_if: String,
    cli_if: String,
}

impl Segment {
    fn new(tag: &str) -> Segment {
        let id = std::process::id() % 100_000;
        let s = Segment {
            srv: Netns::new(&format!("bfd-srv-{tag}-{id}")),
            cli: Netns::new(&format!("bfd-cli-{tag}-{id}")),
            srv_if: format!("bs{tag}{id}"),
            cli_if: format!("bc{tag}{id}"),
        };
        run(&[
            "ip",
            "link",
            "add",
            &s.srv_if,
            "netns",
            &s.srv.name,
            "type",
            "veth",
            "peer",
            "name",
            &s.cli_if,
            "netns",
            &s.cli.name,
        ]);
        s.server_address("add");
        run(&["ip", "-n", &s.srv.name, "link", "set", &s.srv_if, "up"]);
        run(&["ip", "-n", &s.cli.name, "link", "set", &s.cli_if, "up"]);
        s
    }

    /// `ip addr add` (or `flush`) of the server's 10.77.0.2/24.
    fn server_address(&self, action: &str) {
        let mut args = vec!["ip", "-n", &self.srv.name, "addr", action];
        if action == "add" {
            args.push("10.77.0.2/24");
        }
        args.extend(["dev", &self.srv_if]);
        run(&args);
    }

    fn set_client_mac(&self, mac: &str) {
        run(&[
            "ip",
            "-n",
            &self.cli.name,
            "link",
            "set",
            &self.cli_if,
            "address",
            mac,
        ]);
    }
}

fn spec(iface: &str) -> String {
    format!(
        r#"[cluster]
name = "dhcptest"

[network]
interface = "{iface}"
subnet = "10.77.0.0/24"
server = "10.77.0.2"
gateway = "10.77.0.1"
dns = ["10.77.0.53"]
dynamic_range = ["10.77.0.100", "10.77.0.150"]
lease_time = "1h"

[boot]
kernel = "k/vmlinuz"
initrd = "k/initrd.gz"
bios_loader = "pxelinux"

[[nodes]]
name = "n1"
mac = "52:54:00:77:00:10"
ip = "10.77.0.10"
roles = ["etcd", "worker"]
"#
    )
}

fn start(seg: &Segment, dir: &Path) -> Running {
    start_under(seg, dir, &[])
}

/// Starts `bootfleet dhcp` on the segment, its command line prefixed by
/// `wrap` (e.g. a `setpriv` that drops a capability).
fn start_under(seg: &Segment, dir: &Path, wrap: &[&str]) -> Running {
    std::fs::write(dir.join("spec.toml"), spec(&seg.srv_if)).unwrap();
    let state = dir.join("state");
    let bin = env!("CARGO_BIN_EXE_bootfleet");
    let mut args = wrap.to_vec();
    args.extend([bin, "--state-dir", state.to_str().unwrap(), "dhcp"]);
    let mut cmd = seg.srv.exec(&args);
    cmd.arg(dir.join("spec.toml"))
        .stderr(std::fs::File::create(dir.join("dhcp.log")).unwrap());
    let (server, line) = spawn_until_line(&mut cmd);
    assert!(
        line.starts_with("listening"),
        "server did not start: {line:?} {}",
        std::fs::read_to_string(dir.join("dhcp.log")).unwrap_or_default()
    );
    server
}

/// A segment named by `tag` with `bootfleet dhcp` serving the test spec
/// on it (the server stops when the last value is dropped).
fn served(tag: &str) -> (Segment, tempfile::TempDir, Running) {
    let seg = Segment::new(tag);
    let dir = tempfile::tempdir().unwrap();
    let server = start(&seg, dir.path());
    (seg, dir, server)
}

/// Runs udhcpc once in the client namespace; returns the variables its
/// script saw on `bound`.
fn udhcpc(seg: &Segment, dir: &Path, extra: &[&str]) -> HashMap<String, String> {
    udhcpc_on(&seg.cli.name, &seg.cli_if, dir, extra)
}

/// Runs udhcpc once on `iface` in namespace `ns`; returns the variables
/// its script saw on `bound`.
pub(crate) fn udhcpc_on(
    ns: &str,
    iface: &str,
    dir: &Path,
    extra: &[&str],
) -> HashMap<String, String> {
    let (script, out) = bound_script(dir, "bound");
    let o = udhcpc_once(ns, iface, "5", script.to_str().unwrap(), extra);
    assert!(
        o.status.success(),
        "udhcpc {extra:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    read_env(&out)
}

/// busybox udhcpc in the foreground, once (`tries` DISCOVERs a second
/// apart), running `script`.
pub(crate) fn udhcpc_once(
    ns: &str,
    iface: &str,
    tries: &str,
    script: &str,
    extra: &[&str],
) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "busybox", "udhcpc", "-i", iface])
        .args(["-f", "-q", "-n", "-t", tries, "-T", "1", "-s", script])
        .args(extra)
        .output()
        .unwrap()
}

/// BIOS PXE firmware's options, for udhcpc.
const PXE_BIOS: [&str; 4] = ["-x", "0x5d:0000", "-V", "PXEClient:Arch:00000:UNDI:002001"];

pub(crate) fn ready() -> bool {
    let ok = is_root()
        && Command::new("busybox").arg("--help").output().is_ok()
        && Command::new("ip").arg("-V").output().is_ok();
    if !ok {
        cannot_run("needs root, busybox and iproute2");
    }
    ok
}

/// The server's neighbour (ARP) table on the segment.
fn server_neighbours(seg: &Segment) -> String {
    let o = std::process::Command::new("ip")
        .args(["-n", &seg.srv.name, "neigh", "show", "dev", &seg.srv_if])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_new_client_is_answered_by_unicast_to_its_hardware_address_unless_it_asks_for_broadcast_needs_root()
 {
    if !ready() {
        return;
    }
    let (seg, dir, _server) = served("u");

    // udhcpc leaves the broadcast bit clear: the OFFER and ACK go to
    // 10.77.0.10 at its MAC, through an ARP entry the server set (the
    // client has no address to answer ARP with; its script sets none).
    seg.set_client_mac("52:54:00:77:00:10");
    let env = udhcpc(&seg, dir.path(), &[]);
    assert_eq!(env.get("ip").map(String::as_str), Some("10.77.0.10"));
    let neigh = server_neighbours(&seg);
    assert!(
        neigh.contains("10.77.0.10 lladdr 52:54:00:77:00:10"),
        "no ARP entry for the unicast reply: {neigh:?}"
    );

    // With no address on the server's interface (so no route to the new
    // address) the unicast still leaves by that interface: a socket bound
    // to a device takes an unrouted destination as on-link.
    seg.server_address("flush");
    seg.set_client_mac("52:54:00:77:00:10");
    let env = udhcpc(&seg, dir.path(), &[]);
    assert_eq!(env.get("ip").map(String::as_str), Some("10.77.0.10"));
    seg.server_address("add");

    // -B sets the broadcast bit: the answer is broadcast, no entry is made.
    seg.set_client_mac("02:00:00:77:00:42");
    let env = udhcpc(&seg, dir.path(), &["-B"]);
    let ip = env.get("ip").cloned().unwrap_or_default();
    assert!(ip.starts_with("10.77.0."), "{env:?}");
    let neigh = server_neighbours(&seg);
    assert!(
        !neigh.contains(&format!("{ip} ")),
        "an entry for a client that asked for broadcast: {neigh:?}"
    );
}

#[test]
fn a_server_that_may_not_set_arp_entries_broadcasts_its_replies_and_says_so_needs_root() {
    if !ready() || Command::new("setpriv").arg("--version").output().is_err() {
        return;
    }
    let seg = Segment::new("p");
    let dir = tempfile::tempdir().unwrap();
    // Without CAP_NET_ADMIN, SIOCSARP is refused: the unicast cannot be
    // addressed, so the OFFER and ACK must go by broadcast instead.
    let _server = start_under(
        &seg,
        dir.path(),
        &["setpriv", "--bounding-set", "-net_admin"],
    );
    seg.set_client_mac("52:54:00:77:00:10");
    let env = udhcpc(&seg, dir.path(), &[]);
    assert_eq!(env.get("ip").map(String::as_str), Some("10.77.0.10"));
    let neigh = server_neighbours(&seg);
    assert!(
        !neigh.contains("10.77.0.10"),
        "an ARP entry from a server without CAP_NET_ADMIN: {neigh:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("dhcp.log")).unwrap();
    assert_eq!(
        log.matches("cannot answer new clients by unicast").count(),
        1,
        "the fallback is said once (OFFER and ACK both fell back): {log}"
    );
}

#[test]
fn udhcpc_gets_its_reservation_a_pool_address_and_the_right_boot_file_needs_root() {
    if !ready() {
        return;
    }
    let (seg, dir, _server) = served("a");

    seg.set_client_mac("52:54:00:77:00:10");
    let env = udhcpc(&seg, dir.path(), &[]);
    assert_eq!(
        env.get("ip").map(String::as_str),
        Some("10.77.0.10"),
        "{env:?}"
    );
    assert_eq!(env.get("router").map(String::as_str), Some("10.77.0.1"));
    assert_eq!(env.get("dns").map(|d| d.trim()), Some("10.77.0.53"));
    assert_eq!(env.get("subnet").map(String::as_str), Some("255.255.255.0"));
    assert_eq!(env.get("serverid").map(String::as_str), Some("10.77.0.2"));
    assert!(
        !env.contains_key("boot_file"),
        "the booted OS gets no boot file: {env:?}"
    );

    // Option 93 and user class decide the boot file.
    let cases: &[(&[&str], &str)] = &[
        (&PXE_BIOS, "pxelinux.0"),
        (
            &["-x", "0x5d:0007", "-V", "PXEClient:Arch:00007:UNDI:003016"],
            "ipxe.efi",
        ),
        (
            &["-x", "0x5d:000b", "-V", "PXEClient:Arch:00011:UNDI:003016"],
            "ipxe-arm64.efi",
        ),
        (
            &["-x", "0x5d:0010", "-V", "HTTPClient:Arch:00016:UNDI:003016"],
            "http://10.77.0.2:8080/assets/ipxe.efi",
        ),
        // A BIOS iPXE ROM is sent to pxelinux.0 when the spec says so;
        // iPXE on UEFI gets the script.
        (&["-x", "0x5d:0000", "-x", "0x4d:69505845"], "pxelinux.0"),
        (
            &["-x", "0x5d:0007", "-x", "0x4d:69505845"],
            "http://10.77.0.2:8080/boot.ipxe",
        ),
        (
            &["-x", "0x5d:002a", "-V", "PXEClient:Arch:00042:UNDI:003016"],
            "pxelinux.0",
        ),
    ];
    for (args, file) in cases {
        let env = udhcpc(&seg, dir.path(), args);
        assert_eq!(
            env.get("boot_file").map(String::as_str),
            Some(*file),
            "{args:?}: {env:?}"
        );
        assert_eq!(env.get("ip").map(String::as_str), Some("10.77.0.10"));
        if !file.starts_with("http") {
            assert_eq!(env.get("siaddr").map(String::as_str), Some("10.77.0.2"));
        }
    }
    let log = std::fs::read_to_string(dir.path().join("dhcp.log")).unwrap();
    assert!(
        log.contains("unknown client architecture") && log.contains("arch=42"),
        "{log}"
    );

    // An unknown machine gets the first pool address, and keeps it.
    seg.set_client_mac("02:00:00:77:00:99");
    let env = udhcpc(&seg, dir.path(), &[]);
    assert_eq!(
        env.get("ip").map(String::as_str),
        Some("10.77.0.100"),
        "{env:?}"
    );
    let env = udhcpc(&seg, dir.path(), &[]);
    assert_eq!(env.get("ip").map(String::as_str), Some("10.77.0.100"));

    // The spec has no [enrolment]: the same unknown machine booting from
    // the network (PXE options) gets no answer at all.
    let o = udhcpc_once(&seg.cli.name, &seg.cli_if, "2", "/bin/true", &PXE_BIOS);
    assert!(
        !o.status.success(),
        "an unknown PXE client got a lease: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let log = std::fs::read_to_string(dir.path().join("dhcp.log")).unwrap();
    assert!(
        log.contains("02:00:00:77:00:99") && log.contains("unknown_refused"),
        "{log}"
    );
}

#[test]
fn leases_survive_sigkill_and_no_address_goes_to_two_macs_needs_root() {
    if !ready() {
        return;
    }
    let seg = Segment::new("b");
    let dir = tempfile::tempdir().unwrap();
    let mut granted = Vec::new();
    {
        let _server = start(&seg, dir.path());
        for n in 0..3 {
            let mac = format!("02:00:00:77:01:{n:02x}");
            seg.set_client_mac(&mac);
            let env = udhcpc(&seg, dir.path(), &[]);
            granted.push((mac, env.get("ip").cloned().unwrap()));
        }
        // Dropping the server sends SIGKILL: no clean shutdown.
    }
    let ips: std::collections::HashSet<_> = granted.iter().map(|(_, ip)| ip.clone()).collect();
    assert_eq!(ips.len(), 3, "{granted:?}");
    // With no server running, `bootfleet leases` reads the store: the
    // three leases the clients were told, each to its MAC.
    let state = dir.path().join("state");
    let o = seg
        .srv
        .exec(&[
            env!("CARGO_BIN_EXE_bootfleet"),
            "--state-dir",
            state.to_str().unwrap(),
            "leases",
            dir.path().join("spec.toml").to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let mut listed: Vec<(String, String)> = listed
        .iter()
        .map(|l| {
            (
                l["mac"].as_str().unwrap().into(),
                l["ip"].as_str().unwrap().into(),
            )
        })
        .collect();
    listed.sort();
    let mut told = granted.clone();
    told.sort();
    assert_eq!(listed, told);
    let _server = start(&seg, dir.path());
    // A new machine first: it must not get any address granted before.
    seg.set_client_mac("02:00:00:77:02:00");
    let newcomer = udhcpc(&seg, dir.path(), &[]).get("ip").cloned().unwrap();
    assert!(!ips.contains(&newcomer), "{newcomer} was already leased");
    for (mac, ip) in &granted {
        seg.set_client_mac(mac);
        let env = udhcpc(&seg, dir.path(), &["-r", ip]);
        assert_eq!(env.get("ip"), Some(ip), "{mac} after the crash");
    }
    let log = std::fs::read_to_string(dir.path().join("dhcp.log")).unwrap();
    assert!(
        log.contains("leases recovered leases=3"),
        "the restarted server recovered the three leases: {log}"
    );
}

#[test]
fn a_relayed_request_is_answered_by_unicast_to_the_relay_with_option_82_needs_root() {
    use dhcproto::v4::{DhcpOption, Message, MessageType, relay};
    use dhcproto::{Decodable, Decoder, Encodable};
    if !ready() || Command::new("python3").arg("--version").output().is_err() {
        cannot_run("also needs python3 to play the relay");
        return;
    }
    let seg = Segment::new("r");
    run(&[
        "ip",
        "-n",
        &seg.cli.name,
        "addr",
        "add",
        "10.77.0.1/24",
        "dev",
        &seg.cli_if,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let _server = start(&seg, dir.path());
    let z = std::net::Ipv4Addr::UNSPECIFIED;
    let relay_ip = std::net::Ipv4Addr::new(10, 77, 0, 1);
    let mut m = Message::new_with_id(0xbf01, z, z, z, relay_ip, &[2, 0, 0, 0x77, 3, 1]);
    m.set_hops(1);
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let mut info = relay::RelayAgentInformation::default();
    info.insert(relay::RelayInfo::AgentCircuitId(b"rack1-port7".to_vec()));
    m.opts_mut().insert(DhcpOption::RelayAgentInformation(info));
    let request = hex::encode(m.to_vec().unwrap());
    // The relay: send from 10.77.0.1:67 to the server, wait for the answer on 67.
    let script = format!(
        "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('10.77.0.1',67))\ns.settimeout(5)\ns.sendto(bytes.fromhex('{request}'),('10.77.0.2',67))\nd,a=s.recvfrom(2048)\nprint(a[0],a[1],d.hex())\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &seg.cli.name, "python3", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.split_whitespace();
    assert_eq!(
        (parts.next(), parts.next()),
        (Some("10.77.0.2"), Some("67")),
        "{text}"
    );
    let reply = Message::decode(&mut Decoder::new(
        &hex::decode(parts.next().unwrap()).unwrap(),
    ))
    .unwrap();
    assert_eq!(reply.xid(), 0xbf01);
    assert_eq!(reply.giaddr(), relay_ip);
    assert_eq!(reply.yiaddr(), std::net::Ipv4Addr::new(10, 77, 0, 100));
    let Some(DhcpOption::RelayAgentInformation(echo)) = reply
        .opts()
        .get(dhcproto::v4::OptionCode::RelayAgentInformation)
    else {
        panic!("option 82 not echoed: {reply:?}")
    };
    assert!(format!("{echo:?}").contains("AgentCircuitId"), "{echo:?}");
}

/// Runs `client` (dhclient or dhcpcd) once in the client namespace with a
/// script that records its environment; returns the variables of BOUND.
fn isc_or_dhcpcd(seg: &Segment, dir: &Path, client: &str) -> HashMap<String, String> {
    isc_or_dhcpcd_on(&seg.cli.name, &seg.cli_if, dir, client, &[])
}

/// [`isc_or_dhcpcd`] on `iface` in namespace `ns`; `conf` lines go to
/// dhclient's configuration file.
pub(crate) fn isc_or_dhcpcd_on(
    ns: &str,
    iface: &str,
    dir: &Path,
    client: &str,
    conf: &[&str],
) -> HashMap<String, String> {
    let env_file = dir.join(format!("{client}.env"));
    let _ = std::fs::remove_file(&env_file);
    let script = dir.join(format!("{client}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$reason\" = BOUND ] && env > {}\nexit 0\n",
            env_file.display()
        ),
    )
    .unwrap();
    run(&["chmod", "+x", script.to_str().unwrap()]);
    let (lf, pf) = (dir.join("dhclient.leases"), dir.join("dhclient.pid"));
    let _ = std::fs::remove_file(&lf);
    let cf = dir.join("dhclient.conf");
    std::fs::write(&cf, conf.join("\n") + "\n").unwrap();
    let args: Vec<String> = match client {
        "dhclient" => vec![
            "dhclient".into(),
            "-1".into(),
            "-cf".into(),
            cf.display().to_string(),
            "-sf".into(),
            script.display().to_string(),
            "-lf".into(),
            lf.display().to_string(),
            "-pf".into(),
            pf.display().to_string(),
            iface.to_owned(),
        ],
        _ => vec![
            "dhcpcd".into(),
            "-4".into(),
            "-A".into(),
            "-B".into(),
            "-1".into(),
            "-t".into(),
            "8".into(),
            "-c".into(),
            script.display().to_string(),
            iface.to_owned(),
        ],
    };
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "2", "20", "ip", "netns", "exec", ns])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = cmd.status().unwrap();
    assert!(status.success(), "{client} failed: {status}");
    if let Ok(pid) = std::fs::read_to_string(&pf) {
        let _ = Command::new("kill").arg(pid.trim()).status();
        let _ = std::fs::remove_file(&pf);
    }
    // dhcpcd configures the address; take it away for the next client.
    let _ = Command::new("ip")
        .args(["-n", ns, "addr", "flush", "dev", iface])
        .status();
    read_env(&env_file)
}

#[test]
fn dhclient_and_dhcpcd_get_their_reservation_and_a_pool_address_needs_root() {
    if !ready() || !have("dhclient") || !have("dhcpcd") {
        cannot_run("also needs dhclient (isc-dhcp-client) and dhcpcd (dhcpcd-base)");
        return;
    }
    let (seg, dir, _server) = served("c");
    for (client, mac, want) in [
        ("dhclient", "52:54:00:77:00:10", "10.77.0.10"),
        ("dhcpcd", "52:54:00:77:00:10", "10.77.0.10"),
        ("dhclient", "02:00:00:77:05:01", "10.77.0.100"),
        ("dhcpcd", "02:00:00:77:05:02", "10.77.0.101"),
    ] {
        seg.set_client_mac(mac);
        let env = isc_or_dhcpcd(&seg, dir.path(), client);
        assert_eq!(
            env.get("new_ip_address").map(String::as_str),
            Some(want),
            "{client} {mac}: {env:?}"
        );
        assert_eq!(
            env.get("new_routers").map(String::as_str),
            Some("10.77.0.1"),
            "{client}"
        );
        assert_eq!(
            env.get("new_domain_name_servers").map(|d| d.trim()),
            Some("10.77.0.53"),
            "{client}"
        );
        assert_eq!(
            env.get("new_subnet_mask").map(String::as_str),
            Some("255.255.255.0"),
            "{client}"
        );
    }
}

#[test]
fn a_client_on_another_interface_of_the_server_gets_no_answer_needs_root() {
    if !ready() {
        return;
    }
    let (seg, dir, _server) = served("i");
    // A second segment into the server's namespace, not named in the spec:
    // the same address plan, so only the interface binding keeps it out.
    let other = Netns::new(&format!("bfd-oth-{}", std::process::id() % 100_000));
    let (a, b) = (
        format!("bso{}", std::process::id() % 100_000),
        format!("bco{}", std::process::id() % 100_000),
    );
    run(&[
        "ip",
        "-n",
        &seg.srv.name,
        "link",
        "add",
        &a,
        "type",
        "veth",
        "peer",
        "name",
        &b,
        "netns",
        &other.name,
    ]);
    run(&[
        "ip",
        "-n",
        &seg.srv.name,
        "addr",
        "add",
        "10.77.0.3/24",
        "dev",
        &a,
    ]);
    run(&["ip", "-n", &seg.srv.name, "link", "set", &a, "up"]);
    run(&["ip", "-n", &other.name, "link", "set", &b, "up"]);
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &other.name,
            "busybox",
            "udhcpc",
            "-i",
            &b,
            "-f",
            "-q",
            "-n",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "answered on {a}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The spec's interface still answers.
    seg.set_client_mac("52:54:00:77:00:10");
    let env = udhcpc(&seg, dir.path(), &[]);
    assert_eq!(env.get("ip").map(String::as_str), Some("10.77.0.10"));
}

#[test]
fn udhcpc_behind_a_real_dhcrelay_gets_a_pool_address_needs_root() {
    if !ready() || !have("dhcrelay") {
        return;
    }
    // client --rd-- relay (10.77.0.1 on the client's side) --ru-- server:
    // the server's interface sees only relayed unicast, from another link.
    let id = std::process::id() % 100_000;
    let srv = Netns::new(&format!("bfr-srv-{id}"));
    let mut relay = Netns::new(&format!("bfr-rel-{id}"));
    let cli = Netns::new(&format!("bfr-cli-{id}"));
    let (bs, ru, rd, bc) = (
        format!("rbs{id}"),
        format!("rru{id}"),
        format!("rrd{id}"),
        format!("rbc{id}"),
    );
    for args in [
        vec![
            "ip",
            "-n",
            &srv.name,
            "link",
            "add",
            &bs,
            "type",
            "veth",
            "peer",
            "name",
            &ru,
            "netns",
            &relay.name,
        ],
        vec![
            "ip",
            "-n",
            &relay.name,
            "link",
            "add",
            &rd,
            "type",
            "veth",
            "peer",
            "name",
            &bc,
            "netns",
            &cli.name,
        ],
        vec![
            "ip",
            "-n",
            &srv.name,
            "addr",
            "add",
            "10.66.0.2/30",
            "dev",
            &bs,
        ],
        vec![
            "ip",
            "-n",
            &srv.name,
            "addr",
            "add",
            "10.77.0.2/32",
            "dev",
            &bs,
        ],
        vec!["ip", "-n", &srv.name, "link", "set", &bs, "up"],
        vec![
            "ip",
            "-n",
            &srv.name,
            "route",
            "add",
            "10.77.0.0/24",
            "via",
            "10.66.0.1",
            "dev",
            &bs,
        ],
        vec![
            "ip",
            "-n",
            &relay.name,
            "addr",
            "add",
            "10.66.0.1/30",
            "dev",
            &ru,
        ],
        vec![
            "ip",
            "-n",
            &relay.name,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            &rd,
        ],
        vec!["ip", "-n", &relay.name, "link", "set", &ru, "up"],
        vec!["ip", "-n", &relay.name, "link", "set", &rd, "up"],
        vec![
            "ip",
            "-n",
            &relay.name,
            "route",
            "add",
            "10.77.0.2/32",
            "via",
            "10.66.0.2",
            "dev",
            &ru,
        ],
        vec!["ip", "-n", &cli.name, "link", "set", &bc, "up"],
    ] {
        run(&args);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spec.toml"), spec(&bs)).unwrap();
    let mut cmd = srv.exec(&[
        env!("CARGO_BIN_EXE_bootfleet"),
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
        "dhcp",
        dir.path().join("spec.toml").to_str().unwrap(),
    ]);
    cmd.stderr(std::fs::File::create(dir.path().join("dhcp.log")).unwrap());
    let (_server, line) = spawn_until_line(&mut cmd);
    assert!(line.starts_with("listening"), "{line:?}");
    // ISC's relay, adding option 82 (-a) as a switch would.
    relay.children.push(
        relay
            .exec(&[
                "dhcrelay",
                "-4",
                "-d",
                "-a",
                "-iu",
                &ru,
                "-id",
                &rd,
                "10.77.0.2",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("relay.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // Until the relay has opened its interfaces (it says so).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(dir.path().join("relay.log"))
        .unwrap_or_default()
        .contains("Sending on")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "dhcrelay did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let env = udhcpc_on(&cli.name, &bc, dir.path(), &[]);
    let logs = format!(
        "relay: {}\nserver: {}",
        std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.path().join("dhcp.log")).unwrap_or_default()
    );
    let ip: std::net::Ipv4Addr = env
        .get("ip")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("{env:?}\n{logs}"));
    assert!(
        (std::net::Ipv4Addr::new(10, 77, 0, 100)..=std::net::Ipv4Addr::new(10, 77, 0, 150))
            .contains(&ip),
        "{ip}"
    );
    assert_eq!(env.get("router").map(String::as_str), Some("10.77.0.1"));
    assert_eq!(env.get("serverid").map(String::as_str), Some("10.77.0.2"));
}

#[test]
fn serve_shows_a_refused_unknown_machine_on_its_page_and_api_needs_root() {
    if !ready() || !have("curl") {
        return;
    }
    let seg = Segment::new("r");
    run(&["ip", "-n", &seg.srv.name, "link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("spec.toml"), spec(&seg.srv_if)).unwrap();
    std::fs::create_dir_all(d.join("images")).unwrap();
    let bin = env!("CARGO_BIN_EXE_bootfleet");
    let state = d.join("state");
    let mut cmd = seg
        .srv
        .exec(&[bin, "--state-dir", state.to_str().unwrap(), "serve"]);
    cmd.args([
        "--http-listen",
        "127.0.0.1:8080",
        "--tftp-listen",
        "127.0.0.1:0",
    ])
    .arg("--images")
    .arg(d.join("images"))
    .arg(d.join("spec.toml"))
    .stderr(std::fs::File::create(d.join("serve.log")).unwrap());
    let (_server, line) = spawn_until_line(&mut cmd);
    assert!(
        line.starts_with("listening:"),
        "{line:?}: {}",
        std::fs::read_to_string(d.join("serve.log")).unwrap_or_default()
    );
    // PXE firmware from a MAC the spec does not list; no [enrolment].
    seg.set_client_mac("02:00:00:77:00:55");
    let o = udhcpc_once(&seg.cli.name, &seg.cli_if, "2", "/bin/true", &PXE_BIOS);
    assert!(!o.status.success(), "it got a lease");
    let get = |path: &str| {
        let url = format!("http://127.0.0.1:8080{path}");
        stdout(
            &seg.srv
                .exec(&["curl", "-s", "--max-time", "10", &url])
                .output()
                .unwrap(),
        )
    };
    let api = get("/api/v1/nodes/02:00:00:77:00:55");
    let v: serde_json::Value = serde_json::from_str(&api).unwrap_or_else(|e| panic!("{e}: {api}"));
    assert_eq!(v["known"], false, "{api}");
    assert_eq!(v["state"], "failed", "{api}");
    assert!(
        v["failure"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{api}"
    );
    let page = get("/");
    assert!(
        page.contains("data-mac=\"02:00:00:77:00:55\" data-state=\"failed\""),
        "{page}"
    );
    let metrics = get("/metrics");
    assert!(metrics.contains("outcome=\"unknown_refused\""), "{metrics}");

    // n1 takes its reservation; `bootfleet leases` asks the server for it.
    seg.set_client_mac("52:54:00:77:00:10");
    let env = udhcpc(&seg, d, &[]);
    assert_eq!(env.get("ip").map(String::as_str), Some("10.77.0.10"));
    // The metrics after a refusal and an exchange: Prometheus' linter
    // takes the page; the reply histogram, the counters and the pool's
    // use moved (the reservation is not the pool's); the pool is counted
    // every few seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let metrics = loop {
        let m = get("/metrics");
        let counted = sample(&m, "bootfleet_dhcp_lease_commits_total").is_some_and(|v| v >= 1.0)
            && sample(&m, "bootfleet_dhcp_reply_duration_seconds_count").is_some_and(|v| v >= 2.0)
            && m.contains("bootfleet_dhcp_pool_free_addresses{");
        if counted || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    if have("promtool") {
        promtool_check(&metrics);
    }
    // Every metric the alerting rules name is there.
    let named = crate::alerts::metrics_in_rules();
    assert!(named.len() >= 6, "{named:?}");
    for name in named {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "the alerts use {name}, which is not on the page:\n{metrics}"
        );
    }
    let replies = sample(&metrics, "bootfleet_dhcp_reply_duration_seconds_count")
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(replies >= 2.0, "{metrics}");
    assert!(sample(&metrics, "bootfleet_dhcp_received_total").is_some_and(|v| v >= 3.0));
    assert!(
        sample(&metrics, "bootfleet_dhcp_lease_commits_total").is_some_and(|v| v >= 1.0),
        "{metrics}"
    );
    // Labelled by pool and segment ([network]'s is named after its
    // interface).
    let pool = format!(
        "{{pool=\"10.77.0.100-10.77.0.150\",segment=\"{}\"}}",
        seg.srv_if
    );
    assert_eq!(
        sample(&metrics, &format!("bootfleet_dhcp_pool_addresses{pool}")),
        Some(51.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("bootfleet_dhcp_pool_free_addresses{pool}")
        ),
        Some(51.0),
        "{metrics}"
    );
    let o = seg
        .srv
        .exec(&[
            bin,
            "--state-dir",
            state.to_str().unwrap(),
            "leases",
            d.join("spec.toml").to_str().unwrap(),
            "--server",
            "127.0.0.1:8080",
        ])
        .output()
        .unwrap();
    let table = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(table.starts_with("ADDRESS"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("10.77.0.10"))
        .unwrap_or_default();
    assert!(
        row.contains("52:54:00:77:00:10") && row.contains("n1") && row.contains("in "),
        "{table}"
    );
}
