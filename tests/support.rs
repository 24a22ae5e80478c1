//! Helpers shared by the integration tests.

/// The etcd launcher every etcd test shares (also the store's unit tests').
#[path = "../src/store/etcd/member.rs"]
pub mod etcd_member;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every example spec, sorted.
pub fn examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    out.sort();
    assert!(out.len() >= 3, "examples/ holds rack, libvirt and ci");
    out
}

/// A state directory holding a fixed site key, so tokens are stable.
pub fn fixed_state() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("site.key"),
        format!("{}\n", "42".repeat(32)),
    )
    .unwrap();
    dir
}

/// Runs `bootfleet ARGS` with `state` as state directory.
pub fn bootfleet(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootfleet"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("BOOTFLEET_STATE_DIR")
        .env_remove("BOOTFLEET_LOG")
        .output()
        .expect("run bootfleet")
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every file under `dir`, as sorted relative paths.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Renders `spec` into `out` with the key in `state`; panics on failure.
pub fn render_spec(state: &Path, spec: &Path, out: &Path) {
    let run = bootfleet(
        state,
        &[
            "render",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
}

/// Renders `example` with the fixed key into a temp dir.
pub fn render_example(example: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    let state = fixed_state();
    let out = tempfile::tempdir().unwrap();
    render_spec(
        state.path(),
        &root().join("examples").join(example),
        out.path(),
    );
    (state, out)
}

/// `write_files` of a cloud-config: (path, content).
pub type Files = Vec<(String, String)>;
/// `coreos.units` of a cloud-config: (name, content if any).
pub type Units = Vec<(String, Option<String>)>;

/// The `write_files` and `coreos.units` of a rendered cloud-config.
pub fn cloud_config_parts(text: &str) -> (Files, Units) {
    let doc: yaml_serde::Value = yaml_serde::from_str(text).unwrap();
    let s = |v: &yaml_serde::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let files = doc
        .get("write_files")
        .and_then(|f| f.as_sequence())
        .cloned()
        .unwrap_or_default();
    let units = doc
        .get("coreos")
        .and_then(|c| c.get("units"))
        .and_then(|u| u.as_sequence())
        .cloned()
        .unwrap_or_default();
    (
        files
            .iter()
            .map(|f| (s(f, "path").unwrap(), s(f, "content").unwrap()))
            .collect(),
        units
            .iter()
            .map(|u| (s(u, "name").unwrap(), s(u, "content")))
            .collect(),
    )
}

/// True when the tests run as root (namespaces, port 67).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a command that must succeed.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True when `tool` is on the PATH; otherwise says so ([`cannot_run`]).
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        cannot_run(&format!("{tool} is not installed"));
    }
    found
}

/// A child process that is killed when dropped.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` with its stdout piped and waits for its first line (the
/// servers print `listening on ...` once ready).
pub fn spawn_until_line(cmd: &mut Command) -> (Running, String) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Running(child), line)
}

