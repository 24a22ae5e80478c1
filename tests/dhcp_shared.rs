//! Two `bootfleet dhcp` servers of one site on one bridge, sharing a real
//! etcd (Debian's etcd-server): real udhcpc clients broadcasting to both
//! and Kea's perfdhcp loading each, every reply captured on the bridge
//! with tcpdump. No address is ever acknowledged to two MACs, and what
//! the clients were told is what etcd holds, also after one server is
//! killed; with etcd away, what a server knows is still answered. Needs root, busybox,
//! iproute2, etcd, perfdhcp (kea-admin) and tcpdump.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

const CLIENTS: usize = 30;

fn ready() -> bool {
    let ok = is_root()
        && have("busybox")
        && have("etcd")
        && have("perfdhcp")
        && have("tcpdump")
        && have("curl");
    if !ok {
        cannot_run("needs root, busybox, etcd-server, perfdhcp (kea-admin), tcpdump and curl");
    }
    ok
}

fn spec(server: &str) -> String {
    format!(
        r#"[cluster]
name = "shared"

[network]
interface = "bfs"
subnet = "10.81.0.0/16"
server = "{server}"
gateway = "10.81.0.1"
dynamic_range = ["10.81.1.0", "10.81.60.255"]
lease_time = "1h"

[boot]
kernel = "k/vmlinuz"
initrd = "k/initrd.gz"

[state]
backend = "etcd"
endpoints = ["http://10.81.0.10:2379"]
"#
    )
}

