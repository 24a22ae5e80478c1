//! "Why didn't node X boot?" with real firmware: each failure a sysadmin
//! meets, staged on a bridge in a network namespace with `bootfleet serve`
//! and QEMU (TCG) booting from its iPXE ROM, and what the API, `bootfleet
//! nodes`, the log and the status page (headless chromium, screenshot
//! kept) say about it. Needs root, qemu-system-x86, ipxe-qemu, curl,
//! chromium and iptables.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;

const SERVER: &str = "10.98.0.2";

fn ready() -> bool {
    let ok = is_root()
        && have("qemu-system-x86_64")
        && have("curl")
        && have("chromium")
        && have("iptables")
        && Path::new("/usr/lib/ipxe/qemu/pxe-virtio.rom").exists();
    if !ok {
        cannot_run("needs root, qemu-system-x86, ipxe-qemu, curl, chromium and iptables");
    }
    ok
}

/// One node, e1, on 10.98.0.0/24, booting the test OS; no [enrolment].
const SPEC: &str = r#"[cluster]
name = "why"

[network]
interface = "br0"
subnet = "10.98.0.0/24"
server = "10.98.0.2"
dynamic_range = ["10.98.0.100", "10.98.0.150"]

[boot]
kernel = "testos/vmlinuz"
initrd = "testos/initrd.img"
console = ["ttyS0"]

[[nodes]]
name = "e1"
mac = "52:54:00:f1:00:01"
ip = "10.98.0.11"
roles = ["etcd", "worker"]
"#;

const E1: &str = "52:54:00:f1:00:01";

/// A segment with `bootfleet serve` on it, and the VMs booting there.
struct Site {
    ns: Netns,
    dir: tempfile::TempDir,
    server: Option<Running>,
    serve_args: Vec<String>,
    /// The state directory under the site's directory (another one is
    /// another site: another key).
    state: &'static str,
    vms: usize,
}

