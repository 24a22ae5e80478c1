//! A site of several segments in network namespaces: the server's own
//! segment (a bridge), two racks behind a router running ISC's `dhcrelay`,
//! and a rack on a second interface of the server. Real clients in each
//! rack (busybox udhcpc, ISC dhclient, dhcpcd) get addresses from their
//! own rack's pool; a node plugged into the wrong rack gets nothing and
//! the API says where it asked from; option 118 and option 82's link
//! selection steer a request to the subnet they name; perfdhcp loads two
//! relayed racks at once. Needs root, busybox, iproute2, isc-dhcp-relay,
//! isc-dhcp-client, dhcpcd, curl and perfdhcp.

use std::path::Path;
use std::process::Stdio;

use crate::dhcp::{isc_or_dhcpcd_on, ready, udhcpc_on, udhcpc_once};
use crate::support::*;

const SPEC: &str = r#"[cluster]
name = "seg"

[network]
interface = "br0"
subnet = "10.90.0.0/24"
server = "10.90.0.2"
dynamic_range = ["10.90.0.100", "10.90.0.150"]
router_advertisements = false

[[segments]]
name = "rack1"
subnet = "10.91.0.0/24"
relay = true
gateway = "10.91.0.1"
dynamic_range = ["10.91.0.100", "10.91.0.150"]

[[segments]]
name = "rack2"
subnet = "10.92.0.0/24"
relay = true
gateway = "10.92.0.1"
dynamic_range = ["10.92.0.100", "10.92.0.150"]

[[segments]]
name = "rack3"
subnet = "10.93.0.0/24"
interface = "IFACE3"
server = "10.93.0.2"
dynamic_range = ["10.93.0.100", "10.93.0.150"]
router_advertisements = false

[boot]
kernel = "k/vmlinuz"
initrd = "k/initrd.gz"

[[nodes]]
name = "n1"
mac = "52:54:00:91:00:10"
ip = "10.91.0.10"
roles = ["etcd", "worker"]

[[nodes]]
name = "n3"
mac = "52:54:00:93:00:10"
ip = "10.93.0.10"
roles = ["worker"]
"#;

/// The server's segment and rack1 behind a relay, booting the test OS.
const VM_SPEC: &str = r#"[cluster]
name = "segvm"

[network]
interface = "br0"
subnet = "10.90.0.0/24"
server = "10.90.0.2"

[[segments]]
name = "rack1"
subnet = "10.91.0.0/24"
relay = true
gateway = "10.91.0.1"

[boot]
kernel = "testos/vmlinuz"
initrd = "testos/initrd.img"
console = ["ttyS0"]

[[nodes]]
name = "n1"
mac = "52:54:00:91:00:10"
ip = "10.91.0.10"
roles = ["etcd", "worker"]
"#;

/// The namespaces and their links.
struct Site {
    srv: Netns,
    rtr: Netns,
    c1: Netns,
    c2: Netns,
    c3: Netns,
    perf: Netns,
    /// Interface names, per namespace.
    if3: String,
    c1_if: String,
    c2_if: String,
    c3_if: String,
    perf_if: String,
}

fn ip(args: &[&str]) {
    let mut a = vec!["ip"];
    a.extend_from_slice(args);
    run(&a);
}

