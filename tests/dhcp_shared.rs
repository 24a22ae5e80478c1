//! Several bootfleet servers of one site on one bridge, sharing a real
//! etcd (Debian's etcd-server): real udhcpc clients broadcasting to all
//! and Kea's perfdhcp loading each, every reply captured on the bridge
//! with tcpdump. No address is ever acknowledged to two MACs, and what
//! the clients were told is what etcd holds, also after a server is
//! killed under load; with etcd away, what a server knows is still
//! answered. And the embedded store's SIGKILL under load loses no ACKed
//! lease. Needs root, busybox, iproute2, etcd, perfdhcp (kea-admin) and
//! tcpdump.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::time::Duration;

use crate::support::*;

mod grown;
mod site;
use site::{Killed, Site, acks, client_mac, perf_counts, perfdhcp};

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

/// The spec with the embedded store (no `[state]`).
fn embedded_spec(server: &str) -> String {
    let s = spec(server);
    s[..s.find("[state]").unwrap()].to_owned()
}

/// No address ACKed to two MACs in `acked`; each address's MACs.
fn one_mac_per_address(acked: &[(String, String)]) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut holders: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (ip, mac) in acked {
        holders.entry(ip).or_default().insert(mac);
    }
    let doubled: Vec<_> = holders.iter().filter(|(_, m)| m.len() > 1).collect();
    assert!(
        doubled.is_empty(),
        "addresses ACKed to two MACs: {doubled:?}"
    );
    holders
}

/// Every ACKed address is stored for one of the MACs it was ACKed to.
fn none_lost(holders: &BTreeMap<&str, BTreeSet<&str>>, stored: &[serde_json::Value]) {
    let kept: BTreeSet<(&str, &str)> = stored
        .iter()
        .filter_map(|l| Some((l["ip"].as_str()?, l["mac"].as_str()?)))
        .collect();
    let lost: Vec<_> = holders
        .iter()
        .filter(|(ip, macs)| !macs.iter().any(|m| kept.contains(&(**ip, *m))))
        .collect();
    assert!(lost.is_empty(), "ACKed but not stored: {lost:?}");
}