impl Site {
    /// A namespace `tag`, a bridge, the test OS in the images directory
    /// and the server running with `serve_args` on [`SPEC`] with `boot`
    /// added to its `[boot]`.
    fn new(tag: &str, serve_args: &[&str], boot: &str) -> Site {
        let os = test_os().expect("the test OS");
        let ns = Netns::bridged(
            &format!("bfwhy-{tag}-{}", std::process::id() % 100_000),
            "10.98.0.2/24",
        );
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images/testos");
        std::fs::create_dir_all(&images).unwrap();
        for f in ["vmlinuz", "initrd.img"] {
            std::fs::copy(os.join(f), images.join(f)).unwrap();
        }
        let spec = SPEC.replace("[boot]\n", &format!("[boot]\n{boot}"));
        std::fs::write(dir.path().join("spec.toml"), spec).unwrap();
        let mut site = Site {
            ns,
            dir,
            server: None,
            serve_args: serve_args.iter().map(|s| s.to_string()).collect(),
            state: "state",
            vms: 0,
        };
        site.start_server();
        site
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("serve.log")).unwrap_or_default()
    }

    fn start_server(&mut self) {
        let mut args = vec![
            env!("CARGO_BIN_EXE_bootfleet").to_owned(),
            "--state-dir".into(),
            self.path(self.state).display().to_string(),
            "serve".into(),
            "--images".into(),
            self.path("images").display().to_string(),
        ];
        args.extend(self.serve_args.iter().cloned());
        args.push(self.path("spec.toml").display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.ns.exec(&args);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("serve.log"))
            .unwrap();
        cmd.stderr(log);
        let (server, line) = spawn_until_line(&mut cmd);
        assert!(line.starts_with("listening:"), "{line:?}: {}", self.log());
        self.server = Some(server);
    }

    /// SIGTERM, and wait for it to save its state and exit.
    fn stop_server(&mut self) {
        if let Some(mut s) = self.server.take() {
            run(&["kill", "-TERM", &s.0.id().to_string()]);
            let status = s.0.wait().unwrap();
            assert!(
                status.success(),
                "serve stopped with {status}: {}",
                self.log()
            );
        }
    }

    /// Starts a VM with `mac` (BIOS, virtio NIC, iPXE ROM); its serial
    /// console's path, and its monitor socket when `monitored`.
    fn vm(&mut self, mac: &str, monitored: bool) -> (PathBuf, PathBuf) {
        let i = self.vms;
        self.vms += 1;
        let tap = format!("wt{i}");
        self.ns.tap(&tap);
        let serial = self.path(&format!("serial{i}.log"));
        let sock = self.path(&format!("monitor{i}.sock"));
        let vm = qemu_pxe_monitored(
            &self.ns,
            &tap,
            mac,
            384,
            Vm::BiosVirtio,
            &serial,
            monitored.then_some(sock.as_path()),
        )
        .spawn()
        .unwrap();
        self.ns.children.push(vm);
        (serial, sock)
    }

    fn curl(&self, path: &str) -> String {
        let url = format!("http://{SERVER}:8080{path}");
        let o = self
            .ns
            .exec(&["curl", "-s", "--max-time", "10", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The machine's row from the API.
    fn node(&self, key: &str) -> serde_json::Value {
        let body = self.curl(&format!("/api/v1/nodes/{key}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Polls the machine's row until `done` holds (the last row if never).
    fn wait(
        &self,
        key: &str,
        limit: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let row = self.node(key);
            if done(&row) || start.elapsed() > limit {
                return row;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `bootfleet nodes SPEC`, as a sysadmin runs it.
    fn nodes(&self) -> String {
        let spec = self.path("spec.toml");
        let o = self
            .ns
            .exec(&[
                env!("CARGO_BIN_EXE_bootfleet"),
                "nodes",
                spec.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The status page as headless chromium renders it (its DOM), with a
    /// screenshot kept in the target directory as `<name>.png`.
    fn page(&self, name: &str) -> String {
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        let profile = tempfile::tempdir().unwrap();
        let browser = |extra: &str| {
            self.ns
                .exec(&[
                    "chromium",
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1500,400",
                    &format!("--user-data-dir={}", profile.path().display()),
                    extra,
                    &format!("http://{SERVER}:8080/"),
                ])
                .output()
                .unwrap()
        };
        let dom = browser("--dump-dom");
        let html = String::from_utf8_lossy(&dom.stdout).into_owned();
        assert!(
            html.contains("<table id=\"nodes\">"),
            "chromium rendered no status page: {html}{}",
            String::from_utf8_lossy(&dom.stderr)
        );
        let png = browser(&format!("--screenshot={}", shot.display()));
        let bytes = std::fs::read(&shot)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&png.stderr)));
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000);
        eprintln!("screenshot kept at {}", shot.display());
        html
    }
}

/// A failure row's message.
fn message(row: &serde_json::Value) -> &str {
    row["failure"]["message"].as_str().unwrap_or_default()
}

#[test]
fn a_missing_kernel_and_an_unknown_machine_are_failed_with_what_was_asked_the_answer_tries_and_fix_needs_root_and_qemu()
 {
    if !ready() {
        return;
    }
    let mut site = Site::new("k", &[], "");
    std::fs::remove_file(site.path("images/testos/vmlinuz")).unwrap();
    site.stop_server();
    site.start_server();
    assert!(
        site.log()
            .contains("not found: machines will stop at this step"),
        "serve says at start that the kernel is missing: {}",
        site.log()
    );
    site.vm(E1, false);
    let stranger = "52:54:00:f1:00:99";
    site.vm(stranger, false);
    // iPXE's script tries three times (the spec's default retries).
    let e1 = site.wait(E1, Duration::from_secs(180), |r| {
        r["failure"]["times"].as_u64() >= Some(3)
    });
    assert_eq!(e1["state"], "failed", "{e1}");
    assert_eq!(
        message(&e1),
        "failed at kernel: /assets/testos/vmlinuz not found (404), 3 tries",
        "{e1}"
    );
    assert_eq!(
        (e1["boots"].as_u64(), e1["tries"].as_u64()),
        (Some(1), Some(3)),
        "{e1}"
    );
    let fix = e1["failure"]["fix"].as_str().unwrap_or_default();
    assert!(fix.contains("[boot] kernel at "), "{e1}");
    assert!(fix.contains("images/testos/vmlinuz"), "{e1}");
    // Its script retries from the kernel after renewing DHCP.
    assert_eq!(stage_names(&e1), ["dhcp"], "{e1}");

    let other = site.wait(stranger, Duration::from_secs(60), |r| {
        r["state"] == "failed"
    });
    assert_eq!(other["known"], false, "{other}");
    assert!(
        message(&other).starts_with(
            "failed at dhcp: DHCP (bios firmware) refused: not in the spec, and no [enrolment]"
        ),
        "{other}"
    );
    assert!(
        other["failure"]["fix"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("mac = \"{stranger}\"")),
        "{other}"
    );

    let table = site.nodes();
    assert!(
        table.contains("failed at kernel: /assets/testos/vmlinuz not found (404), 3 tries"),
        "{table}"
    );
    assert!(
        table.contains("e1: put the spec's [boot] kernel at "),
        "{table}"
    );
    assert!(
        table.contains(&format!("{stranger}: add it to the spec")),
        "{table}"
    );
    let log = site.log();
    assert!(
        log.lines().any(|l| l.contains("boot step failed")
            && l.contains("machine=e1")
            && l.contains("/assets/testos/vmlinuz")
            && l.contains("[boot] kernel at")),
        "each 404 is logged with the machine, the path and the fix: {log}"
    );
    let html = site.page("why-kernel-missing");
    assert!(
        html.contains(&format!("data-mac=\"{E1}\" data-state=\"failed\"")),
        "{html}"
    );
    assert!(
        html.contains("failed at kernel: /assets/testos/vmlinuz not found (404), 3 tries"),
        "{html}"
    );
    assert!(html.contains("(try 3)"), "{html}");
    assert!(
        html.contains(&format!("data-mac=\"{stranger}\" data-state=\"failed\"")),
        "{html}"
    );
}

#[test]
fn an_initrd_removed_while_serving_fails_the_boot_there_and_once_it_is_back_the_next_try_boots_needs_root_and_qemu()
 {
    if !ready() {
        return;
    }
    // Ten tries, so the file is back before the script gives up.
    let mut site = Site::new("i", &[], "retries = 10\n");
    // Removed after the server started: nothing warned at start.
    let initrd = site.path("images/testos/initrd.img");
    let kept = site.path("initrd.img");
    std::fs::rename(&initrd, &kept).unwrap();
    let (serial, _) = site.vm(E1, false);
    let e1 = site.wait(E1, Duration::from_secs(180), |r| r["state"] == "failed");
    assert!(
        message(&e1).starts_with("failed at initrd: /assets/testos/initrd.img not found (404)"),
        "the initrd's 404 is the initrd's, not the kernel's: {e1}"
    );
    assert!(
        site.log().contains("asked=/assets/testos/initrd.img"),
        "{}",
        site.log()
    );
    let html = site.page("why-initrd-removed");
    assert!(
        html.contains("failed at initrd: /assets/testos/initrd.img not found (404)"),
        "{html}"
    );
    assert!(
        html.contains("fix: put the spec's [boot] initrd at"),
        "{html}"
    );
    // Back: iPXE's next try gets it and the machine boots.
    let last_404 = site.node(E1)["failure"]["at"]
        .as_u64()
        .expect("still failed");
    std::fs::rename(&kept, &initrd).unwrap();
    let e1 = site.wait(E1, Duration::from_secs(300), |r| r["state"] == "booted");
    assert_eq!(e1["state"], "booted", "{e1}");
    assert!(e1["failure"].is_null(), "past it: {e1}");
    assert_eq!(e1["boots"], 1, "{e1}");
    assert!(e1["tries"].as_u64() >= Some(2), "{e1}");
    assert_eq!(
        stage_names(&e1),
        [
            "dhcp",
            "kernel",
            "initrd",
            "os_boot",
            "cloud_config",
            "booted"
        ],
        "a retry starts from DHCP and the kernel: {e1}"
    );
    // The times are those of the try that booted, each stage from its
    // first request to its last byte: its DHCP came after the last 404
    // and ended before its kernel was asked for (the firmware's DHCP
    // alone, not every try's and not the OS's); the kernel and initrd
    // took as long as iPXE took to read them.
    let stage = |name: &str| {
        e1["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .unwrap_or_else(|| panic!("no {name}: {e1}"))
            .clone()
    };
    let at_ms = |s: &serde_json::Value| (s["at"].as_u64().unwrap(), s["ms"].as_u64().unwrap());
    let (dhcp_at, dhcp_ms) = at_ms(&stage("dhcp"));
    let (kernel_at, kernel_ms) = at_ms(&stage("kernel"));
    let (initrd_at, initrd_ms) = at_ms(&stage("initrd"));
    let (os_at, _) = at_ms(&stage("os_boot"));
    assert!(dhcp_at > last_404, "the latest try's DHCP: {e1}");
    assert!(dhcp_at + dhcp_ms <= kernel_at, "{e1}");
    assert!(
        kernel_ms > 0 && initrd_ms > 0,
        "transfers end at their last byte: {e1}"
    );
    assert!(kernel_at + kernel_ms <= initrd_at, "{e1}");
    assert_eq!(
        os_at,
        initrd_at + initrd_ms,
        "the OS boots from the initrd's last byte: {e1}"
    );
    // The page, `nodes` and the API say the same.
    let secs: Vec<String> = e1["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {:.1}s",
                s["stage"].as_str().unwrap(),
                s["ms"].as_u64().unwrap() as f64 / 1000.0
            )
        })
        .collect();
    let table = site.nodes();
    assert!(table.contains(&secs.join(" ")), "{secs:?}\n{table}");
    let html = site.page("initrd-back");
    for s in &secs {
        assert!(html.contains(&format!(">{s}</span>")), "{s}: {html}");
    }
    // The VM prints it once the server's answer reached it, a moment after
    // the server recorded the phone-home.
    assert!(
        wait_for(&serial, "testos: phoned home", Duration::from_secs(30)),
        "{}",
        std::fs::read_to_string(&serial).unwrap_or_default()
    );
}

#[test]
fn a_cloud_config_refused_for_a_stale_token_is_failed_at_cloud_config_with_the_fix_needs_root_and_qemu()
 {
    if !ready() {
        return;
    }
    let mut site = Site::new("t", &[], "");
    let (serial, monitor_sock) = site.vm(E1, true);
    let e1 = site.wait(E1, Duration::from_secs(240), |r| r["stage"] == "os_boot");
    assert_eq!(e1["stage"], "os_boot", "{e1}");
    // The kernel runs the test OS: everything the firmware fetched has
    // arrived, and the OS has asked for nothing yet.
    assert!(
        wait_for(
            &serial,
            "Run /init as init process",
            Duration::from_secs(240)
        ),
        "{}",
        std::fs::read_to_string(&serial).unwrap_or_default()
    );
    // The machine holds its kernel command line (and token); while it is
    // paused, another site's server (another state, another key) takes
    // over the segment.
    monitor(&monitor_sock, "stop");
    site.stop_server();
    site.state = "another-site";
    site.start_server();
    monitor(&monitor_sock, "cont");
    assert!(
        wait_for(&serial, "testos: done", Duration::from_secs(240)),
        "{}",
        std::fs::read_to_string(&serial).unwrap_or_default()
    );
    let e1 = site.wait(E1, Duration::from_secs(10), |r| r["state"] == "failed");
    assert_eq!(e1["state"], "failed", "{e1}");
    assert_eq!(
        message(&e1),
        "failed at cloud_config: /cloud-config/e1 refused: wrong token (403)",
        "{e1}"
    );
    assert!(
        e1["failure"]["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("reboot the machine"),
        "{e1}"
    );
    // The new server saw only the OS: its DHCP, then the refused request.
    assert_eq!(stage_names(&e1), ["dhcp"], "{e1}");
    let table = site.nodes();
    assert!(table.contains("refused: wrong token (403)"), "{table}");
    let html = site.page("why-wrong-token");
    assert!(
        html.contains("failed at cloud_config: /cloud-config/e1 refused: wrong token (403)"),
        "{html}"
    );
}

#[test]
fn a_machine_whose_phone_home_never_arrives_is_stalled_at_cloud_config_needs_root_and_qemu() {
    if !ready() {
        return;
    }
    let mut site = Site::new("p", &["--stall-after", "8"], "");
    // The OS boots and fetches its cloud-config, but its phone-home is
    // reset on the way (a firewall between the rack and the server).
    run(&[
        "ip",
        "netns",
        "exec",
        &site.ns.name,
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "8080",
        "-m",
        "string",
        "--string",
        "/phone-home/",
        "--algo",
        "bm",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]);
    let (serial, _) = site.vm(E1, false);
    assert!(
        wait_for(&serial, "testos: done", Duration::from_secs(240)),
        "{}",
        std::fs::read_to_string(&serial).unwrap_or_default()
    );
    let console = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(console.contains("#cloud-config"), "{console}");
    assert!(!console.contains("testos: phoned home"), "{console}");
    let e1 = site.wait(E1, Duration::from_secs(30), |r| r["state"] == "stalled");
    assert_eq!(
        (e1["state"].as_str(), e1["stage"].as_str()),
        (Some("stalled"), Some("cloud_config")),
        "{e1}"
    );
    assert!(e1["failure"].is_null(), "{e1}");
    assert!(
        e1["last_event"]
            .as_str()
            .unwrap_or_default()
            .starts_with("http GET /cloud-config/e1 200"),
        "{e1}"
    );
    let table = site.nodes();
    assert!(table.contains("stalled at cloud_config"), "{table}");
    let html = site.page("why-no-phone-home");
    assert!(
        html.contains(&format!("data-mac=\"{E1}\" data-state=\"stalled\"")),
        "{html}"
    );
    assert!(html.contains("stalled at cloud_config"), "{html}");
}
