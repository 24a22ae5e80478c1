//! One site on one bridge for the shared-store tests: a hub namespace
//! with the bridge (10.81.0.10/16, where etcd listens), a namespace per
//! server, load generator or client group, each on the bridge by a veth,
//! and tcpdump on the bridge when a test wants every reply on the wire.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// The first client interfaces get MACs `02:81:00:00:GG:NN`.
pub struct Site {
    pub hub: Netns,
    tag: String,
    dir: tempfile::TempDir,
    ports: Cell<u32>,
}

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Site {
    /// A bridge in a hub namespace named after `tag`, with `addrs` on it
    /// (etcd members listen there).
    pub fn new(tag: &str, addrs: &[&str]) -> Site {
        let tag = format!("{tag}-{}", std::process::id() % 100_000);
        let hub = Netns::new(&format!("{tag}-hub"));
        let h = hub.name.clone();
        run(&["ip", "-n", &h, "link", "set", "lo", "up"]);
        run(&["ip", "-n", &h, "link", "add", "br0", "type", "bridge"]);
        for a in addrs {
            run(&["ip", "-n", &h, "addr", "add", a, "dev", "br0"]);
        }
        run(&["ip", "-n", &h, "link", "set", "br0", "up"]);
        Site {
            hub,
            tag,
            dir: tempfile::tempdir().unwrap(),
            ports: Cell::new(0),
        }
    }

    /// Where the test keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Plugs interface `iface` of `ns` into the bridge and brings it up.
    pub fn plug(&self, ns: &Netns, iface: &str) {
        let n = self.ports.get();
        self.ports.set(n + 1);
        let port = format!("hp{n}");
        let h = &self.hub.name;
        run(&[
            "ip", "link", "add", iface, "netns", &ns.name, "type", "veth", "peer", "name", &port,
            "netns", h,
        ]);
        run(&["ip", "-n", h, "link", "set", &port, "master", "br0", "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", iface, "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
    }

    /// A namespace on the bridge with its interface `bfs`, at `addr`.
    pub fn host(&self, name: &str, addr: Option<&str>) -> Netns {
        let ns = Netns::new(&format!("{}-{name}", self.tag));
        self.plug(&ns, "bfs");
        if let Some(a) = addr {
            run(&["ip", "-n", &ns.name, "addr", "add", a, "dev", "bfs"]);
        }
        ns
    }

    /// A namespace of `n` client interfaces `c0`, `c1`, ..., with MACs
    /// `02:81:00:00:{group}:NN`.
    pub fn clients(&self, name: &str, n: usize, group: u8) -> Netns {
        let ns = Netns::new(&format!("{}-{name}", self.tag));
        for i in 0..n {
            let c = format!("c{i}");
            self.plug(&ns, &c);
            let mac = client_mac(group, i);
            run(&["ip", "-n", &ns.name, "link", "set", &c, "address", &mac]);
        }
        ns
    }

    /// Starts a one-member etcd on 10.81.0.10 (data in the test's
    /// directory, kept across restarts); waits until it answers.
    pub fn etcd(&self) -> Child {
        let url = "http://10.81.0.10:2379";
        let etcd = etcd_member::command(
            &["ip", "netns", "exec", &self.hub.name],
            "m",
            &self.dir().join("etcd"),
            url,
            "http://10.81.0.10:2380",
            "m=http://10.81.0.10:2380",
        )
        .spawn()
        .unwrap();
        assert!(self.healthy(&[url], 100), "etcd did not start");
        etcd
    }

    /// Whether every etcd at `urls` answers its health check within
    /// `tries` tenths of a second.
    pub fn healthy(&self, urls: &[&str], tries: usize) -> bool {
        etcd_member::healthy(&["ip", "netns", "exec", &self.hub.name], urls, tries)
    }

    /// tcpdump of every DHCP datagram on the bridge, into the file named.
    pub fn capture(&self) -> (Killed, PathBuf) {
        let pcap = self.dir().join("dhcp.pcap");
        let tcpdump = self
            .hub
            .exec(&["tcpdump", "-i", "br0", "-U", "-s", "0", "-w"])
            .arg(&pcap)
            .args(["udp", "and", "(port", "67", "or", "port", "68)"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        (Killed(tcpdump), pcap)
    }

    /// Runs `bootfleet ARGS... NAME.toml` in `ns` with the spec `spec`
    /// written there, its own state directory and its log in
    /// `NAME.log`; returns once it listens.
    pub fn bootfleet(&self, ns: &Netns, name: &str, args: &[&str], spec: &str) -> Running {
        let d = self.dir();
        let spec_path = d.join(format!("{name}.toml"));
        std::fs::write(&spec_path, spec).unwrap();
        std::fs::create_dir_all(d.join("images")).unwrap();
        let state = d.join(format!("state-{name}"));
        let mut cmd = ns.exec(&[env!("CARGO_BIN_EXE_bootfleet"), "--state-dir"]);
        cmd.arg(&state)
            .args(args)
            .arg(&spec_path)
            .stderr(std::fs::File::create(d.join(format!("{name}.log"))).unwrap());
        let (server, line) = spawn_until_line(&mut cmd);
        assert!(
            line.starts_with("listening"),
            "{line:?}: {}",
            self.log(name)
        );
        server
    }

    /// What the server `name` logged so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// `bootfleet leases NAME.toml --json` from the hub, as read from the
    /// store (the state directory given, when the store is embedded).
    pub fn leases(&self, name: &str, state: &str) -> Vec<serde_json::Value> {
        let o = self
            .hub
            .exec(&[env!("CARGO_BIN_EXE_bootfleet"), "--state-dir"])
            .arg(self.dir().join(state))
            .arg("leases")
            .arg(self.dir().join(format!("{name}.toml")))
            .arg("--json")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    }

    /// Starts busybox udhcpc once on `iface` of `ns` (`-t TRIES -T 1`);
    /// [`Site::bound`] reads what it was given.
    pub fn udhcpc(&self, ns: &Netns, iface: &str, tries: &str, extra: &[&str]) -> Command {
        let (script, _) = bound_script(self.dir(), iface);
        let mut c = ns.exec(&[
            "busybox", "udhcpc", "-i", iface, "-f", "-q", "-n", "-t", tries, "-T", "1",
        ]);
        c.args(["-s", script.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// udhcpc started on interfaces `c{i}` of `ns` for each `i` in
    /// `clients`, all at once (10 tries each).
    pub fn udhcpc_all(&self, ns: &Netns, clients: std::ops::Range<usize>) -> Vec<Child> {
        clients
            .map(|i| {
                self.udhcpc(ns, &format!("c{i}"), "10", &[])
                    .spawn()
                    .unwrap()
            })
            .collect()
    }

    /// What udhcpc on `iface` was given when it bound, if it did.
    pub fn bound(&self, iface: &str) -> Option<HashMap<String, String>> {
        let env = read_env(&self.dir().join(format!("{iface}.env")));
        (!env.is_empty()).then_some(env)
    }

    /// udhcpc once on `iface`, waited for: what it was given.
    pub fn lease(
        &self,
        ns: &Netns,
        iface: &str,
        tries: &str,
        extra: &[&str],
    ) -> Option<HashMap<String, String>> {
        let ok = self
            .udhcpc(ns, iface, tries, extra)
            .status()
            .unwrap()
            .success();
        ok.then(|| self.bound(iface)).flatten()
    }
}

/// The MAC of client `i` of `group`.
pub fn client_mac(group: u8, i: usize) -> String {
    format!("02:81:00:00:{group:02x}:{i:02x}")
}

/// perfdhcp from `ns` against `server`: `rate` new clients a second for
/// `secs`, each a whole DORA, MACs drawn from `clients`. Each server's
/// load has MACs of its own (the second byte is the server address's
/// last), so two loads are two sets of machines, not one set doing two
/// DORAs at once.
pub fn perfdhcp(ns: &Netns, server: &str, rate: u32, secs: u32, clients: u32) -> Child {
    let last: u8 = server
        .rsplit('.')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(1);
    let base = format!("mac=00:{last:02x}:01:02:03:04");
    ns.exec(&["perfdhcp", "-4", "-l", "bfs", "-b", &base])
        .args(["-r", &rate.to_string(), "-p", &secs.to_string()])
        .args(["-R", &clients.to_string(), server])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// perfdhcp's counts: (DISCOVERs sent, ACKs received).
pub fn perf_counts(out: &str) -> (u64, u64) {
    let (mut sent, mut acks, mut exchange) = (0, 0, 0);
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
    (sent, acks)
}

/// Every ACK in the capture: (address, client MAC).
pub fn acks(pcap: &Path) -> Vec<(String, String)> {
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