/// A udhcpc script `dir/NAME.sh` that writes the variables it sees on
/// `bound` to `dir/NAME.env` (removed first): (script, env file).
pub fn bound_script(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = dir.join(format!("{name}.env"));
    let _ = std::fs::remove_file(&out);
    let script = dir.join(format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    run(&["chmod", "+x", script.to_str().unwrap()]);
    (script, out)
}

/// `KEY=value` lines written by a client's script, quotes taken off.
pub fn read_env(path: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

/// A network namespace, deleted with the processes started in it on drop.
pub struct Netns {
    pub name: String,
    pub children: Vec<std::process::Child>,
}

impl Netns {
    /// Creates `name`, replacing a leftover of an earlier run.
    pub fn new(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run(&["ip", "netns", "add", name]);
        Netns {
            name: name.to_owned(),
            children: Vec::new(),
        }
    }

    /// Creates `name` with a bridge `br0` holding `cidr` (the boot
    /// server's address), up, and loopback up.
    pub fn bridged(name: &str, cidr: &str) -> Netns {
        let ns = Netns::new(name);
        let n = ns.name.as_str();
        for args in [
            vec!["ip", "-n", n, "link", "set", "lo", "up"],
            vec!["ip", "-n", n, "link", "add", "br0", "type", "bridge"],
            vec!["ip", "-n", n, "addr", "add", cidr, "dev", "br0"],
            vec!["ip", "-n", n, "link", "set", "br0", "up"],
        ] {
            run(&args);
        }
        ns
    }

    /// A tap interface `tap` on `br0`, up, for a VM.
    pub fn tap(&self, tap: &str) {
        run(&["ip", "-n", &self.name, "tuntap", "add", tap, "mode", "tap"]);
        run(&[
            "ip", "-n", &self.name, "link", "set", tap, "master", "br0", "up",
        ]);
    }

    /// `ip netns exec NAME ARGS...`.
    pub fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Waits until the file at `path` holds `needle`, up to `limit`.
pub fn wait_for(path: &Path, needle: &str, limit: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    false
}

/// The first node token in `text` (the hex digits after `token=`).
pub fn token_in(text: &str) -> String {
    text.split("token=")
        .nth(1)
        .map(|t| t.chars().take_while(char::is_ascii_hexdigit).collect())
        .unwrap_or_else(|| panic!("no token in {text}"))
}

/// The firmware and NIC of a test VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vm {
    /// SeaBIOS, virtio NIC with QEMU's iPXE ROM.
    BiosVirtio,
    /// SeaBIOS, e1000 NIC with QEMU's iPXE ROM (what pxelinux runs on).
    BiosE1000,
    /// OVMF, virtio NIC with iPXE's EFI driver.
    Uefi,
    /// OVMF, virtio NIC without an option ROM: the firmware's own PXE
    /// fetches the `ipxe.efi` bootfleet serves and chainloads it.
    UefiPxe,
}

/// QEMU (TCG, no display) booting from the network on `tap` in `ns`
/// as `vm` says, its serial console written to `serial`.
pub fn qemu_pxe(
    ns: &Netns,
    tap: &str,
    mac: &str,
    memory_mib: u32,
    vm: Vm,
    serial: &Path,
) -> Command {
    qemu_pxe_monitored(ns, tap, mac, memory_mib, vm, serial, None)
}

/// [`qemu_pxe`], with its monitor on the unix socket `monitor` (for
/// `stop` and `cont`, [`monitor`]) when given.
pub fn qemu_pxe_monitored(
    ns: &Netns,
    tap: &str,
    mac: &str,
    memory_mib: u32,
    vm: Vm,
    serial: &Path,
    monitor: Option<&Path>,
) -> Command {
    let monitor = monitor.map_or("none".to_owned(), |p| {
        format!("unix:{},server=on,wait=off", p.display())
    });
    let mut q = ns.exec(&[
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-nographic",
        "-monitor",
        &monitor,
        "-no-reboot",
        "-boot",
        "n",
    ]);
    q.args(["-m", &memory_mib.to_string()]);
    if matches!(vm, Vm::Uefi | Vm::UefiPxe) {
        q.args(["-bios", "/usr/share/ovmf/OVMF.fd"]);
    }
    let nic = match vm {
        Vm::BiosE1000 => "e1000",
        _ => "virtio-net-pci",
    };
    let rom = if vm == Vm::UefiPxe { ",romfile=" } else { "" };
    q.args([
        "-netdev",
        &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
    ])
    .args(["-device", &format!("{nic},netdev=n0,mac={mac}{rom}")])
    .args(["-serial", &format!("file:{}", serial.display())])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    q
}

/// Sends one command (`stop`, `cont`) to a QEMU monitor socket.
pub fn monitor(socket: &Path, command: &str) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("QEMU monitor {}: {e}", socket.display()));
    s.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    // The monitor echoes its prompt and the command once it has run it.
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(5) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) if String::from_utf8_lossy(&seen).matches("(qemu)").count() >= 2 => break,
            Err(_) => {}
        }
    }
}

/// The stage names of a machine's row from the JSON API, in order.
pub fn stage_names(row: &serde_json::Value) -> Vec<&str> {
    row["stages"]
        .as_array()
        .expect("a machine row has stages")
        .iter()
        .map(|s| s["stage"].as_str().expect("each stage has a name"))
        .collect()
}

/// Says why a test cannot run here and returns, or fails the test when
/// `BOOTFLEET_TESTS_REQUIRE_ALL=1` (as `.ci/run` sets it), so that a run
/// in CI proves every test ran.
pub fn cannot_run(why: &str) {
    if std::env::var_os("BOOTFLEET_TESTS_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("this test must run here (BOOTFLEET_TESTS_REQUIRE_ALL=1) but cannot: {why}");
    }
    eprintln!("SKIP: {why}");
}

/// The test OS (src/images/testos.sh), built once per target directory;
/// `None` (said with [`cannot_run`]) when it cannot be built here.
pub fn test_os() -> Option<PathBuf> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("testos");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/images/testos.sh");
    let o = match Command::new(&script).arg(&out).output() {
        Ok(o) => o,
        Err(e) => {
            cannot_run(&format!(
                "the test OS build script {} could not be started: {e}",
                script.display()
            ));
            return None;
        }
    };
    if !o.status.success() {
        cannot_run(&format!(
            "the test OS could not be built: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
        return None;
    }
    Some(out)
}

/// Lints a `/metrics` page with Prometheus' own parser and linter
/// (`promtool check metrics`, Debian's prometheus package): the page must
/// parse and follow the naming conventions.
pub fn promtool_check(page: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics: {}{}\n{page}",
        stdout(&o),
        stderr(&o)
    );
}

/// The value of the sample written `series` (name and labels as on the
/// page: `bootfleet_x_total{a="b"}`), if the page has it.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `bootfleet serve DIR/spec.toml` in `ns`, its state in `DIR/state`, its
/// images `DIR/images`, its log `DIR/serve.log` (returned); waits until
/// it listens, or fails the test with the log.
pub fn serve_in(ns: &Netns, dir: &Path) -> (Running, PathBuf) {
    let log = dir.join("serve.log");
    let mut cmd = ns.exec(&[
        env!("CARGO_BIN_EXE_bootfleet"),
        "--state-dir",
        dir.join("state").to_str().unwrap(),
        "serve",
        "--images",
        dir.join("images").to_str().unwrap(),
        dir.join("spec.toml").to_str().unwrap(),
    ]);
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let (server, line) = spawn_until_line(&mut cmd);
    assert!(
        line.starts_with("listening:"),
        "{line:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (server, log)
}