impl Site {
    fn new() -> Site {
        let id = std::process::id() % 100_000;
        let n = |t: &str| format!("bfg-{t}-{id}");
        let s = Site {
            srv: Netns::bridged(&n("srv"), "10.90.0.2/24"),
            rtr: Netns::new(&n("rtr")),
            c1: Netns::new(&n("c1")),
            c2: Netns::new(&n("c2")),
            c3: Netns::new(&n("c3")),
            perf: Netns::new(&n("pf")),
            if3: format!("gs3{id}"),
            c1_if: format!("gc1{id}"),
            c2_if: format!("gc2{id}"),
            c3_if: format!("gc3{id}"),
            perf_if: format!("gpf{id}"),
        };
        let (srv, rtr) = (s.srv.name.as_str(), s.rtr.name.as_str());
        let (sa, ra, r1, r2, sp) = (
            format!("gsa{id}"),
            format!("gra{id}"),
            format!("gr1{id}"),
            format!("gr2{id}"),
            format!("gsp{id}"),
        );
        // The server's segment: a bridge with the router and perfdhcp on it.
        ip(&[
            "link", "add", &sa, "netns", srv, "type", "veth", "peer", "name", &ra, "netns", rtr,
        ]);
        ip(&[
            "link",
            "add",
            &sp,
            "netns",
            srv,
            "type",
            "veth",
            "peer",
            "name",
            &s.perf_if,
            "netns",
            &s.perf.name,
        ]);
        for i in [&sa, &sp] {
            ip(&["-n", srv, "link", "set", i, "master", "br0", "up"]);
        }
        // Two racks behind the router.
        ip(&[
            "link", "add", &r1, "netns", rtr, "type", "veth", "peer", "name", &s.c1_if, "netns",
            &s.c1.name,
        ]);
        ip(&[
            "link", "add", &r2, "netns", rtr, "type", "veth", "peer", "name", &s.c2_if, "netns",
            &s.c2.name,
        ]);
        for (dev, cidr) in [
            (&ra, "10.90.0.1/24"),
            (&r1, "10.91.0.1/24"),
            (&r2, "10.92.0.1/24"),
        ] {
            ip(&["-n", rtr, "addr", "add", cidr, "dev", dev]);
            ip(&["-n", rtr, "link", "set", dev, "up"]);
        }
        run(&[
            "ip",
            "netns",
            "exec",
            rtr,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        ip(&[
            "-n",
            srv,
            "route",
            "add",
            "10.91.0.0/24",
            "via",
            "10.90.0.1",
        ]);
        ip(&[
            "-n",
            srv,
            "route",
            "add",
            "10.92.0.0/24",
            "via",
            "10.90.0.1",
        ]);
        // A rack on a second interface of the server.
        ip(&[
            "link", "add", &s.if3, "netns", srv, "type", "veth", "peer", "name", &s.c3_if, "netns",
            &s.c3.name,
        ]);
        ip(&["-n", srv, "addr", "add", "10.93.0.2/24", "dev", &s.if3]);
        ip(&["-n", srv, "link", "set", &s.if3, "up"]);
        for (ns, dev) in [(&s.c1, &s.c1_if), (&s.c2, &s.c2_if), (&s.c3, &s.c3_if)] {
            ip(&["-n", &ns.name, "link", "set", dev, "up"]);
            ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        }
        // perfdhcp relays for both racks from the server's segment: their
        // giaddrs are its own, reached through it.
        let pf = s.perf.name.as_str();
        for cidr in ["10.90.0.3/24", "10.91.0.254/32", "10.92.0.254/32"] {
            ip(&["-n", pf, "addr", "add", cidr, "dev", &s.perf_if]);
        }
        ip(&["-n", pf, "link", "set", &s.perf_if, "up"]);
        ip(&["-n", pf, "link", "set", "lo", "up"]);
        for host in ["10.91.0.254/32", "10.92.0.254/32"] {
            ip(&["-n", srv, "route", "add", host, "via", "10.90.0.3"]);
        }
        s
    }

    /// ISC's relay on the router, adding option 82 (`-a`), forwarding both
    /// racks to the server.
    fn relay(&mut self, dir: &Path) {
        let id = std::process::id() % 100_000;
        let (up, r1, r2) = (format!("gra{id}"), format!("gr1{id}"), format!("gr2{id}"));
        dhcrelay(&mut self.rtr, &up, &[&r1, &r2], &dir.join("relay.log"));
    }

    fn set_mac(ns: &Netns, dev: &str, mac: &str) {
        ip(&["-n", &ns.name, "link", "set", dev, "address", mac]);
    }
}

/// ISC's relay in `ns` (adding option 82, `-a`, as a switch would),
/// forwarding the `down` interfaces' requests to the server through `up`;
/// its log at `log`. Returns once it has opened its interfaces.
fn dhcrelay(ns: &mut Netns, up: &str, down: &[&str], log: &Path) {
    let mut cmd = ns.exec(&["dhcrelay", "-4", "-d", "-a", "-iu", up]);
    for d in down {
        cmd.args(["-id", d]);
    }
    let child = cmd
        .arg("10.90.0.2")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    ns.children.push(child);
    assert!(
        wait_for(log, "Sending on", std::time::Duration::from_secs(10)),
        "dhcrelay did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The API's row of `key`, from inside the server's namespace.
fn api(site: &Site, key: &str) -> serde_json::Value {
    let o = site
        .srv
        .exec(&[
            "curl",
            "-s",
            "--max-time",
            "10",
            &format!("http://10.90.0.2:8080/api/v1/nodes/{key}"),
        ])
        .output()
        .unwrap();
    let body = stdout(&o);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn in_pool(ip: Option<&String>, net: u8) -> bool {
    let Some(ip) = ip.and_then(|i| i.parse::<std::net::Ipv4Addr>().ok()) else {
        return false;
    };
    (std::net::Ipv4Addr::new(10, net, 0, 100)..=std::net::Ipv4Addr::new(10, net, 0, 150))
        .contains(&ip)
}

#[test]
fn each_rack_gets_addresses_from_its_own_pool_directly_and_through_dhcrelay_needs_root() {
    if !ready()
        || !have("dhcrelay")
        || !have("dhclient")
        || !have("dhcpcd")
        || !have("curl")
        || !have("perfdhcp")
    {
        cannot_run(
            "also needs dhcrelay (isc-dhcp-relay), dhclient, dhcpcd, curl and perfdhcp (kea-admin)",
        );
        return;
    }
    let mut site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("spec.toml"), SPEC.replace("IFACE3", &site.if3)).unwrap();
    std::fs::create_dir_all(d.join("images")).unwrap();
    let (_server, log_path) = serve_in(&site.srv, d);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    site.relay(d);

    // Every client in every rack: busybox udhcpc, ISC dhclient and dhcpcd
    // each get an address of their own rack's pool, its gateway, and
    // bootfleet's address as that rack reaches it.
    let racks = [
        (&site.c1, &site.c1_if, 91, Some("10.91.0.1"), "10.90.0.2"),
        (&site.c2, &site.c2_if, 92, Some("10.92.0.1"), "10.90.0.2"),
        (&site.c3, &site.c3_if, 93, None, "10.93.0.2"),
    ];
    for (ns, dev, net, router, server) in racks {
        let env = udhcpc_on(&ns.name, dev, d, &[]);
        assert!(
            in_pool(env.get("ip"), net),
            "udhcpc in 10.{net}: {env:?}\n{}",
            log()
        );
        assert_eq!(env.get("router").map(String::as_str), router, "{env:?}");
        assert_eq!(
            env.get("serverid").map(String::as_str),
            Some(server),
            "{env:?}"
        );
        for client in ["dhclient", "dhcpcd"] {
            let env = isc_or_dhcpcd_on(&ns.name, dev, d, client, &[]);
            assert!(
                in_pool(env.get("new_ip_address"), net),
                "{client} in 10.{net}: {env:?}\n{}",
                log()
            );
            assert_eq!(
                env.get("new_dhcp_server_identifier").map(String::as_str),
                Some(server),
                "{client}: {env:?}"
            );
            assert_eq!(
                env.get("new_routers").map(String::as_str),
                router,
                "{client}: {env:?}"
            );
        }
    }

    // A node gets its reservation in its own rack, through the relay.
    Site::set_mac(&site.c1, &site.c1_if, "52:54:00:91:00:10");
    let env = udhcpc_on(&site.c1.name, &site.c1_if, d, &[]);
    assert_eq!(
        env.get("ip").map(String::as_str),
        Some("10.91.0.10"),
        "{env:?}"
    );
    // Plugged into rack2 it gets nothing, and the API says why.
    Site::set_mac(&site.c2, &site.c2_if, "52:54:00:91:00:10");
    let o = udhcpc_once(&site.c2.name, &site.c2_if, "2", "/bin/true", &[]);
    assert!(!o.status.success(), "n1 got a lease in rack2");
    let n1 = api(&site, "n1");
    let failure = n1["failure"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        failure.contains(
            "asked from segment rack2 (relay 10.92.0.1); the spec puts it in rack1 (10.91.0.0/24)"
        ),
        "{n1:#}"
    );
    assert!(log().contains("wrong_segment"), "{}", log());
    Site::set_mac(&site.c2, &site.c2_if, "02:00:00:92:00:99");

    // Option 118 from a client in rack2 names rack1's subnet.
    let env = udhcpc_on(&site.c2.name, &site.c2_if, d, &["-x", "0x76:0a5b0000"]);
    assert!(in_pool(env.get("ip"), 91), "option 118: {env:?}");

    // TFTP and HTTP answer at every server address: the direct rack's,
    // and across the router.
    let healthz = |ns: &Netns, url: &str| {
        stdout(
            &ns.exec(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
                url,
            ])
            .output()
            .unwrap(),
        )
    };
    ip(&[
        "-n",
        &site.c3.name,
        "addr",
        "add",
        "10.93.0.50/24",
        "dev",
        &site.c3_if,
    ]);
    assert_eq!(healthz(&site.c3, "http://10.93.0.2:8080/healthz"), "200");
    ip(&[
        "-n",
        &site.c1.name,
        "addr",
        "add",
        "10.91.0.50/24",
        "dev",
        &site.c1_if,
    ]);
    ip(&[
        "-n",
        &site.c1.name,
        "route",
        "add",
        "default",
        "via",
        "10.91.0.1",
    ]);
    assert_eq!(healthz(&site.c1, "http://10.90.0.2:8080/healthz"), "200");
    // TFTP too: the rendered boot script from the direct rack's address.
    let o = site
        .c3
        .exec(&[
            "curl",
            "-s",
            "--max-time",
            "10",
            "tftp://10.93.0.2/boot.ipxe",
        ])
        .output()
        .unwrap();
    assert!(
        stdout(&o).starts_with("#!ipxe"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // `bootfleet nodes` names each machine's segment.
    let o = site
        .srv
        .exec(&[
            env!("CARGO_BIN_EXE_bootfleet"),
            "nodes",
            d.join("spec.toml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let table = stdout(&o);
    assert!(
        table.lines().next().is_some_and(|h| h.contains("SEGMENT")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("n1 ") && l.contains(" rack1 ")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("n3 ") && l.contains(" rack3 ")),
        "{table}"
    );

    // perfdhcp as two relays at once, one giaddr in rack1 and one in
    // rack2: every exchange of both completes, each address from the
    // pool of its relay's rack.
    // Each with clients of its own (MACs from its own base).
    let perf = |giaddr: &str, base: &str, n: &str, extra: &[&str]| {
        site.perf
            .exec(&["perfdhcp", "-4", "-l", giaddr, "-R", n, "-r", "50", "-n", n])
            .args(["-b", &format!("mac={base}")])
            .args(["-W", "2000000", "-d", "3"])
            .args(extra)
            .args(["-t", "1", "10.90.0.2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let done = |c: std::process::Child| {
        let o = c.wait_with_output().unwrap();
        format!("{}{}", stdout(&o), stderr(&o))
    };
    let (a, b) = (
        perf("10.91.0.254", "02:91:00:00:00:00", "40", &[]),
        perf("10.92.0.254", "02:92:00:00:00:00", "40", &[]),
    );
    let (a, b) = (done(a), done(b));
    let leases = || {
        let o = site
            .srv
            .exec(&[
                env!("CARGO_BIN_EXE_bootfleet"),
                "--state-dir",
                d.join("state").to_str().unwrap(),
                "leases",
                d.join("spec.toml").to_str().unwrap(),
                "--json",
            ])
            .output()
            .unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o))
            .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&o), stderr(&o)));
        rows
    };
    let count = |rows: &[serde_json::Value], segment: &str| {
        rows.iter().filter(|r| r["segment"] == segment).count()
    };
    let rows = leases();
    for (report, segment) in [(&a, "rack1"), (&b, "rack2")] {
        let acks = report
            .split("***Statistics for: REQUEST-ACK***")
            .nth(1)
            .unwrap_or_default();
        assert!(acks.contains("received packets: 40"), "{segment}: {report}");
    }
    // The clients above (udhcpc's and dhclient's leases) and perfdhcp's 40
    // in each; every address inside its segment's pool.
    let (r1, r2) = (count(&rows, "rack1"), count(&rows, "rack2"));
    assert!(r1 >= 40 && r2 >= 40, "rack1 {r1}, rack2 {r2}: {rows:#?}");
    for r in &rows {
        let net = match r["segment"].as_str() {
            Some("rack1") => 91,
            Some("rack2") => 92,
            Some("rack3") => 93,
            _ => 90,
        };
        let ip = r["ip"].as_str().map(str::to_owned);
        assert!(in_pool(ip.as_ref(), net) || r["node"].is_string(), "{r}");
    }
    // Option 82's link selection (RFC 3527) names rack2 from a rack1
    // relay: the addresses come from rack2's pool.
    let c = done(perf(
        "10.91.0.254",
        "02:82:00:00:00:00",
        "10",
        &["-o", "82,05040a5c0000"],
    ));
    let acks = c
        .split("***Statistics for: REQUEST-ACK***")
        .nth(1)
        .unwrap_or_default();
    assert!(acks.contains("received packets: 10"), "{c}");
    let after = leases();
    assert_eq!(count(&after, "rack1"), r1, "none from rack1's pool");
    assert_eq!(count(&after, "rack2"), r2 + 10, "ten more from rack2's");
}

/// A QEMU iPXE VM in rack1, behind the router: its firmware's DHCP and its
/// OS's go through dhcrelay, TFTP-free iPXE fetches its script, kernel and
/// initrd from bootfleet's routed address, the test OS its cloud-config,
/// and it phones home; its timeline is as complete as a direct boot's.
#[test]
fn a_vm_behind_a_relay_boots_the_test_os_end_to_end_and_its_timeline_is_complete_needs_root_and_qemu()
 {
    if !ready()
        || !have("dhcrelay")
        || !have("qemu-system-x86_64")
        || !have("curl")
        || !Path::new("/usr/lib/ipxe/qemu/pxe-virtio.rom").exists()
    {
        cannot_run("also needs dhcrelay (isc-dhcp-relay), qemu-system-x86, ipxe-qemu and curl");
        return;
    }
    let Some(os) = test_os() else { return };
    let id = std::process::id() % 100_000;
    let srv = Netns::bridged(&format!("bfv-srv-{id}"), "10.90.0.2/24");
    let mut rtr = Netns::new(&format!("bfv-rtr-{id}"));
    let mut rack = Netns::bridged(&format!("bfv-r1-{id}"), "10.91.0.3/24");
    let (sa, ra, r1, v1) = (
        format!("vsa{id}"),
        format!("vra{id}"),
        format!("vr1{id}"),
        format!("vv1{id}"),
    );
    ip(&[
        "link", "add", &sa, "netns", &srv.name, "type", "veth", "peer", "name", &ra, "netns",
        &rtr.name,
    ]);
    ip(&["-n", &srv.name, "link", "set", &sa, "master", "br0", "up"]);
    ip(&[
        "link", "add", &r1, "netns", &rtr.name, "type", "veth", "peer", "name", &v1, "netns",
        &rack.name,
    ]);
    ip(&["-n", &rack.name, "link", "set", &v1, "master", "br0", "up"]);
    for (dev, cidr) in [(&ra, "10.90.0.1/24"), (&r1, "10.91.0.1/24")] {
        ip(&["-n", &rtr.name, "addr", "add", cidr, "dev", dev]);
        ip(&["-n", &rtr.name, "link", "set", dev, "up"]);
    }
    run(&[
        "ip",
        "netns",
        "exec",
        &rtr.name,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    ip(&[
        "-n",
        &srv.name,
        "route",
        "add",
        "10.91.0.0/24",
        "via",
        "10.90.0.1",
    ]);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images/testos");
    std::fs::create_dir_all(&images).unwrap();
    for f in ["vmlinuz", "initrd.img"] {
        std::fs::copy(os.join(f), images.join(f)).unwrap();
    }
    std::fs::write(d.join("spec.toml"), VM_SPEC).unwrap();
    let (_server, log) = serve_in(&srv, d);
    let served = || std::fs::read_to_string(&log).unwrap_or_default();
    let relay_log = d.join("relay.log");
    dhcrelay(&mut rtr, &ra, &[&r1], &relay_log);

    rack.tap("vt0");
    let serial = d.join("serial.log");
    let vm = qemu_pxe(
        &rack,
        "vt0",
        "52:54:00:91:00:10",
        384,
        Vm::BiosVirtio,
        &serial,
    )
    .spawn()
    .unwrap();
    rack.children.push(vm);
    let done = wait_for(
        &serial,
        "testos: phoned home",
        std::time::Duration::from_secs(300),
    );
    let console = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        done,
        "the VM never phoned home\nserial:\n{console}\nserve:\n{}\nrelay:\n{}",
        served(),
        std::fs::read_to_string(&relay_log).unwrap_or_default()
    );
    assert!(
        console.contains("n1 (52:54:00:91:00:10)"),
        "its own config: {console}"
    );
    let o = srv
        .exec(&[
            "curl",
            "-s",
            "--max-time",
            "10",
            "http://10.90.0.2:8080/api/v1/nodes/n1",
        ])
        .output()
        .unwrap();
    let api = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(&api).unwrap_or_else(|e| panic!("{e}: {api}"));
    assert_eq!(v["state"], "booted", "{api}");
    assert_eq!(v["segment"], "rack1", "{api}");
    assert_eq!(v["ip"], "10.91.0.10", "{api}");
    assert_eq!(v["arch"], "bios", "{api}");
    assert_eq!(
        stage_names(&v),
        [
            "dhcp",
            "script",
            "kernel",
            "initrd",
            "os_boot",
            "cloud_config",
            "booted"
        ],
        "{api}"
    );
    assert_eq!(
        (v["boots"].as_u64(), v["tries"].as_u64()),
        (Some(1), Some(1)),
        "{api}"
    );
    assert!(v["failure"].is_null(), "{api}");
}
