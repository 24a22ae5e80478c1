//! A site that has grown past what one etcd answer can carry: 100,000
//! leases and 10,000 enrolled machines in a real etcd (seeded through the
//! store's own code over a veth of the test's), then servers that start
//! on it, list it, share it under perfdhcp load with every ACK captured,
//! and one killed and restarted under load.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bootfleet::spec::Mac;
use bootfleet::store::{Enrolled, Lease, Op};

use super::site::{Site, acks, perf_counts, perfdhcp};
use super::{none_lost, one_mac_per_address, ready};
use crate::support::*;

const LEASES: u32 = 100_000;
const MACHINES: u32 = 10_000;

/// The shared-site spec over a /14, whose pool holds 131,071 addresses.
fn spec(server: &str) -> String {
    super::spec(server)
        .replace("subnet = \"10.81.0.0/16\"", "subnet = \"10.80.0.0/14\"")
        .replace(
            "dynamic_range = [\"10.81.1.0\", \"10.81.60.255\"]",
            "dynamic_range = [\"10.82.0.0\", \"10.83.255.254\"]",
        )
}

/// The leases the site holds, read from etcd by `bootfleet leases`, and
/// how long that took.
fn listed(site: &Site) -> (Vec<serde_json::Value>, Duration) {
    let t = Instant::now();
    let leases = site.leases("s1", "state-list");
    (leases, t.elapsed())
}

#[test]
fn a_site_of_100000_leases_on_etcd_starts_lists_shares_and_restarts_servers_under_load_needs_root_and_etcd()
 {
    if !ready() {
        return;
    }
    let mut site = Site::new("bfgr", &["10.81.0.10/14"]);
    let s1 = site.host("s1", Some("10.81.0.2/14"));
    let s2 = site.host("s2", Some("10.81.0.3/14"));
    let p1 = site.host("p1", Some("10.81.0.51/14"));
    let p2 = site.host("p2", Some("10.81.0.52/14"));
    // etcd also listens on a veth to this test's own namespace, so that
    // the test can seed the site through the store's own code.
    let veth = format!("bfgr{}", std::process::id() % 100_000);
    run(&[
        "ip",
        "link",
        "add",
        &veth,
        "type",
        "veth",
        "peer",
        "name",
        "seed",
        "netns",
        &site.hub.name,
    ]);
    run(&["ip", "addr", "add", "10.89.0.1/30", "dev", &veth]);
    run(&["ip", "link", "set", &veth, "up"]);
    run(&[
        "ip",
        "-n",
        &site.hub.name,
        "addr",
        "add",
        "10.89.0.2/30",
        "dev",
        "seed",
    ]);
    run(&["ip", "-n", &site.hub.name, "link", "set", "seed", "up"]);
    let etcd = etcd_member::command(
        &["ip", "netns", "exec", &site.hub.name],
        "m",
        &site.dir().join("etcd"),
        "http://10.81.0.10:2379,http://10.89.0.2:2379",
        "http://10.81.0.10:2380",
        "m=http://10.81.0.10:2380",
    )
    .spawn()
    .unwrap();
    site.hub.children.push(etcd);
    assert!(
        site.healthy(&["http://10.81.0.10:2379"], 100),
        "etcd did not start"
    );

    // The site has grown: 100,000 leases and 10,000 enrolled machines.
    let seeding = spec("10.81.0.2").replace("10.81.0.10:2379", "10.89.0.2:2379");
    std::fs::write(site.dir().join("seed.toml"), &seeding).unwrap();
    let seeded = bootfleet::spec::load(&site.dir().join("seed.toml"))
        .unwrap()
        .spec;
    let store = bootfleet::store::open(&seeded.state, site.dir()).unwrap();
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    let t = Instant::now();
    let ops: Vec<Op> = (0..LEASES)
        .map(|i| {
            let n = i.to_be_bytes();
            Op::Put(Lease {
                ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 82, 0, 0)) + i),
                mac: Mac([0x02, 0x5e, n[0], n[1], n[2], n[3]]),
                expires,
            })
        })
        .collect();
    for chunk in ops.chunks(4096) {
        store.leases.apply(chunk).unwrap();
    }
    for i in 0..MACHINES {
        let n = i.to_be_bytes();
        store
            .machines
            .enrol(&Enrolled {
                name: format!("seed-{i}"),
                mac: Mac([0x02, 0xe1, n[0], n[1], n[2], n[3]]),
                ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 81, 100, 0)) + i),
                at: 1,
            })
            .unwrap();
    }
    drop(store);
    eprintln!(
        "seeded {LEASES} leases and {MACHINES} machines in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // A server starts on it, and the site is listed whole.
    let t = Instant::now();
    let mut first = site.bootfleet(&s1, "s1", &["dhcp"], &spec("10.81.0.2"));
    eprintln!(
        "a server started on the grown site: listening after {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let (leases, took) = listed(&site);
    eprintln!(
        "`bootfleet leases` listed {} in {:.2} s",
        leases.len(),
        took.as_secs_f64()
    );
    assert!(
        leases.len() >= LEASES as usize,
        "the site holds {LEASES} leases: {} listed",
        leases.len()
    );

    // A second server joins the grown site, and both serve under load
    // while every ACK is captured.
    let t = Instant::now();
    let second = site.bootfleet(&s2, "s2", &["dhcp"], &spec("10.81.0.3"));
    eprintln!(
        "a second server joined the site: listening after {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let (tcpdump, capture) = site.capture();
    let load1 = perfdhcp(&p1, "10.81.0.2", 300, 8, 500_000_000);
    let load2 = perfdhcp(&p2, "10.81.0.3", 300, 14, 500_000_000);
    let output = |p: std::process::Child| {
        String::from_utf8_lossy(&p.wait_with_output().unwrap().stdout).into_owned()
    };
    // s1 is killed under load and started again on the whole site: it must
    // be back, answering, while s2's load goes on.
    std::thread::sleep(Duration::from_secs(2));
    run(&["kill", "-KILL", &first.0.id().to_string()]);
    let _ = first.0.wait();
    let t = Instant::now();
    let restarted = site.bootfleet(&s1, "s1", &["dhcp"], &spec("10.81.0.2"));
    let back = t.elapsed();
    eprintln!(
        "s1 restarted under load: listening after {:.2} s",
        back.as_secs_f64()
    );
    assert!(
        back < Duration::from_secs(60),
        "a restarted server was not back within a minute: {back:?}"
    );
    // Once p1's load (sent partly to the dead server) is over, new clients
    // of s1 are answered while s2's load goes on.
    let loads = vec![output(load1)];
    let after = output(perfdhcp(&p1, "10.81.0.2", 200, 3, 500_000_000));
    let (_, answered) = perf_counts(&after);
    assert!(
        answered > 0,
        "the restarted server answers new clients: {after}"
    );
    let loads: Vec<String> = loads.into_iter().chain([output(load2), after]).collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(tcpdump);
    drop((restarted, second));

    let acked = acks(&capture);
    assert!(acked.len() > 1000, "{} ACKs captured", acked.len());
    let holders = one_mac_per_address(&acked);
    let (stored, took) = listed(&site);
    none_lost(&holders, &stored);
    for (i, out) in loads.iter().enumerate() {
        let (sent, acks) = perf_counts(out);
        eprintln!("load {}: {acks} of {sent} ACKed", i + 1);
    }
    eprintln!(
        "{} ACKs captured under load, one MAC per address; {} leases listed in {:.2} s",
        acked.len(),
        stored.len(),
        took.as_secs_f64()
    );
    drop((s1, s2, p1, p2));
}