/// perfdhcp's drop lines, for the test's output.
fn drops(out: &str) -> String {
    out.lines()
        .filter(|l| {
            l.starts_with("drops:")
                || l.starts_with("sent packets")
                || l.starts_with("received packets")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn two_servers_sharing_etcd_never_give_one_address_to_two_macs_and_lose_no_acked_lease_when_one_is_killed_needs_root_and_etcd()
 {
    if !ready() {
        return;
    }
    let mut site = Site::new("bfsh", &["10.81.0.10/16"]);
    let s1 = site.host("s1", Some("10.81.0.2/16"));
    let s2 = site.host("s2", Some("10.81.0.3/16"));
    let p1 = site.host("p1", Some("10.81.0.51/16"));
    let p2 = site.host("p2", Some("10.81.0.52/16"));
    let cli = site.clients("c", CLIENTS, 0);
    let etcd = site.etcd();
    site.hub.children.push(etcd);
    let (tcpdump, capture) = site.capture();
    let servers: Vec<Running> = [(&s1, "10.81.0.2", "s1"), (&s2, "10.81.0.3", "s2")]
        .into_iter()
        .map(|(ns, addr, name)| site.bootfleet(ns, name, &["dhcp"], &spec(addr)))
        .collect();

    // Real clients, all at once: each DISCOVER reaches both servers.
    let clients = site.udhcpc_all(&cli, 0..CLIENTS);
    // And load on both servers at once, new clients every exchange.
    let loads = [
        perfdhcp(&p1, "10.81.0.2", 150, 8, 500_000_000),
        perfdhcp(&p2, "10.81.0.3", 150, 8, 500_000_000),
    ];
    for mut c in clients {
        c.wait().unwrap();
    }
    let loads: Vec<String> = loads
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
    let told: BTreeMap<String, String> = (0..CLIENTS)
        .map(|i| {
            let env = site
                .bound(&format!("c{i}"))
                .unwrap_or_else(|| panic!("client {i} got no lease"));
            (client_mac(0, i), env["ip"].clone())
        })
        .collect();
    let distinct: BTreeSet<&String> = told.values().collect();
    assert_eq!(distinct.len(), CLIENTS, "{told:?}");

    // Every ACK on the wire, from either server: one MAC per address.
    let acked = acks(&capture);
    assert!(acked.len() > CLIENTS + 500, "{} ACKs captured", acked.len());
    let holders = one_mac_per_address(&acked);

    // What etcd holds: each real client at the address it was told, and
    // every lease that was ACKed, whichever server ACKed it and whether it
    // stopped cleanly or was killed.
    let stored = site.leases("s1", "state-x");
    for (mac, ip) in &told {
        assert!(
            stored
                .iter()
                .any(|l| l["mac"] == mac.as_str() && l["ip"] == ip.as_str()),
            "{mac} {ip} is not in etcd"
        );
    }
    none_lost(&holders, &stored);
    // Each lease names the server that granted it: both did.
    let granting: BTreeSet<&str> = stored.iter().filter_map(|l| l["server"].as_str()).collect();
    assert_eq!(granting.len(), 2, "{granting:?}");
    let counters = site
        .log("s2")
        .lines()
        .find(|l| l.contains("counters="))
        .unwrap_or("(no counters logged)")
        .to_owned();
    eprintln!("server s2: {counters}");
    for (i, out) in loads.iter().enumerate() {
        eprintln!("perfdhcp {}: {}", i + 1, drops(out));
    }
    eprintln!(
        "{} ACKs captured for {} addresses; {} leases in etcd",
        acked.len(),
        holders.len(),
        stored.len()
    );
    drop((s1, s2, p1, p2, cli));
}

#[test]
fn three_serve_processes_keep_serving_when_one_is_killed_under_load_and_every_status_page_lists_every_machine_needs_root_and_etcd()
 {
    if !ready() {
        return;
    }
    const HALF: usize = CLIENTS / 2;
    let mut site = Site::new("bfs3s", &["10.81.0.10/16"]);
    let addrs = ["10.81.0.2", "10.81.0.3", "10.81.0.4"];
    let hosts: Vec<Netns> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| site.host(&format!("s{i}"), Some(&format!("{a}/16"))))
        .collect();
    let loaders: Vec<Netns> = (0..3)
        .map(|i| site.host(&format!("p{i}"), Some(&format!("10.81.0.5{i}/16"))))
        .collect();
    let cli = site.clients("c", CLIENTS, 3);
    let etcd = site.etcd();
    site.hub.children.push(etcd);
    let (tcpdump, capture) = site.capture();
    let serve = |i: usize| {
        site.bootfleet(
            &hosts[i],
            &format!("s{i}"),
            &[
                "serve",
                "--images",
                site.dir().join("images").to_str().unwrap(),
            ],
            &spec(addrs[i]),
        )
    };
    let mut servers: Vec<Option<Running>> = (0..3).map(|i| Some(serve(i))).collect();
    // A few thousand machines through all three servers, and real
    // clients; four seconds in, s0 is killed.
    let loads: Vec<Child> = (0..3)
        .map(|i| perfdhcp(&loaders[i], addrs[i], 100, 8, 3000))
        .collect();
    let early = site.udhcpc_all(&cli, 0..HALF);
    std::thread::sleep(Duration::from_secs(4));
    let mut s0 = servers[0].take().unwrap();
    run(&["kill", "-KILL", &s0.0.id().to_string()]);
    let _ = s0.0.wait();
    // Clients that come after the kill are served by the others.
    let late = site.udhcpc_all(&cli, HALF..CLIENTS);
    for mut c in early.into_iter().chain(late) {
        c.wait().unwrap();
    }
    let loads: Vec<String> = loads
        .into_iter()
        .map(|p| String::from_utf8_lossy(&p.wait_with_output().unwrap().stdout).into_owned())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(tcpdump);
    for i in 0..CLIENTS {
        assert!(
            site.bound(&format!("c{i}")).is_some(),
            "client {i} got no lease: {}",
            site.log("s1")
        );
    }
    // The survivors kept serving: their loads were answered after s0 died.
    for (i, out) in loads.iter().enumerate().skip(1) {
        let (sent, acks) = perf_counts(out);
        eprintln!("perfdhcp on s{i}: {}", drops(out));
        assert!(
            acks * 100 >= sent * 90,
            "s{i} went on serving: {acks} ACKs for {sent} DISCOVERs\n{out}"
        );
    }
    let acked = acks(&capture);
    let holders = one_mac_per_address(&acked);
    let stored = site.leases("s1", "state-x");
    none_lost(&holders, &stored);
    eprintln!(
        "{} ACKs captured for {} addresses; {} leases in etcd",
        acked.len(),
        holders.len(),
        stored.len()
    );
    // s0 comes back at its address; every server's API lists every real
    // client (each talked to some of the servers only).
    servers[0] = Some(serve(0));
    for (i, ns) in hosts.iter().enumerate() {
        let url = format!("http://{}:8080/api/v1/nodes", addrs[i]);
        let mut missing = Vec::new();
        for _ in 0..30 {
            let o = ns
                .exec(&["curl", "-sf", "--max-time", "10", &url])
                .output()
                .unwrap();
            let nodes: Vec<serde_json::Value> =
                serde_json::from_slice(&o.stdout).unwrap_or_default();
            let macs: BTreeSet<&str> = nodes.iter().filter_map(|n| n["mac"].as_str()).collect();
            missing = (0..CLIENTS)
                .map(|c| client_mac(3, c))
                .filter(|m| !macs.contains(m.as_str()))
                .collect();
            if missing.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(missing.is_empty(), "s{i}'s page lacks {missing:?}");
    }
    drop(servers);
    drop((hosts, loaders, cli));
}

#[test]
fn the_embedded_store_killed_under_load_keeps_every_lease_it_acked_needs_root() {
    if !ready() {
        return;
    }
    let site = Site::new("bfse", &["10.81.0.10/16"]);
    let s1 = site.host("s1", Some("10.81.0.2/16"));
    let p1 = site.host("p1", Some("10.81.0.51/16"));
    let (tcpdump, capture) = site.capture();
    let mut server = site.bootfleet(&s1, "s1", &["dhcp"], &embedded_spec("10.81.0.2"));
    let load = perfdhcp(&p1, "10.81.0.2", 400, 8, 500_000_000);
    std::thread::sleep(Duration::from_secs(4));
    run(&["kill", "-KILL", &server.0.id().to_string()]);
    let _ = server.0.wait();
    let out = String::from_utf8_lossy(&load.wait_with_output().unwrap().stdout).into_owned();
    std::thread::sleep(Duration::from_millis(500));
    drop(tcpdump);
    let acked = acks(&capture);
    assert!(
        acked.len() > 500,
        "{} ACKs before the kill\n{out}",
        acked.len()
    );
    let holders = one_mac_per_address(&acked);
    // The state directory as the killed server left it.
    let stored = site.leases("s1", "state-s1");
    none_lost(&holders, &stored);
    eprintln!(
        "{} ACKs on the wire before SIGKILL; {} leases in the store after",
        acked.len(),
        stored.len()
    );
    drop((s1, p1));
}

#[test]
fn with_etcd_away_known_leases_and_reservations_are_answered_new_ones_wait_and_all_resumes_needs_root_and_etcd()
 {
    if !ready() {
        return;
    }
    let site = Site::new("bfso", &["10.81.0.10/16"]);
    let s1 = site.host("s1", Some("10.81.0.2/16"));
    let p1 = site.host("p1", Some("10.81.0.51/16"));
    let cli = site.clients("c", 3, 1);
    let mut etcd = site.etcd();
    let (tcpdump, capture) = site.capture();
    // c0 is the spec's node n1 (a reservation); c1 and c2 take pool leases.
    let spec = spec("10.81.0.2")
        + &format!(
            "\n[[nodes]]\nname = \"n1\"\nmac = \"{}\"\nip = \"10.81.0.20\"\nroles = [\"etcd\", \"worker\"]\n",
            client_mac(1, 0)
        );
    let images = site.dir().join("images");
    let _server = site.bootfleet(
        &s1,
        "s1",
        &["serve", "--images", images.to_str().unwrap()],
        &spec,
    );
    let log = || site.log("s1");
    let get = |path: &str| {
        let url = format!("http://10.81.0.2:8080{path}");
        let o = s1
            .exec(&["curl", "-s", "--max-time", "5", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    let n1 = site
        .lease(&cli, "c0", "5", &[])
        .unwrap_or_else(|| panic!("n1: {}", log()));
    assert_eq!(n1["ip"], "10.81.0.20");
    let c1 = site
        .lease(&cli, "c1", "5", &[])
        .unwrap_or_else(|| panic!("c1: {}", log()));
    let c1_ip = c1["ip"].clone();
    assert_eq!(c1["lease"], "3600");
    // Load throughout the outage and after: new machines all the time.
    let load = perfdhcp(&p1, "10.81.0.2", 50, 40, 500_000_000);

    // etcd goes away, under that load.
    let _ = etcd.kill();
    let _ = etcd.wait();
    std::thread::sleep(Duration::from_secs(3));
    let n1 = site
        .lease(&cli, "c0", "5", &[])
        .unwrap_or_else(|| panic!("n1 during the outage: {}", log()));
    assert_eq!(
        n1["ip"], "10.81.0.20",
        "reservations are answered throughout"
    );
    let again = site
        .lease(&cli, "c1", "5", &["-r", &c1_ip])
        .unwrap_or_else(|| panic!("c1's renewal during the outage: {}", log()));
    assert_eq!(again["ip"], c1_ip);
    let left: u64 = again["lease"].parse().unwrap();
    assert!(
        left < 3600 && left > 3000,
        "the time it has left, not a new expiry: {left}"
    );
    assert!(
        site.lease(&cli, "c2", "3", &[]).is_none(),
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
    let _etcd = Killed(site.etcd());
    let c2 = site
        .lease(&cli, "c2", "15", &[])
        .unwrap_or_else(|| panic!("c2 after etcd is back: {}", log()));
    assert_ne!(c2["ip"], c1_ip);
    assert!(log().contains("etcd reachable again"), "{}", log());
    assert!(get("/metrics").contains("bootfleet_store_reachable 1"));
    assert!(!get("/").contains("id=\"store-away\""));
    // Under the load, before, during and after the outage: no address
    // was ever ACKed to two MACs, and ACKs resumed once etcd was back.
    let out = String::from_utf8_lossy(&load.wait_with_output().unwrap().stdout).into_owned();
    std::thread::sleep(Duration::from_millis(500));
    drop(tcpdump);
    let acked = acks(&capture);
    one_mac_per_address(&acked);
    let (sent, got) = perf_counts(&out);
    eprintln!("perfdhcp through the outage: {}", drops(&out));
    assert!(
        got > 0 && got < sent,
        "some ACKed, some withheld: {got} of {sent}"
    );
    drop((s1, p1, cli));
}

#[test]
fn an_address_declined_through_one_server_is_offered_by_neither_needs_root_and_etcd() {
    if !ready() {
        return;
    }
    let mut site = Site::new("bfsd", &["10.81.0.10/16"]);
    let s1 = site.host("s1", Some("10.81.0.2/16"));
    let s2 = site.host("s2", Some("10.81.0.3/16"));
    // Something already answers at the pool's first address (servers
    // sharing a pool search it from random points, so the clients ask for
    // that address by name).
    let squatter = site.host("q", Some("10.81.1.0/16"));
    let cli = site.clients("c", 4, 2);
    let etcd = site.etcd();
    site.hub.children.push(etcd);
    let servers: Vec<Running> = [(&s1, "10.81.0.2", "s1"), (&s2, "10.81.0.3", "s2")]
        .into_iter()
        .map(|(ns, addr, name)| site.bootfleet(ns, name, &["dhcp"], &spec(addr)))
        .collect();
    let logs = || format!("{}\n{}", site.log("s1"), site.log("s2"));
    // The first client asks for it, checks its offer with an ARP ping
    // (-a), finds the squatter, and DECLINEs it to the server it chose.
    let first = site
        .lease(&cli, "c0", "10", &["-a", "-r", "10.81.1.0"])
        .unwrap_or_else(|| panic!("{}", logs()));
    assert_ne!(first["ip"], "10.81.1.0", "{}", logs());
    assert!(logs().contains("client declined the address"), "{}", logs());
    // Neither server offers it to anyone after that, asked or not.
    for i in 1..4 {
        let got = site
            .lease(&cli, &format!("c{i}"), "10", &["-r", "10.81.1.0"])
            .unwrap_or_else(|| panic!("{}", logs()));
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
    let o = site
        .hub
        .exec(&[env!("CARGO_BIN_EXE_bootfleet"), "--state-dir"])
        .arg(site.dir().join("state-x"))
        .arg("leases")
        .arg(site.dir().join("s1.toml"))
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
    let site = Site::new("bfs3", &["10.81.0.10/16", "10.81.0.11/16", "10.81.0.12/16"]);
    let cluster = "m0=http://10.81.0.10:2380,m1=http://10.81.0.11:2380,m2=http://10.81.0.12:2380";
    let urls: Vec<String> = (0..3)
        .map(|m| format!("http://10.81.0.1{m}:2379"))
        .collect();
    let mut members: Vec<Killed> = (0..3)
        .map(|m| {
            let peer = format!("http://10.81.0.1{m}:2380");
            let child = crate::support::etcd_member::command(
                &["ip", "netns", "exec", &site.hub.name],
                &format!("m{m}"),
                &site.dir().join(format!("etcd{m}")),
                &urls[m],
                &peer,
                cluster,
            )
            .spawn()
            .unwrap();
            Killed(child)
        })
        .collect();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    assert!(
        site.healthy(&url_refs, 150),
        "the etcd cluster did not start"
    );
    let s1 = site.host("s1", Some("10.81.0.2/16"));
    let p1 = site.host("p1", Some("10.81.0.51/16"));
    let spec = spec("10.81.0.2").replace(
        "endpoints = [\"http://10.81.0.10:2379\"]",
        "endpoints = [\"http://10.81.0.10:2379\", \"http://10.81.0.11:2379\", \"http://10.81.0.12:2379\"]",
    );
    let _server = site.bootfleet(&s1, "s1", &["dhcp"], &spec);
    let load = perfdhcp(&p1, "10.81.0.2", 100, 12, 500_000_000);
    // Four seconds into the load, one member dies.
    std::thread::sleep(Duration::from_secs(4));
    drop(members.remove(0));
    let out = String::from_utf8_lossy(&load.wait_with_output().unwrap().stdout).into_owned();
    let (sent, acks) = perf_counts(&out);
    eprintln!("perfdhcp: {sent} DISCOVERs, {acks} ACKs with one of three etcd members killed");
    assert!(sent > 1000, "{out}");
    assert!(
        acks * 100 >= sent * 95,
        "service went on: {acks} of {sent}\n{out}\n{}",
        site.log("s1")
    );
    drop((s1, p1));
}

/// Two `serve` processes on one etcd, each with a leg in a segment of its
/// own (a: 10.83.0.0/24 on s1, b: 10.84.0.0/24 on s2), both on the hub's
/// segment and both serving a relayed rack (10.82.0.0/24): a client on
/// each leg gets its leg's pool from its server; then a relay each
/// (perfdhcp with a giaddr in the rack) loads both at once until the
/// rack's pool runs out: every ACK on the wire gives each rack address to
/// one MAC only, every ACKed lease is in etcd, and each lease is in the
/// segment its address names.
#[test]
fn two_serve_processes_on_one_etcd_each_with_a_leg_and_sharing_a_relayed_segment_never_give_one_address_to_two_macs_needs_root_and_etcd()
 {
    if !ready() {
        return;
    }
    let mut site = Site::new("bfsg", &["10.81.0.10/16"]);
    let s1 = site.host("s1", Some("10.81.0.2/16"));
    let s2 = site.host("s2", Some("10.81.0.3/16"));
    // The relays: each has its giaddr in the rack, reached through the hub.
    let p1 = site.host("p1", Some("10.81.0.51/16"));
    let p2 = site.host("p2", Some("10.81.0.52/16"));
    for (p, giaddr, via) in [
        (&p1, "10.82.0.254", "10.81.0.51"),
        (&p2, "10.82.0.253", "10.81.0.52"),
    ] {
        run(&[
            "ip",
            "-n",
            &p.name,
            "addr",
            "add",
            &format!("{giaddr}/32"),
            "dev",
            "bfs",
        ]);
        for s in [&s1, &s2] {
            run(&[
                "ip",
                "-n",
                &s.name,
                "route",
                "add",
                &format!("{giaddr}/32"),
                "via",
                via,
            ]);
        }
    }
    let etcd = site.etcd();
    site.hub.children.push(etcd);
    let (tcpdump, capture) = site.capture();
    // Each server's leg: a segment of its own, a client namespace on it.
    let legs = [(&s1, "a", "83"), (&s2, "b", "84")].map(|(srv, leg, net)| {
        let client = Netns::new(&format!("{}-c{leg}", srv.name));
        let (mine, theirs) = (format!("l{leg}"), format!("c{leg}0"));
        run(&["ip", "link", "add", &mine, "netns", &srv.name, "type", "veth", "peer", "name", &theirs, "netns", &client.name]);
        run(&["ip", "-n", &srv.name, "addr", "add", &format!("10.{net}.0.1/24"), "dev", &mine]);
        run(&["ip", "-n", &srv.name, "link", "set", &mine, "up"]);
        run(&["ip", "-n", &client.name, "link", "set", &theirs, "up"]);
        let segment = format!(
            "\n[[segments]]\nname = \"{leg}\"\nsubnet = \"10.{net}.0.0/24\"\ninterface = \"{mine}\"\nserver = \"10.{net}.0.1\"\ndynamic_range = [\"10.{net}.0.100\", \"10.{net}.0.150\"]\n"
        );
        (client, theirs, segment)
    });
    let rack = "\n[[segments]]\nname = \"rack\"\nsubnet = \"10.82.0.0/24\"\nrelay = true\ngateway = \"10.82.0.1\"\ndynamic_range = [\"10.82.0.100\", \"10.82.0.250\"]\n";
    let images = site.dir().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let _servers: Vec<Running> = [
        (&s1, "10.81.0.2", "s1", &legs[0].2),
        (&s2, "10.81.0.3", "s2", &legs[1].2),
    ]
    .into_iter()
    .map(|(ns, addr, name, leg)| {
        site.bootfleet(
            ns,
            name,
            &["serve", "--images", images.to_str().unwrap()],
            &(spec(addr) + leg + rack),
        )
    })
    .collect();
    // A client on each leg, answered from its leg's pool by its server.
    for ((client, iface, _), (net, server)) in
        legs.iter().zip([("83", "10.83.0.1"), ("84", "10.84.0.1")])
    {
        let env = site.lease(client, iface, "5", &[]).unwrap_or_else(|| {
            panic!("no lease on 10.{net}: {}", site.log("s1") + &site.log("s2"))
        });
        assert!(env["ip"].starts_with(&format!("10.{net}.0.1")), "{env:?}");
        assert_eq!(
            env.get("serverid").map(String::as_str),
            Some(server),
            "{env:?}"
        );
    }
    let relay = |ns: &Netns, giaddr: &str, server: &str, base: &str| {
        ns.exec(&["perfdhcp", "-4", "-l", giaddr, "-b", &format!("mac={base}")])
            .args(["-r", "60", "-p", "5", "-R", "100000", server])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let loads = [
        relay(&p1, "10.82.0.254", "10.81.0.2", "00:82:01:02:03:04"),
        relay(&p2, "10.82.0.253", "10.81.0.3", "00:82:02:02:03:04"),
    ];
    let outs: Vec<String> = loads
        .into_iter()
        .map(|p| String::from_utf8_lossy(&p.wait_with_output().unwrap().stdout).into_owned())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(tcpdump);
    let acked: Vec<(String, String)> = acks(&capture)
        .into_iter()
        .filter(|(ip, _)| ip.starts_with("10.82.0."))
        .collect();
    let (a1, a2) = (perf_counts(&outs[0]).1, perf_counts(&outs[1]).1);
    eprintln!("relay 1: {}\nrelay 2: {}", drops(&outs[0]), drops(&outs[1]));
    assert!(a1 > 20 && a2 > 20, "both relays served: {a1} and {a2} ACKs");
    // The pool's 151 addresses ran out: the servers competed for them.
    let holders = one_mac_per_address(&acked);
    assert!(
        holders.len() > 140,
        "{} rack addresses ACKed",
        holders.len()
    );
    let stored = site.leases("s1", "state-x");
    none_lost(&holders, &stored);
    for l in stored
        .iter()
        .filter(|l| l["ip"].as_str().is_some_and(|ip| ip.starts_with("10.82.")))
    {
        assert_eq!(l["segment"], "rack", "{l}");
    }
    // Both servers granted rack leases.
    let granting: BTreeSet<&str> = stored
        .iter()
        .filter(|l| l["segment"] == "rack")
        .filter_map(|l| l["server"].as_str())
        .collect();
    assert_eq!(granting.len(), 2, "{granting:?}");
}
