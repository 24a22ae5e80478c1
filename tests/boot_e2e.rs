//! The whole loop with real firmware: `bootfleet serve` on a bridge in a
//! network namespace, QEMU (TCG) booting from the network with its iPXE
//! ROM, a real kernel and the test OS (tests/testos/build.sh) that fetches
//! its cloud-config, prints it on the serial console and calls home. Needs
//! root, qemu-system-x86, ipxe-qemu and apt-get access to build the test
//! OS; skips with a message elsewhere. CI runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const MAC: &str = "52:54:00:e2:00:01";

fn spec() -> String {
    format!(
        r#"[cluster]
name = "e2e"

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
mac = "{MAC}"
ip = "10.98.0.11"
roles = ["etcd", "worker"]

[[nodes]]
name = "e2"
mac = "52:54:00:e2:00:02"
ip = "10.98.0.12"
roles = ["worker"]
"#
    )
}

/// Builds the test OS once per target directory.
fn test_os() -> Option<PathBuf> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("testos");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testos/build.sh");
    let o = Command::new(script).arg(&out).output().ok()?;
    if !o.status.success() {
        eprintln!(
            "SKIP: the test OS could not be built: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        return None;
    }
    Some(out)
}

fn ready() -> bool {
    let ok = is_root()
        && have("qemu-system-x86_64")
        && have("curl")
        && Path::new("/usr/lib/ipxe/qemu/pxe-virtio.rom").exists();
    if !ok {
        eprintln!("SKIP: needs root, qemu-system-x86, ipxe-qemu and curl");
    }
    ok
}

fn wait_for(path: &Path, needle: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

#[test]
fn an_ipxe_rom_boots_the_test_os_which_prints_its_own_cloud_config_and_calls_home_needs_root_and_qemu()
 {
    if !ready() {
        return;
    }
    let Some(os) = test_os() else { return };
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut ns = Netns::new(&format!("bfe2e-{id}"));
    let n = ns.name.clone();
    for args in [
        vec!["ip", "-n", &n, "link", "set", "lo", "up"],
        vec!["ip", "-n", &n, "link", "add", "br0", "type", "bridge"],
        vec!["ip", "-n", &n, "addr", "add", "10.98.0.2/24", "dev", "br0"],
        vec!["ip", "-n", &n, "link", "set", "br0", "up"],
        vec!["ip", "-n", &n, "tuntap", "add", "et0", "mode", "tap"],
        vec!["ip", "-n", &n, "link", "set", "et0", "master", "br0", "up"],
    ] {
        run(&args);
    }
    let images = d.join("images/testos");
    std::fs::create_dir_all(&images).unwrap();
    for f in ["vmlinuz", "initrd.img"] {
        std::fs::copy(os.join(f), images.join(f)).unwrap();
    }
    std::fs::write(d.join("spec.toml"), spec()).unwrap();
    let log = d.join("serve.log");
    let mut cmd = ns.exec(&[
        env!("CARGO_BIN_EXE_bootfleet"),
        "--state-dir",
        d.join("state").to_str().unwrap(),
        "serve",
        "--images",
        d.join("images").to_str().unwrap(),
        d.join("spec.toml").to_str().unwrap(),
    ]);
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let (_server, line) = spawn_until_line(&mut cmd);
    assert!(
        line.starts_with("listening:"),
        "{line:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let serial = d.join("serial.log");
    let started = Instant::now();
    ns.children.push(
        ns.exec(&[
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-m",
            "384",
            "-nographic",
            "-monitor",
            "none",
            "-no-reboot",
            "-boot",
            "n",
            "-netdev",
            "tap,id=n0,ifname=et0,script=no,downscript=no",
        ])
        .args([
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={MAC}"),
            "-serial",
        ])
        .arg(format!("file:{}", serial.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let done = wait_for(&serial, "testos: done", Duration::from_secs(240));
    let console = std::fs::read_to_string(&serial).unwrap_or_default();
    let served = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        done,
        "the guest never finished\nserial:\n{console}\nserve:\n{served}"
    );
    eprintln!(
        "booted to the cloud-config in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let config = console
        .split("=====BEGIN CLOUD-CONFIG=====")
        .nth(1)
        .and_then(|s| s.split("=====END CLOUD-CONFIG=====").next())
        .unwrap_or_default();
    assert!(config.contains("#cloud-config"), "{console}");
    assert!(
        config.contains("e1 (52:54:00:e2:00:01)"),
        "its own config: {config}"
    );
    assert!(
        !config.contains("e2 (52:54:00:e2:00:02)"),
        "not another node's"
    );
    assert!(console.contains("testos: phoned home"), "{console}");

    // The timeline, through the API and the page, as served to people.
    std::thread::sleep(Duration::from_millis(300));
    let get = |path: &str| {
        let o = ns
            .exec(&[
                "curl",
                "-s",
                "--max-time",
                "10",
                &format!("http://10.98.0.2:8080{path}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let api = get("/api/v1/nodes/e1");
    let v: serde_json::Value = serde_json::from_str(&api).unwrap_or_else(|e| panic!("{e}: {api}"));
    assert_eq!(v["state"], "booted", "{api}");
    assert_eq!(v["ip"], "10.98.0.11", "{api}");
    assert_eq!(v["arch"], "bios", "{api}");
    let stages: Vec<&str> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "dhcp",
            "script",
            "kernel",
            "initrd",
            "cloud_config",
            "booted"
        ],
        "{api}"
    );
    let page = get("/");
    assert!(
        page.contains(&format!("data-mac=\"{MAC}\" data-state=\"booted\"")),
        "{page}"
    );
    let other = get("/api/v1/nodes/e2");
    assert!(other.contains("\"state\":\"waiting\""), "{other}");
    // Someone asking for e2's config with e1's token is refused.
    let token = config
        .split("token=")
        .nth(1)
        .map(|t| {
            t.chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        })
        .unwrap();
    let o = ns
        .exec(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://10.98.0.2:8080/cloud-config/e2?token={token}"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "403");
}
