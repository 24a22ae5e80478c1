//! `bootfleet cluster` against a real libvirtd (qemu:///system, TCG): VMs
//! that PXE-boot the test OS from the cluster's own boot server, and a
//! `down` that leaves nothing behind, after a clean `up`, a killed one, a
//! failing or interrupted `run`. The tests take turns: each boots VMs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;

pub static TURN: Mutex<()> = Mutex::new(());

/// The images directory with the test OS, once root, QEMU and a running
/// libvirtd are there (started here if nothing runs it).
pub fn ready() -> Option<PathBuf> {
    if !is_root() {
        cannot_run("needs root (libvirt's qemu:///system creates bridges)");
        return None;
    }
    for tool in ["qemu-system-x86_64", "virsh", "libvirtd", "qemu-img"] {
        if !have(tool) {
            cannot_run(&format!(
                "{tool} is not installed (apt-get install libvirt-daemon-system qemu-system-x86 qemu-utils)"
            ));
            return None;
        }
    }
    let o = Command::new(root().join("dist/start-libvirtd.sh"))
        .output()
        .unwrap();
    if !o.status.success() {
        cannot_run(&format!(
            "libvirtd does not start: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
        return None;
    }
    let images = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-images");
    let state = tempfile::tempdir().unwrap();
    let o = bootfleet(
        state.path(),
        &["images", "testos", "--images", images.to_str().unwrap()],
    );
    if !o.status.success() {
        cannot_run(&format!("the test OS cannot be built: {}", stderr(&o)));
        return None;
    }
    Some(images)
}

/// A test cluster: its spec, state directory and names.
pub struct Cluster {
    name: String,
    bridge: String,
    pub spec: PathBuf,
    images: PathBuf,
    pub state: tempfile::TempDir,
}

impl Cluster {
    /// Cluster `name` of `nodes` test-OS VMs on 10.213.`octet`.0/24;
    /// `extra` goes under `[libvirt]`.
    pub fn new(images: &Path, name: &str, octet: u8, nodes: usize, extra: &str) -> Cluster {
        let state = tempfile::tempdir().unwrap();
        let bridge = format!("bft-{name}");
        let mut text = format!(
            "[cluster]\nname = \"{name}\"\n\n[network]\ninterface = \"{bridge}\"\nsubnet = \"10.213.{octet}.0/24\"\nserver = \"10.213.{octet}.1\"\n\n[boot]\ntestos = true\nconsole = [\"ttyS0,115200n8\"]\n"
        );
        for i in 0..nodes {
            let roles = if i == 0 {
                "[\"etcd\", \"worker\"]"
            } else {
                "[\"worker\"]"
            };
            text.push_str(&format!(
                "\n[[nodes]]\nname = \"n{i}\"\nip = \"10.213.{octet}.{}\"\nroles = {roles}\n",
                10 + i
            ));
        }
        text.push_str(&format!(
            "\n[libvirt]\naccel = \"tcg\"\nboot_timeout = \"5m\"\n{extra}\n"
        ));
        Cluster::from_text(images, name, &text, state)
    }

    /// Cluster `name` (its bridge `bft-<name>`) of the spec `text`.
    fn from_text(images: &Path, name: &str, text: &str, state: tempfile::TempDir) -> Cluster {
        let spec = state.path().join("spec.toml");
        std::fs::write(&spec, text).unwrap();
        Cluster {
            name: name.into(),
            bridge: format!("bft-{name}"),
            spec,
            images: images.to_owned(),
            state,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bootfleet"));
        c.arg("--state-dir")
            .arg(self.state.path())
            .arg("cluster")
            .args(&args[..1])
            .arg(&self.spec)
            .arg("--images")
            .arg(&self.images)
            .args(&args[1..]);
        c.env_remove("BOOTFLEET_STATE_DIR")
            .env_remove("BOOTFLEET_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).output().unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let o = self.run(args);
        assert!(o.status.success(), "cluster {args:?}: {}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
    }

    fn down(&self) {
        let o = self.run(&["down"]);
        assert!(o.status.success(), "down: {}", stderr(&o));
    }

    /// Everything of the cluster that still exists anywhere.
    fn leftovers(&self) -> Vec<String> {
        let virsh = |args: &[&str]| {
            let o = Command::new("virsh")
                .args(["-c", "qemu:///system"])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let mut out: Vec<String> = virsh(&["list", "--all", "--name"])
            .into_iter()
            .filter(|d| d.starts_with(&format!("{}-", self.name)))
            .map(|d| format!("domain {d}"))
            .collect();
        let own = format!("bootfleet-{}", self.name);
        out.extend(
            virsh(&["net-list", "--all", "--name"])
                .into_iter()
                .filter(|n| *n == own || n.starts_with(&format!("{own}-")))
                .map(|n| format!("network {n}")),
        );
        out.extend(
            virsh(&["pool-list", "--all", "--name"])
                .into_iter()
                .filter(|n| *n == own)
                .map(|n| format!("pool {n}")),
        );
        // Its bridges: `bft-<name>`, and `bft-<name>2` for a second segment.
        for bridge in [self.bridge.clone(), format!("{}2", self.bridge)] {
            if Path::new("/sys/class/net").join(&bridge).exists() {
                out.push(format!("bridge {bridge}"));
            }
        }
        let pool_dir = format!("/var/lib/libvirt/images/{own}");
        if Path::new(&pool_dir).exists() {
            out.push(format!("directory {pool_dir}"));
        }
        if let Ok(dir) = std::fs::read_dir("/var/lib/libvirt/qemu/nvram") {
            out.extend(
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|f| f.starts_with(&format!("{}-", self.name)))
                    .map(|f| format!("nvram {f}")),
            );
        }
        out.extend(
            bootfleet::cluster::process::find(&self.name)
                .into_iter()
                .map(|p| format!("server pid {p}")),
        );
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failed test must not leave VMs behind for the next one.
        let _ = self.run(&["down"]);
    }
}

pub fn all_booted(report: &serde_json::Value) -> bool {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["stage"] == "booted (phoned home)")
}

#[test]
fn three_test_os_nodes_come_up_converge_on_a_second_up_and_go_down_leaving_nothing_needs_root_and_libvirtd()
 {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    let c = Cluster::new(&images, "three", 20, 3, "");
    let up = c.json(&["up", "--json"]);
    assert!(all_booted(&up), "{up:#}");
    assert_eq!(up["server"]["running"], true, "{up:#}");
    assert_eq!(
        up["etcd_endpoints"],
        serde_json::json!(["http://10.213.20.10:2379"])
    );
    for n in up["nodes"].as_array().unwrap() {
        assert!(
            n["seconds"]["dhcp"].as_f64().is_some(),
            "per-stage seconds: {n:#}"
        );
    }
    let status = c.json(&["status", "--json"]);
    assert!(all_booted(&status), "{status:#}");
    assert_eq!(status["server"]["running"], true);
    let console = c.run(&["console", "n1"]);
    assert!(
        stdout(&console).contains("testos: phoned home"),
        "{}",
        stdout(&console)
    );
    let text = c.run(&["status"]);
    assert!(
        stdout(&text).contains("server running"),
        "{}",
        stdout(&text)
    );

    // A second up finds everything and duplicates nothing.
    let again = c.json(&["up", "--json"]);
    assert!(all_booted(&again), "{again:#}");
    let vols = Command::new("virsh")
        .args([
            "-c",
            "qemu:///system",
            "vol-list",
            &format!("bootfleet-{}", c.name),
        ])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&vols)
            .lines()
            .filter(|l| l.contains(".qcow2"))
            .count(),
        3,
        "{}",
        stdout(&vols)
    );
    assert_eq!(
        c.leftovers()
            .iter()
            .filter(|l| l.starts_with("domain"))
            .count(),
        3
    );
    assert_eq!(
        c.leftovers()
            .iter()
            .filter(|l| l.starts_with("server"))
            .count(),
        1,
        "one server, not two"
    );

    c.down();
    assert_eq!(c.leftovers(), Vec::<String>::new());
    let status = c.json(&["status", "--json"]);
    assert_eq!(status["server"]["running"], false);
    assert!(
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["state"] == "absent"),
        "{status:#}"
    );
}

#[test]
fn an_up_killed_at_any_step_is_cleaned_up_by_down_needs_root_and_libvirtd() {
    use std::io::{BufRead, BufReader};
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    let c = Cluster::new(&images, "killed", 21, 2, "");
    // Before the network, after the disks, while waiting for the nodes.
    for step in ["accelerator:", "pool ", "VMs, "] {
        let mut child = c
            .cmd(&["up"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut seen = Vec::new();
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            seen.push(line.clone());
            if line.starts_with(step) || line.contains(step) {
                break;
            }
        }
        assert!(
            seen.last().is_some_and(|l| l.contains(step)),
            "up never printed {step:?}: {seen:?}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        c.down();
        assert_eq!(
            c.leftovers(),
            Vec::<String>::new(),
            "after up was killed at {step:?}"
        );
    }
}

#[test]
fn run_tears_down_after_a_failing_command_and_exits_with_its_status_needs_root_and_libvirtd() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    let c = Cluster::new(&images, "runfail", 22, 2, "");
    let seen = c.state.path().join("seen");
    let script = format!(
        "printf '%s|%s|%s|%s\\n' \"$BOOTFLEET_NODES\" \"$BOOTFLEET_NODE_ADDRESSES\" \"$BOOTFLEET_ETCD_ENDPOINTS\" \"$BOOTFLEET_CLUSTER\" > {}; test -s \"$BOOTFLEET_SUMMARY\" || exit 99; exit 7",
        seen.display()
    );
    let o = c.run(&["run", "--", "sh", "-c", &script]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap().trim(),
        "n0 n1|n0=10.213.22.10 n1=10.213.22.11|http://10.213.22.10:2379|runfail"
    );
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn run_interrupted_by_sigterm_stops_the_command_and_tears_down_needs_root_and_libvirtd() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    let c = Cluster::new(&images, "runterm", 23, 1, "");
    let started = c.state.path().join("started");
    let script = format!("echo $$ > {}; exec sleep 600", started.display());
    let mut child = c
        .cmd(&["run", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !std::fs::read_to_string(&started).is_ok_and(|s| s.ends_with('\n')) {
        assert!(Instant::now() < deadline, "the command never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before its command started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let sleeper: i32 = std::fs::read_to_string(&started)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(143),
        "run exits as a SIGTERM'd command does"
    );
    assert!(
        !Path::new(&format!("/proc/{sleeper}")).exists(),
        "the command was stopped"
    );
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn a_uefi_node_boots_from_ovmf_and_its_nvram_goes_with_it_needs_root_and_libvirtd() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    let c = Cluster::new(&images, "uefi", 24, 1, "firmware = \"uefi\"");
    let up = c.json(&["up", "--json"]);
    assert!(all_booted(&up), "{up:#}");
    assert!(Path::new("/var/lib/libvirt/qemu/nvram/uefi-n0_VARS.fd").exists());
    c.down();
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn up_refuses_what_is_in_the_way_names_the_fix_and_creates_nothing_needs_root_and_libvirtd() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    let c = Cluster::new(&images, "inway", 25, 1, "");
    let refused = |what: &str, needle: &str| {
        let o = c.run(&["up", "--no-wait"]);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains("help:"), "{what}: {}", stderr(&o));
    };
    let virsh = |args: &[&str]| run(&[&["virsh", "-c", "qemu:///system"], args].concat());

    // The bridge name is taken by an interface of the host.
    run(&["ip", "link", "add", &c.bridge, "type", "bridge"]);
    refused("bridge taken", "already has an interface named");
    run(&["ip", "link", "del", &c.bridge]);
    assert_eq!(c.leftovers(), Vec::<String>::new());

    // The subnet overlaps another libvirt network.
    let xml = c.state.path().join("other.xml");
    std::fs::write(&xml, "<network><name>bft-overlap</name><bridge name='bft-ovl0'/><ip address='10.213.25.129' netmask='255.255.255.128'/></network>").unwrap();
    virsh(&["net-define", xml.to_str().unwrap()]);
    refused("overlap", "overlaps libvirt network `bft-overlap`");
    virsh(&["net-undefine", "bft-overlap"]);
    assert_eq!(c.leftovers(), Vec::<String>::new());

    // A domain with a node's name that is not the cluster's.
    std::fs::write(&xml, "<domain type='qemu'><name>inway-n0</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>").unwrap();
    virsh(&["define", xml.to_str().unwrap()]);
    refused("namesake", "`inway-n0` exists but is not this cluster's");
    c.down();
    let o = Command::new("virsh")
        .args(["-c", "qemu:///system", "dominfo", "inway-n0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "down removed someone else's domain");
    virsh(&["undefine", "inway-n0"]);
    assert_eq!(c.leftovers(), Vec::<String>::new());

    // Images missing: the error names the command that builds them.
    let empty = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bootfleet"))
        .arg("--state-dir")
        .arg(c.state.path())
        .args(["cluster", "up"])
        .arg(&c.spec)
        .arg("--images")
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bootfleet images testos --images"),
        "{}",
        stderr(&o)
    );

    // libvirtd that cannot be reached.
    let spec = std::fs::read_to_string(&c.spec).unwrap().replace(
        "[libvirt]\n",
        "[libvirt]\nuri = \"qemu+unix:///system?socket=/nonexistent/libvirt-sock\"\n",
    );
    std::fs::write(&c.spec, spec).unwrap();
    let o = c.run(&["up"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("libvirtd is not running"),
        "{}",
        stderr(&o)
    );
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn the_accelerator_probe_decides_says_why_and_is_kept_until_the_host_reboots_needs_root_and_qemu() {
    use bootfleet::cluster::accel;
    use bootfleet::spec::Accel;
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    let kernel = images.join("testos/vmlinuz");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("accel");
    let t = Instant::now();
    let first = accel::decide(Accel::Auto, &kernel, &cache);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the probe is bounded: {:?}",
        t.elapsed()
    );
    assert!(
        first.why.starts_with(if first.kvm { "KVM" } else { "TCG" }),
        "{first:?}"
    );
    if Path::new("/dev/kvm").exists() {
        assert!(
            std::fs::read_to_string(&cache)
                .unwrap()
                .trim()
                .ends_with(if first.kvm { " kvm" } else { " tcg" })
        );
        let t = Instant::now();
        let again = accel::decide(Accel::Auto, &kernel, &cache);
        assert_eq!(again.kvm, first.kvm);
        assert!(again.why.contains("probed earlier"), "{again:?}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the kept answer needs no probe"
        );
    } else {
        assert!(first.why.contains("no /dev/kvm"), "{first:?}");
    }
    // The spec's word needs no probe.
    assert!(!accel::decide(Accel::Tcg, &kernel, &cache).kvm);
    assert!(accel::decide(Accel::Kvm, &kernel, &cache).kvm);
}

#[test]
fn a_node_that_cannot_boot_is_named_with_its_stage_and_console_when_up_times_out_needs_root_and_libvirtd()
 {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    // The real kernel with an initrd that is not one: the node gets
    // everything it asks for and never phones home.
    let bad = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bad.path().join("testos")).unwrap();
    std::fs::copy(
        images.join("testos/vmlinuz"),
        bad.path().join("testos/vmlinuz"),
    )
    .unwrap();
    std::fs::write(bad.path().join("testos/initrd.img"), b"not an initramfs").unwrap();
    // Built by this version (so `up` does not ask for a rebuild first).
    std::fs::copy(
        images.join("testos/.recipe"),
        bad.path().join("testos/.recipe"),
    )
    .unwrap();
    let c = Cluster::new(bad.path(), "stall", 26, 1, "");
    let spec = std::fs::read_to_string(&c.spec)
        .unwrap()
        .replace("boot_timeout = \"5m\"", "boot_timeout = \"45s\"");
    std::fs::write(&c.spec, spec).unwrap();
    let o = c.run(&["up"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("not every node phoned home within 45 s"),
        "{err}"
    );
    let console = c.state.path().join("clusters/stall/console/n0.log");
    assert!(
        err.contains("n0: got as far as os_boot: its kernel and initrd were served "),
        "{err}"
    );
    assert!(
        err.contains(&format!("(console: {})", console.display())),
        "{err}"
    );
    assert!(err.contains("bootfleet cluster console SPEC NODE"), "{err}");
    assert!(
        std::fs::read_to_string(&console)
            .unwrap()
            .contains("Linux version"),
        "the console log has the kernel's output"
    );
    c.down();
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn a_user_without_permission_and_a_pool_without_space_are_told_the_fix_needs_root_and_libvirtd() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    if !have("setpriv") {
        return;
    }
    // An unprivileged user on qemu:///system.
    let c = Cluster::new(&images, "perm", 27, 1, "");
    std::fs::set_permissions(
        c.state.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let o = Command::new("setpriv")
        .args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "env",
            "HOME=/tmp",
        ])
        .arg(env!("CARGO_BIN_EXE_bootfleet"))
        .arg("--state-dir")
        .arg(c.state.path())
        .args(["cluster", "status"])
        .arg(&c.spec)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no permission on qemu:///system as this user"),
        "{}",
        stderr(&o)
    );

    // A pool directory on a 64 MiB file system: the disks are refused
    // before any is made, with the fix.
    let small = tempfile::tempdir().unwrap();
    run(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=64m",
        "tmpfs",
        small.path().to_str().unwrap(),
    ]);
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.path().to_owned());
    let c = Cluster::new(
        &images,
        "full",
        28,
        1,
        &format!("pool_dir = \"{}/pool\"", small.path().display()),
    );
    let o = c.run(&["up", "--no-wait"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("MiB free, the disks need 256 MiB"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("set `pool_dir` under [libvirt]"),
        "{}",
        stderr(&o)
    );
    c.down();
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// The systemd flavour of the test OS: Ignition writes the rendered units
/// into a Debian root, systemd boots it and runs what Ignition enabled.
/// Three etcd members run from Debian's etcd binary, served by bootfleet
/// and fetched by the rendered unit itself, and must form one cluster;
/// phone-home comes from the rendered unit, not from the test OS's script.
#[test]
fn three_nodes_booting_systemd_after_ignition_run_the_rendered_units_and_form_one_etcd_cluster_needs_root_and_libvirtd()
 {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    for tool in ["etcd", "etcdctl"] {
        if !have(tool) {
            cannot_run(&format!(
                "{tool} is not installed (apt-get install etcd-server etcd-client)"
            ));
            return;
        }
    }
    let state = tempfile::tempdir().unwrap();
    let o = bootfleet(
        state.path(),
        &[
            "images",
            "testos",
            "--systemd",
            "--images",
            images.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let etcd = images.join("etcd/etcd");
    std::fs::create_dir_all(etcd.parent().unwrap()).unwrap();
    std::fs::copy(which("etcd"), &etcd).unwrap();
    let mut text = "[cluster]\nname = \"ignsd\"\n\n[network]\ninterface = \"bft-ignsd\"\nsubnet = \"10.213.29.0/24\"\nserver = \"10.213.29.1\"\n\n[boot]\nkernel = \"testos-systemd/vmlinuz\"\ninitrd = \"testos-systemd/initrd.img\"\nconfig = \"ignition\"\nconsole = [\"ttyS0,115200n8\"]\n".to_owned();
    for i in 0..3 {
        text.push_str(&format!(
            "\n[[nodes]]\nname = \"m{i}\"\nip = \"10.213.29.{}\"\nroles = [\"etcd\"]\n",
            10 + i
        ));
    }
    text.push_str("\n[etcd]\nbinary = \"etcd/etcd\"\n\n[libvirt]\naccel = \"tcg\"\nmemory_mib = 768\nboot_timeout = \"8m\"\n");
    let c = Cluster::from_text(&images, "ignsd", &text, state);
    let up = c.json(&["up", "--json"]);
    assert!(all_booted(&up), "{up:#}");
    let endpoints = "http://10.213.29.10:2379,http://10.213.29.11:2379,http://10.213.29.12:2379";
    assert_eq!(
        up["etcd_endpoints"].as_array().map(Vec::len),
        Some(3),
        "{up:#}"
    );
    // Every member answers healthy, and all three are one cluster.
    let etcdctl = |args: &[&str]| {
        let mut last = None;
        for _ in 0..30 {
            let o = Command::new("etcdctl")
                .args([
                    "--endpoints",
                    endpoints,
                    "--dial-timeout",
                    "5s",
                    "--command-timeout",
                    "10s",
                ])
                .args(args)
                .env("ETCDCTL_API", "3")
                .output()
                .unwrap();
            // etcdctl 3.4 prints endpoint health on standard error.
            let said = format!("{}{}", stdout(&o), stderr(&o));
            if o.status.success() {
                return said;
            }
            last = Some(said);
            std::thread::sleep(Duration::from_secs(2));
        }
        panic!("etcdctl {args:?}: {}", last.unwrap_or_default());
    };
    let health = etcdctl(&["endpoint", "health"]);
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    let members = etcdctl(&["member", "list"]);
    for i in 0..3 {
        assert!(
            members.contains(&format!("m{i}, http://10.213.29.{}:2380", 10 + i)),
            "{members}"
        );
    }
    // What ran is what Ignition wrote: systemd started the rendered units,
    // and the test OS's own script did not phone home.
    let console = stdout(&c.run(&["console", "m0"]));
    for needle in [
        "=====BEGIN IGNITION DIGEST=====",
        "enabled etcd-member.service",
        "testos: switching to systemd",
        "Detected first boot",
    ] {
        assert!(console.contains(needle), "{needle}:\n{console}");
    }
    // systemd's status lines, colours removed; it shortens the unit's name
    // but keeps the end of the description the templates wrote.
    let plain = strip_escapes(&console);
    for (verb, description) in [
        ("Started", "etcd member m0 of cluster ignsd."),
        ("Finished", "Tell bootfleet that m0 has booted."),
    ] {
        let tail = &description[description.len() - 20..];
        assert!(
            plain.lines().any(|l| l.contains(verb) && l.contains(tail)),
            "{verb} ... {description}:\n{plain}"
        );
    }
    assert!(!console.contains("testos: phoned home"), "{console}");
    c.down();
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// `text` without terminal escape sequences (`ESC [ ... letter`).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The full path of `tool` on PATH.
fn which(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not on PATH"))
}

/// A site of two direct segments on a laptop: a libvirt network per
/// segment, the boot server with a leg (the host's address) in each, a node
/// on each; both boot and phone home, each seen in its own segment, and
/// `down` leaves nothing of either.
#[test]
fn a_two_segment_cluster_boots_a_node_on_each_segment_and_down_leaves_nothing_needs_root_and_libvirtd()
 {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    let name = "twoseg";
    let text = format!(
        r#"[cluster]
name = "{name}"

[network]
interface = "bft-{name}"
subnet = "10.213.40.0/24"
server = "10.213.40.1"

[[segments]]
name = "rack2"
subnet = "10.213.41.0/24"
interface = "bft-{name}2"
server = "10.213.41.1"

[boot]
testos = true
console = ["ttyS0,115200n8"]

[[nodes]]
name = "n0"
ip = "10.213.40.10"
roles = ["etcd", "worker"]

[[nodes]]
name = "n1"
ip = "10.213.41.10"
roles = ["worker"]

[libvirt]
accel = "tcg"
boot_timeout = "5m"
"#
    );
    let c = Cluster::from_text(&images, name, &text, tempfile::tempdir().unwrap());
    let up = c.json(&["up", "--json"]);
    assert!(all_booted(&up), "{up:#}");
    // n1's NIC is on the second segment's network.
    let o = Command::new("virsh")
        .args(["-c", "qemu:///system", "domiflist", &format!("{name}-n1")])
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains(&format!("bootfleet-{name}-rack2")),
        "{}",
        stdout(&o)
    );
    for (node, segment, ip) in [
        ("n0", "bft-twoseg", "10.213.40.10"),
        ("n1", "rack2", "10.213.41.10"),
    ] {
        let o = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "10",
                &format!("http://10.213.40.1:8080/api/v1/nodes/{node}"),
            ])
            .output()
            .unwrap();
        let api = stdout(&o);
        let v: serde_json::Value =
            serde_json::from_str(&api).unwrap_or_else(|e| panic!("{e}: {api}"));
        assert_eq!(v["state"], "booted", "{api}");
        assert_eq!(v["segment"], segment, "{api}");
        assert_eq!(v["ip"], ip, "{api}");
    }
    c.down();
    let left = c.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
}
