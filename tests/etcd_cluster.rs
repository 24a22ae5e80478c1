//! The etcd units bootfleet renders start a real etcd cluster. Needs root
//! (a network namespace holding the members' addresses) and Debian's
//! etcd-server; skips with a message without them. CI runs it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// `ExecStart=` of a unit, continuation lines joined, split into words.
fn exec_start(unit: &str) -> Vec<String> {
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap();
    line["ExecStart=".len()..]
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn environment(unit: &str, key: &str) -> String {
    let prefix = format!("Environment={key}=");
    unit.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap()
        .to_owned()
}

#[test]
fn rendered_etcd_units_form_a_real_cluster_that_fleet_can_use_needs_root() {
    if !is_root()
        || Command::new("etcd").arg("--version").output().is_err()
        || Command::new("curl").arg("--version").output().is_err()
    {
        cannot_run("needs root, etcd (apt-get install etcd-server) and curl");
        return;
    }
    // The libvirt example: three members that are also workers, with etcd
    // run as a binary so the real etcd here can run the same command line.
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("spec.toml");
    let text = std::fs::read_to_string(root().join("examples/libvirt.toml")).unwrap()
        + "\n[etcd]\nbinary = \"etcd/v3/etcd\"\n";
    std::fs::write(&spec_path, text).unwrap();
    let state = fixed_state();
    let out = tempfile::tempdir().unwrap();
    render_spec(state.path(), &spec_path, out.path());

    // One namespace per member (each is its own host, with its own
    // loopback), joined by a bridge in a switch namespace.
    let tag = std::process::id();
    let switch = Netns::new(&format!("bf-sw-{tag}"));
    run(&[
        "ip",
        "-n",
        &switch.name,
        "link",
        "add",
        "br0",
        "type",
        "bridge",
    ]);
    run(&["ip", "-n", &switch.name, "link", "set", "br0", "up"]);
    let mut hosts = Vec::new();
    let mut fleet_servers = Vec::new();
    for (i, node) in ["node0", "node1", "node2"].iter().enumerate() {
        let mut host = Netns::new(&format!("bf-{node}-{tag}"));
        let port = format!("sw{i}-{tag}");
        run(&[
            "ip",
            "-n",
            &host.name,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &switch.name,
        ]);
        run(&[
            "ip",
            "-n",
            &switch.name,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        run(&[
            "ip",
            "-n",
            &host.name,
            "addr",
            "add",
            &format!("10.213.0.1{i}/24"),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &host.name, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", &host.name, "link", "set", "lo", "up"]);

        let cc =
            std::fs::read_to_string(out.path().join(format!("cloud-config/{node}.yml"))).unwrap();
        let (_, units) = cloud_config_parts(&cc);
        let unit = |name: &str| {
            units
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, c)| c.clone())
                .unwrap()
        };
        let etcd_unit = unit("etcd-member.service");
        assert!(
            etcd_unit.contains("ExecStartPre=/usr/bin/curl")
                && etcd_unit.contains("/assets/etcd/v3/etcd"),
            "{etcd_unit}"
        );
        let mut argv = exec_start(&etcd_unit);
        assert_eq!(argv[0], "/opt/bootfleet/bin/etcd");
        argv[0] = "etcd".into();
        let data = dir.path().join(node);
        let d = argv.iter().position(|a| a == "--data-dir").unwrap();
        argv[d + 1] = data.to_str().unwrap().to_owned();
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let log = std::fs::File::create(dir.path().join(format!("{node}.log"))).unwrap();
        let child = host
            .exec(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        host.children.push(child);
        hosts.push(host);
        fleet_servers.push(environment(&unit("fleet.service"), "FLEET_ETCD_SERVERS"));
    }
    let ns = &hosts[0];
    fleet_servers.dedup();
    assert_eq!(
        fleet_servers.len(),
        1,
        "every worker points fleet at the same members"
    );
    let endpoints: Vec<String> = fleet_servers[0].split(',').map(str::to_owned).collect();
    assert_eq!(endpoints.len(), 3);

    // Fleet speaks the v2 API: write through one member, read through each.
    let curl = |args: &[&str]| {
        let mut full = vec!["curl", "--silent", "--fail", "--max-time", "2"];
        full.extend_from_slice(args);
        ns.exec(&full).output().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let key = format!("{}/v2/keys/bootfleet/test", endpoints[0]);
    loop {
        let put = curl(&["-X", "PUT", &key, "--data", "value=booted"]);
        if put.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd never accepted a v2 write; logs in {}:\n{}",
            dir.path().display(),
            std::fs::read_to_string(dir.path().join("node0.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for ep in &endpoints {
        let get = curl(&[&format!("{ep}/v2/keys/bootfleet/test?quorum=true")]);
        assert!(get.status.success(), "{ep}");
        assert!(
            String::from_utf8_lossy(&get.stdout).contains("\"value\":\"booted\""),
            "{ep}: {}",
            String::from_utf8_lossy(&get.stdout)
        );
    }
    let members = curl(&[&format!("{}/v2/members", endpoints[1])]);
    let members = String::from_utf8_lossy(&members.stdout).into_owned();
    for node in ["node0", "node1", "node2"] {
        assert!(
            members.contains(&format!("\"name\":\"{node}\"")),
            "{members}"
        );
    }
}
