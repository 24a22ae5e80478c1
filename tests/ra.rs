//! Router advertisements against a real router-solicitation client
//! (`rdisc6`, package ndisc6): `bootfleet serve` answers "no router here"
//! (lifetime 0, no M/O flags), goes quiet once another router advertises,
//! and says nothing when the spec turns it off.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// A foreign router's advertisement (lifetime 1800 s), sent once from
/// `iface` by python3 (a raw ICMPv6 socket; the kernel adds the checksum).
const FOREIGN_RA: &str = r#"
import socket, struct, sys
iface = sys.argv[1]
idx = socket.if_nametoindex(iface)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.sendto(struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0), ("ff02::1", 0, 0, idx))
"#;

fn spec(dir: &Path, iface: &str, ra: bool) -> std::path::PathBuf {
    let text = format!(
        "[cluster]\nname = \"ra\"\n[network]\ninterface = \"{iface}\"\nsubnet = \"10.213.62.0/24\"\nserver = \"10.213.62.2\"\nrouter_advertisements = {ra}\n[boot]\ntestos = true\n[[nodes]]\nname = \"n0\"\nmac = \"52:54:00:62:00:01\"\nip = \"10.213.62.10\"\nroles = [\"etcd\"]\n"
    );
    let p = dir.join(format!("spec-{ra}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn serve_tells_a_soliciting_host_there_is_no_ipv6_router_until_a_real_one_speaks_needs_root_and_ndisc6()
 {
    if !is_root() {
        cannot_run("needs root (network namespaces, raw ICMPv6)");
        return;
    }
    if !have("rdisc6") || !have("python3") {
        return;
    }
    let id = std::process::id() % 100_000;
    let srv = Netns::new(&format!("bfra-s-{id}"));
    let cli = Netns::new(&format!("bfra-c-{id}"));
    let (si, ci) = (format!("rs{id}"), format!("rc{id}"));
    run(&[
        "ip", "link", "add", &si, "netns", &srv.name, "type", "veth", "peer", "name", &ci, "netns",
        &cli.name,
    ]);
    run(&[
        "ip",
        "-n",
        &srv.name,
        "addr",
        "add",
        "10.213.62.2/24",
        "dev",
        &si,
    ]);
    run(&["ip", "-n", &srv.name, "link", "set", &si, "up"]);
    run(&["ip", "-n", &cli.name, "link", "set", &ci, "up"]);
    // Link-local addresses leave duplicate detection after about a second.
    let settled = |ns: &Netns, dev: &str| {
        for _ in 0..50 {
            let o = ns
                .exec(&["ip", "-6", "addr", "show", "dev", dev])
                .output()
                .unwrap();
            let t = String::from_utf8_lossy(&o.stdout).into_owned();
            if t.contains("fe80") && !t.contains("tentative") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{dev} got no link-local address");
    };
    settled(&srv, &si);
    settled(&cli, &ci);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    let solicit = || {
        cli.exec(&["rdisc6", "-1", "-r", "2", "-w", "1500", &ci])
            .output()
            .unwrap()
    };
    let serve = |ra: bool| {
        let log = std::fs::File::create(dir.path().join(format!("serve-{ra}.log"))).unwrap();
        let mut cmd = srv.exec(&[
            env!("CARGO_BIN_EXE_bootfleet"),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
            "serve",
            spec(dir.path(), &si, ra).to_str().unwrap(),
            "--images",
            dir.path().join("images").to_str().unwrap(),
            "--no-dhcp",
            "--tftp-listen",
            "10.213.62.2:0",
            "--http-listen",
            "10.213.62.2:0",
        ]);
        cmd.stderr(log);
        spawn_until_line(&mut cmd).0
    };

    let server = serve(true);
    let o = solicit();
    let text = stdout(&o);
    assert!(o.status.success(), "no answer: {text}{}", stderr(&o));
    assert!(
        text.contains("Router lifetime           :            0 (0x00000000) seconds"),
        "{text}"
    );
    assert!(
        text.contains("Stateful address conf.    :           No")
            && text.contains("Stateful other conf.      :           No"),
        "{text}"
    );

    // A real router speaks: bootfleet no longer answers, and says why.
    let sent = cli
        .exec(&["python3", "-c", FOREIGN_RA, &ci])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", stderr(&sent));
    let log = dir.path().join("serve-true.log");
    assert!(
        wait_for(
            &log,
            "another IPv6 router advertises here",
            Duration::from_secs(5)
        ),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let o = solicit();
    assert!(
        !o.status.success(),
        "answered after a real router spoke: {}",
        stdout(&o)
    );
    drop(server);

    // Turned off in the spec: no answer at all.
    let _server = serve(false);
    let o = solicit();
    assert!(
        !o.status.success(),
        "answered with router_advertisements = false: {}",
        stdout(&o)
    );
}