/// Every ACK in the capture: (address, client MAC).
fn acks(pcap: &Path) -> Vec<(String, String)> {
    let o = Command::new("tcpdump")
        .args(["-n", "-vv", "-r"])
        .arg(pcap)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let mut out = Vec::new();
    // Each packet starts at a line with a timestamp (no leading space).
    let mut packet = String::new();
    let mut flush = |p: &str| {
        if !p.contains("DHCP-Message (53), length 1: ACK") {
            return;
        }
        let field = |name: &str| {
            p.split(name)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
        };
        if let (Some(ip), Some(mac)) = (field("Your-IP "), field("Client-Ethernet-Address ")) {
            out.push((ip, mac));
        }
    };
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('\t') && !packet.is_empty() {
            flush(&packet);
            packet.clear();
        }
        packet.push_str(line);
        packet.push('\n');
    }
    flush(&packet);
    out
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_servers_sharing_etcd_never_give_one_address_to_two_macs_and_lose_no_acked_lease_when_one_is_killed_needs_root_and_etcd()
 {
    if !ready() {
        return;
    }
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut hub = Netns::new(&format!("bfsh-hub-{id}"));
    let h = hub.name.clone();
    run(&["ip", "-n", &h, "link", "set", "lo", "up"]);
    run(&["ip", "-n", &h, "link", "add", "br0", "type", "bridge"]);
    run(&["ip", "-n", &h, "addr", "add", "10.81.0.10/16", "dev", "br0"]);
    run(&["ip", "-n", &h, "link", "set", "br0", "up"]);
    // A namespace on the bridge with `addr` on its interface `bfs`.
    let attach = |ns: &Netns, port: &str, addr: Option<&str>| {
        run(&[
            "ip", "link", "add", "bfs", "netns", &ns.name, "type", "veth", "peer", "name", port,
            "netns", &h,
        ]);
        run(&["ip", "-n", &h, "link", "set", port, "master", "br0", "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", "bfs", "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        if let Some(a) = addr {
            run(&["ip", "-n", &ns.name, "addr", "add", a, "dev", "bfs"]);
        }
    };
    let s1 = Netns::new(&format!("bfsh-s1-{id}"));
    let s2 = Netns::new(&format!("bfsh-s2-{id}"));
    let p1 = Netns::new(&format!("bfsh-p1-{id}"));
    let p2 = Netns::new(&format!("bfsh-p2-{id}"));
    let cli = Netns::new(&format!("bfsh-c-{id}"));
    attach(&s1, "hs1", Some("10.81.0.2/16"));
    attach(&s2, "hs2", Some("10.81.0.3/16"));
    attach(&p1, "hp1", Some("10.81.0.51/16"));
    attach(&p2, "hp2", Some("10.81.0.52/16"));
    // The udhcpc clients: an interface each, with its own MAC.
    run(&["ip", "-n", &cli.name, "link", "set", "lo", "up"]);
    for i in 0..CLIENTS {
        let (c, port) = (format!("c{i}"), format!("hc{i}"));
        run(&[
            "ip", "link", "add", &c, "netns", &cli.name, "type", "veth", "peer", "name", &port,
            "netns", &h,
        ]);
        run(&["ip", "-n", &h, "link", "set", &port, "master", "br0", "up"]);
        run(&[
            "ip",
            "-n",
            &cli.name,
            "link",
            "set",
            &c,
            "address",
            &format!("02:81:00:00:00:{i:02x}"),
        ]);
        run(&["ip", "-n", &cli.name, "link", "set", &c, "up"]);
    }

    // etcd on the bridge, for both servers.
    let url = "http://10.81.0.10:2379";
    let etcd = hub
        .exec(&["etcd", "--name", "m", "--data-dir"])
        .arg(d.join("etcd"))
        .args(["--listen-client-urls", url, "--advertise-client-urls", url])
        .args(["--listen-peer-urls", "http://10.81.0.10:2380"])
        .args(["--initial-advertise-peer-urls", "http://10.81.0.10:2380"])
        .args(["--initial-cluster", "m=http://10.81.0.10:2380"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    hub.children.push(etcd);
    let healthy = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        hub.exec(&["curl", "-sf", "--max-time", "1", &format!("{url}/health")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(healthy, "etcd did not start");

    let capture = d.join("dhcp.pcap");
    let tcpdump = hub
        .exec(&["tcpdump", "-i", "br0", "-U", "-s", "0", "-w"])
        .arg(&capture)
        .args(["udp", "and", "(port", "67", "or", "port", "68)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tcpdump = Killed(tcpdump);
    std::thread::sleep(Duration::from_millis(500));

    let bin = env!("CARGO_BIN_EXE_bootfleet");
    let mut servers = Vec::new();
    for (ns, addr, name) in [(&s1, "10.81.0.2", "s1"), (&s2, "10.81.0.3", "s2")] {
        let spec_path = d.join(format!("{name}.toml"));
        std::fs::write(&spec_path, spec(addr)).unwrap();
        let state = d.join(format!("state-{name}"));
        let mut cmd = ns.exec(&[bin, "--state-dir", state.to_str().unwrap(), "dhcp"]);
        cmd.arg(&spec_path)
            .stderr(std::fs::File::create(d.join(format!("{name}.log"))).unwrap());
        let (server, line) = spawn_until_line(&mut cmd);
        assert!(
            line.starts_with("listening"),
            "{line:?}: {}",
            std::fs::read_to_string(d.join(format!("{name}.log"))).unwrap_or_default()
        );
        servers.push(server);
    }

    // Real clients, all at once: each DISCOVER reaches both servers.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let script = d.join(format!("bound{i}.sh"));
        let out = d.join(format!("bound{i}.env"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
                out.display()
            ),
        )
        .unwrap();
        run(&["chmod", "+x", script.to_str().unwrap()]);
        let c = cli
            .exec(&[
                "busybox",
                "udhcpc",
                "-i",
                &format!("c{i}"),
                "-f",
                "-q",
                "-n",
            ])
            .args(["-t", "10", "-T", "1", "-s", script.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        clients.push(c);
    }
    // And load on both servers at once, new clients every exchange.
    let perf = |ns: &Netns, server: &str| {
        ns.exec(&["perfdhcp", "-4", "-l", "bfs", "-r", "150", "-p", "8"])
            .args(["-R", "500000000", server])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (l1, l2) = (perf(&p1, "10.81.0.2"), perf(&p2, "10.81.0.3"));
    for mut c in clients {
        c.wait().unwrap();
    }
    let loads: Vec<String> = [l1, l2]
        .into_iter()
        .map(|p| String::from_utf8_lossy(&p.wait_with_output().unwrap().stdout).into_owned())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(tcpdump);
    // s1 dies (SIGKILL: no clean stop, its offers' etcd lease left to
    // expire); s2 stops (SIGTERM: it logs its counters).
    for (n, mut s) in servers.into_iter().enumerate() {
        let signal = if n == 0 { "-KILL" } else { "-TERM" };
        run(&["kill", signal, &s.0.id().to_string()]);
        let _ = s.0.wait();
    }

    // What each real client was told.
    let mut told: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..CLIENTS {
        let env = read_env(&d.join(format!("bound{i}.env")));
        let ip = env
            .get("ip")
            .cloned()
            .unwrap_or_else(|| panic!("client {i} got no lease"));
        told.insert(format!("02:81:00:00:00:{i:02x}"), ip);
    }
    let distinct: BTreeSet<&String> = told.values().collect();
    assert_eq!(distinct.len(), CLIENTS, "{told:?}");

    // Every ACK on the wire, from either server: one MAC per address.
    let acked = acks(&capture);
    assert!(acked.len() > CLIENTS + 500, "{} ACKs captured", acked.len());
    let mut holders: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (ip, mac) in &acked {
        holders.entry(ip).or_default().insert(mac);
    }
    let doubled: Vec<_> = holders.iter().filter(|(_, m)| m.len() > 1).collect();
    assert!(
        doubled.is_empty(),
        "addresses ACKed to two MACs: {doubled:?}"
    );

    // What etcd holds: each real client at the address it was told.
    let o = hub
        .exec(&[
            bin,
            "--state-dir",
            d.join("state-x").to_str().unwrap(),
            "leases",
        ])
        .arg(d.join("s1.toml"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let stored: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    for (mac, ip) in &told {
        assert!(
            stored
                .iter()
                .any(|l| l["mac"] == mac.as_str() && l["ip"] == ip.as_str()),
            "{mac} {ip} is not in etcd"
        );
    }
    // No lease that was ACKed is lost, whichever server ACKed it and
    // whether it stopped cleanly or was killed.
    let in_etcd: BTreeSet<(&str, &str)> = stored
        .iter()
        .filter_map(|l| Some((l["ip"].as_str()?, l["mac"].as_str()?)))
        .collect();
    let lost: Vec<_> = holders
        .iter()
        .filter(|(ip, macs)| !macs.iter().any(|m| in_etcd.contains(&(**ip, *m))))
        .collect();
    assert!(lost.is_empty(), "ACKed but not in etcd: {lost:?}");
    // Each lease names the server that granted it: both did.
    let granting: BTreeSet<&str> = stored.iter().filter_map(|l| l["server"].as_str()).collect();
    assert_eq!(granting.len(), 2, "{granting:?}");
    let logs: Vec<String> = ["s1", "s2"]
        .iter()
        .map(|s| std::fs::read_to_string(d.join(format!("{s}.log"))).unwrap_or_default())
        .collect();
    let counters = logs[1]
        .lines()
        .find(|l| l.contains("counters="))
        .unwrap_or("(no counters logged)");
    eprintln!("server s2: {counters}");
    for (i, out) in loads.iter().enumerate() {
        let drops = out
            .lines()
            .filter(|l| {
                l.starts_with("drops:")
                    || l.starts_with("sent packets")
                    || l.starts_with("received packets")
            })
            .collect::<Vec<_>>()
            .join("; ");
        eprintln!("perfdhcp {}: {drops}", i + 1);
    }
    eprintln!(
        "{} ACKs captured for {} addresses; {} leases in etcd",
        acked.len(),
        holders.len(),
        stored.len()
    );
    drop((s1, s2, p1, p2, cli));
}

/// Starts etcd in `hub` on 10.81.0.10 with its data in `data`; waits
/// until it answers.
fn start_etcd(hub: &Netns, data: &Path) -> Child {
    let url = "http://10.81.0.10:2379";
    let etcd = hub
        .exec(&["etcd", "--name", "m", "--data-dir"])
        .arg(data)
        .args(["--listen-client-urls", url, "--advertise-client-urls", url])
        .args(["--listen-peer-urls", "http://10.81.0.10:2380"])
        .args(["--initial-advertise-peer-urls", "http://10.81.0.10:2380"])
        .args(["--initial-cluster", "m=http://10.81.0.10:2380"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let healthy = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        hub.exec(&["curl", "-sf", "--max-time", "1", &format!("{url}/health")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(healthy, "etcd did not start");
    etcd
}

/// udhcpc once on `iface` in `ns`; what its script saw on `bound`, if it
/// got a lease.
fn lease(
    ns: &Netns,
    iface: &str,
    dir: &Path,
    tries: &str,
    extra: &[&str],
) -> Option<std::collections::HashMap<String, String>> {
    let out = dir.join(format!("{iface}.env"));
    let _ = std::fs::remove_file(&out);
    let script = dir.join(format!("{iface}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    run(&["chmod", "+x", script.to_str().unwrap()]);
    let o = ns
        .exec(&[
            "busybox", "udhcpc", "-i", iface, "-f", "-q", "-n", "-t", tries, "-T", "1",
        ])
        .args(["-s", script.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    o.status.success().then(|| read_env(&out))
}

#[test]
fn with_etcd_away_known_leases_and_reservations_are_answered_new_ones_wait_and_all_resumes_needs_root_and_etcd()
 {
    if !ready() {
        return;
    }
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut hub = Netns::new(&format!("bfso-hub-{id}"));
    let h = hub.name.clone();
    run(&["ip", "-n", &h, "link", "set", "lo", "up"]);
    run(&["ip", "-n", &h, "link", "add", "br0", "type", "bridge"]);
    run(&["ip", "-n", &h, "addr", "add", "10.81.0.10/16", "dev", "br0"]);
    run(&["ip", "-n", &h, "link", "set", "br0", "up"]);
    let s1 = Netns::new(&format!("bfso-s1-{id}"));
    let cli = Netns::new(&format!("bfso-c-{id}"));
    run(&[
        "ip", "link", "add", "bfs", "netns", &s1.name, "type", "veth", "peer", "name", "hs1",
        "netns", &h,
    ]);
    run(&["ip", "-n", &h, "link", "set", "hs1", "master", "br0", "up"]);
    run(&["ip", "-n", &s1.name, "link", "set", "bfs", "up"]);
    run(&[
        "ip",
        "-n",
        &s1.name,
        "addr",
        "add",
        "10.81.0.2/16",
        "dev",
        "bfs",
    ]);
    for i in 0..3 {
        let (c, port) = (format!("c{i}"), format!("hc{i}"));
        run(&[
            "ip", "link", "add", &c, "netns", &cli.name, "type", "veth", "peer", "name", &port,
            "netns", &h,
        ]);
        run(&["ip", "-n", &h, "link", "set", &port, "master", "br0", "up"]);
        run(&[
            "ip",
            "-n",
            &cli.name,
            "link",
            "set",
            &c,
            "address",
            &format!("02:81:00:00:01:{i:02x}"),
        ]);
        run(&["ip", "-n", &cli.name, "link", "set", &c, "up"]);
    }
    let mut etcd = start_etcd(&hub, &d.join("etcd"));
    // c0 is the spec's node n1 (a reservation); c1 and c2 take pool leases.
    let spec_path = d.join("s1.toml");
    std::fs::write(
        &spec_path,
        spec("10.81.0.2")
            + "\n[[nodes]]\nname = \"n1\"\nmac = \"02:81:00:00:01:00\"\nip = \"10.81.0.20\"\nroles = [\"etcd\", \"worker\"]\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_bootfleet");
    std::fs::create_dir_all(d.join("images")).unwrap();
    run(&["ip", "-n", &s1.name, "link", "set", "lo", "up"]);
    let mut cmd = s1.exec(&[
        bin,
        "--state-dir",
        d.join("state").to_str().unwrap(),
        "serve",
    ]);
    cmd.arg("--images")
        .arg(d.join("images"))
        .arg(&spec_path)
        .stderr(std::fs::File::create(d.join("s1.log")).unwrap());
    let (_server, line) = spawn_until_line(&mut cmd);
    assert!(line.starts_with("listening"), "{line:?}");
    let log = || std::fs::read_to_string(d.join("s1.log")).unwrap_or_default();
    let get = |path: &str| {
        let url = format!("http://10.81.0.2:8080{path}");
        let o = s1
            .exec(&["curl", "-s", "--max-time", "5", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    let n1 = lease(&cli, "c0", d, "5", &[]).unwrap_or_else(|| panic!("n1: {}", log()));
    assert_eq!(n1["ip"], "10.81.0.20");
    let c1 = lease(&cli, "c1", d, "5", &[]).unwrap_or_else(|| panic!("c1: {}", log()));
    let c1_ip = c1["ip"].clone();
    assert_eq!(c1["lease"], "3600");

    // etcd goes away.
    let _ = etcd.kill();
    let _ = etcd.wait();
    std::thread::sleep(Duration::from_secs(3));
    let n1 =
        lease(&cli, "c0", d, "5", &[]).unwrap_or_else(|| panic!("n1 during the outage: {}", log()));
    assert_eq!(
        n1["ip"], "10.81.0.20",
        "reservations are answered throughout"
    );
    let again = lease(&cli, "c1", d, "5", &["-r", &c1_ip])
        .unwrap_or_else(|| panic!("c1's renewal during the outage: {}", log()));
    assert_eq!(again["ip"], c1_ip);
    let left: u64 = again["lease"].parse().unwrap();
    assert!(
        left < 3600 && left > 3000,
        "the time it has left, not a new expiry: {left}"
    );
    assert!(
        lease(&cli, "c2", d, "3", &[]).is_none(),
        "no new pool lease without etcd"
    );
    assert!(log().contains("etcd unreachable"), "{}", log());
    let metrics = get("/metrics");
    assert!(metrics.contains("bootfleet_store_reachable 0"), "{metrics}");
    assert!(
        !metrics.contains("bootfleet_dhcp_replies_withheld_total 0\n"),
        "{metrics}"
    );
    assert!(get("/").contains("id=\"store-away\""), "the page says so");

    // Back: new leases resume without a restart.
    let etcd = start_etcd(&hub, &d.join("etcd"));
    hub.children.push(etcd);
    let c2 = lease(&cli, "c2", d, "15", &[])
        .unwrap_or_else(|| panic!("c2 after etcd is back: {}", log()));
    assert_ne!(c2["ip"], c1_ip);
    assert!(log().contains("etcd reachable again"), "{}", log());
    assert!(get("/metrics").contains("bootfleet_store_reachable 1"));
    assert!(!get("/").contains("id=\"store-away\""));
    drop((s1, cli));
}

#[test]
fn an_address_declined_through_one_server_is_offered_by_neither_needs_root_and_etcd() {
    if !ready() {
        return;
    }
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut hub = Netns::new(&format!("bfsd-hub-{id}"));
    let h = hub.name.clone();
    run(&["ip", "-n", &h, "link", "set", "lo", "up"]);
    run(&["ip", "-n", &h, "link", "add", "br0", "type", "bridge"]);
    run(&["ip", "-n", &h, "addr", "add", "10.81.0.10/16", "dev", "br0"]);
    run(&["ip", "-n", &h, "link", "set", "br0", "up"]);
    let plug = |ns: &Netns, iface: &str, port: &str| {
        run(&[
            "ip", "link", "add", iface, "netns", &ns.name, "type", "veth", "peer", "name", port,
            "netns", &h,
        ]);
        run(&["ip", "-n", &h, "link", "set", port, "master", "br0", "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", iface, "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
    };
    let s1 = Netns::new(&format!("bfsd-s1-{id}"));
    let s2 = Netns::new(&format!("bfsd-s2-{id}"));
    let squatter = Netns::new(&format!("bfsd-q-{id}"));
    let cli = Netns::new(&format!("bfsd-c-{id}"));
    plug(&s1, "bfs", "hs1");
    plug(&s2, "bfs", "hs2");
    plug(&squatter, "bfs", "hq");
    run(&[
        "ip",
        "-n",
        &s1.name,
        "addr",
        "add",
        "10.81.0.2/16",
        "dev",
        "bfs",
    ]);
    run(&[
        "ip",
        "-n",
        &s2.name,
        "addr",
        "add",
        "10.81.0.3/16",
        "dev",
        "bfs",
    ]);
    // Something already answers at the pool's first address.
    run(&[
        "ip",
        "-n",
        &squatter.name,
        "addr",
        "add",
        "10.81.1.0/16",
        "dev",
        "bfs",
    ]);
    for i in 0..4 {
        plug(&cli, &format!("c{i}"), &format!("hc{i}"));
        run(&[
            "ip",
            "-n",
            &cli.name,
            "link",
            "set",
            &format!("c{i}"),
            "address",
            &format!("02:81:00:00:02:{i:02x}"),
        ]);
    }
    let etcd = start_etcd(&hub, &d.join("etcd"));
    hub.children.push(etcd);
    let bin = env!("CARGO_BIN_EXE_bootfleet");
    let mut servers = Vec::new();
    for (ns, addr, name) in [(&s1, "10.81.0.2", "s1"), (&s2, "10.81.0.3", "s2")] {
        let spec_path = d.join(format!("{name}.toml"));
        std::fs::write(&spec_path, spec(addr)).unwrap();
        let state = d.join(format!("state-{name}"));
        let mut cmd = ns.exec(&[bin, "--state-dir", state.to_str().unwrap(), "dhcp"]);
        cmd.arg(&spec_path)
            .stderr(std::fs::File::create(d.join(format!("{name}.log"))).unwrap());
        let (server, line) = spawn_until_line(&mut cmd);
        assert!(line.starts_with("listening"), "{line:?}");
        servers.push(server);
    }
    let logs = || {
        ["s1", "s2"]
            .iter()
            .map(|s| std::fs::read_to_string(d.join(format!("{s}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The first client checks its offer with an ARP ping (-a), finds the
    // squatter, and DECLINEs it to the server it chose.
    let first = lease(&cli, "c0", d, "10", &["-a"]).unwrap_or_else(|| panic!("{}", logs()));
    assert_ne!(first["ip"], "10.81.1.0", "{}", logs());
    assert!(logs().contains("client declined the address"), "{}", logs());
    // Neither server offers it to anyone after that.
    for i in 1..4 {
        let got =
            lease(&cli, &format!("c{i}"), d, "10", &[]).unwrap_or_else(|| panic!("{}", logs()));
        assert_ne!(got["ip"], "10.81.1.0", "client {i}: {}", logs());
    }
    // Neither server's log has an offer of it after the decline (the
    // lines start with RFC 3339 times, which sort as text).
    let all = logs();
    let declined_at = all
        .lines()
        .find(|l| l.contains("client declined the address"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let offered_after: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("outcome=\"offer\" ip=10.81.1.0 "))
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|t| t > declined_at.as_str())
        })
        .collect();
    assert!(offered_after.is_empty(), "{offered_after:?}");
    let o = hub
        .exec(&[
            bin,
            "--state-dir",
            d.join("state-x").to_str().unwrap(),
            "leases",
        ])
        .arg(d.join("s1.toml"))
        .output()
        .unwrap();
    let table = stdout(&o);
    let row = table
        .lines()
        .find(|l| l.starts_with("10.81.1.0 "))
        .unwrap_or_default();
    assert!(row.contains("declined"), "{table}");
    drop(servers);
    drop((s1, s2, squatter, cli));
}

#[test]
fn a_three_member_etcd_losing_one_member_under_load_keeps_the_server_serving_needs_root_and_etcd() {
    if !ready() {
        return;
    }
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hub = Netns::new(&format!("bfs3-hub-{id}"));
    let h = hub.name.clone();
    run(&["ip", "-n", &h, "link", "set", "lo", "up"]);
    run(&["ip", "-n", &h, "link", "add", "br0", "type", "bridge"]);
    for a in ["10.81.0.10/16", "10.81.0.11/16", "10.81.0.12/16"] {
        run(&["ip", "-n", &h, "addr", "add", a, "dev", "br0"]);
    }
    run(&["ip", "-n", &h, "link", "set", "br0", "up"]);
    let cluster = "m0=http://10.81.0.10:2380,m1=http://10.81.0.11:2380,m2=http://10.81.0.12:2380";
    let mut members = Vec::new();
    for m in 0..3 {
        let ip = format!("10.81.0.1{m}");
        let client = format!("http://{ip}:2379");
        let peer = format!("http://{ip}:2380");
        let child = hub
            .exec(&["etcd", "--name", &format!("m{m}"), "--data-dir"])
            .arg(d.join(format!("etcd{m}")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                cluster,
                "--initial-cluster-state",
                "new",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        members.push(Killed(child));
    }
    let healthy = (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        (0..3).all(|m| {
            hub.exec(&[
                "curl",
                "-sf",
                "--max-time",
                "1",
                &format!("http://10.81.0.1{m}:2379/health"),
            ])
            .output()
            .is_ok_and(|o| o.status.success())
        })
    });
    assert!(healthy, "the etcd cluster did not start");
    let s1 = Netns::new(&format!("bfs3-s1-{id}"));
    let p1 = Netns::new(&format!("bfs3-p1-{id}"));
    for (ns, port, addr) in [(&s1, "hs1", "10.81.0.2/16"), (&p1, "hp1", "10.81.0.51/16")] {
        run(&[
            "ip", "link", "add", "bfs", "netns", &ns.name, "type", "veth", "peer", "name", port,
            "netns", &h,
        ]);
        run(&["ip", "-n", &h, "link", "set", port, "master", "br0", "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", "bfs", "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        run(&["ip", "-n", &ns.name, "addr", "add", addr, "dev", "bfs"]);
    }
    let spec_path = d.join("s1.toml");
    std::fs::write(
        &spec_path,
        spec("10.81.0.2").replace(
            "endpoints = [\"http://10.81.0.10:2379\"]",
            "endpoints = [\"http://10.81.0.10:2379\", \"http://10.81.0.11:2379\", \"http://10.81.0.12:2379\"]",
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_bootfleet");
    let mut cmd = s1.exec(&[
        bin,
        "--state-dir",
        d.join("state").to_str().unwrap(),
        "dhcp",
    ]);
    cmd.arg(&spec_path)
        .stderr(std::fs::File::create(d.join("s1.log")).unwrap());
    let (_server, line) = spawn_until_line(&mut cmd);
    assert!(line.starts_with("listening"), "{line:?}");
    let load = p1
        .exec(&[
            "perfdhcp",
            "-4",
            "-l",
            "bfs",
            "-r",
            "100",
            "-p",
            "12",
            "-R",
            "500000000",
        ])
        .arg("10.81.0.2")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Four seconds into the load, one member dies.
    std::thread::sleep(Duration::from_secs(4));
    drop(members.remove(0));
    let out = String::from_utf8_lossy(&load.wait_with_output().unwrap().stdout).into_owned();
    // Sent DISCOVERs (first exchange) against ACKs (second's received).
    let mut sent = 0u64;
    let mut acks = 0u64;
    let mut exchange = 0;
    for l in out.lines() {
        if l.starts_with("***Statistics for:") {
            exchange += 1;
        }
        let n = |l: &str| {
            l.split_whitespace()
                .last()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if l.starts_with("sent packets:") && exchange == 1 {
            sent = n(l);
        }
        if l.starts_with("received packets:") && exchange == 2 {
            acks = n(l);
        }
    }
    let log = std::fs::read_to_string(d.join("s1.log")).unwrap_or_default();
    eprintln!("perfdhcp: {sent} DISCOVERs, {acks} ACKs with one of three etcd members killed");
    assert!(sent > 1000, "{out}");
    assert!(
        acks * 100 >= sent * 95,
        "service went on: {acks} of {sent}\n{out}\n{log}"
    );
    drop((s1, p1));
}
