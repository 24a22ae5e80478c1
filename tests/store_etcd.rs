//! `bootfleet serve` keeping its state in a real etcd (Debian's
//! etcd-server, started here on loopback): servers of one site sign with
//! one key, a machine's timeline seen by one shows on the other's page, an
//! enrolment made by one is known to the next, and leases are listed from
//! etcd.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

use crate::support::etcd_member::{Member as Etcd, free_port};

fn etcd() -> Option<Etcd> {
    if !have("etcd") || !have("curl") {
        return None;
    }
    Etcd::loopback()
}

fn spec(etcd: &str) -> String {
    format!(
        r#"[cluster]
name = "shared"

[network]
interface = "lo"
subnet = "127.0.0.0/8"
server = "127.0.0.9"
dynamic_range = ["127.0.0.100", "127.0.0.200"]

[boot]
kernel = "os/vmlinuz"
initrd = "os/initrd.img"

[enrolment]
role = "worker"
name = "w-{{mac}}"

[[nodes]]
name = "a1"
mac = "52:54:00:5e:00:01"
ip = "127.0.0.5"
roles = ["etcd", "worker"]

[state]
backend = "etcd"
endpoints = ["{etcd}"]
"#
    )
}

/// `bootfleet serve` over loopback (no DHCP) with its own state directory
/// `state`; its HTTP base URL.
fn serve(dir: &Path, state: &str) -> (Running, String) {
    serve_with(dir, state, &[])
}

/// [`serve`] with `env` set for it.
fn serve_with(dir: &Path, state: &str, env: &[(&str, &str)]) -> (Running, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bootfleet"));
    cmd.envs(env.iter().copied());
    cmd.arg("--state-dir")
        .arg(dir.join(state))
        .args(["serve", "--no-dhcp", "--http-listen", "127.0.0.1:0"])
        .args(["--tftp-listen", "127.0.0.1:0", "--images"])
        .arg(dir.join("images"))
        .arg(dir.join("spec.toml"))
        .stderr(std::fs::File::create(dir.join(format!("{state}.log"))).unwrap());
    let (server, line) = spawn_until_line(&mut cmd);
    assert!(
        line.starts_with("listening:"),
        "{line:?}: {}",
        std::fs::read_to_string(dir.join(format!("{state}.log"))).unwrap_or_default()
    );
    let http = line
        .split("http ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('/')
        .to_owned();
    (server, http)
}

fn curl(args: &[&str]) -> String {
    let o = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn code(url: &str) -> String {
    curl(&["-o", "/dev/null", "-w", "%{http_code}", url])
}

#[test]
fn servers_sharing_an_etcd_sign_with_one_key_and_know_each_others_enrolments_needs_etcd() {
    let Some(etcd) = etcd() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("images/os")).unwrap();
    std::fs::write(d.join("spec.toml"), spec(&etcd.url)).unwrap();
    // Two servers of one site start at once, each with a state directory
    // of its own: the site key is created once, in etcd.
    let (a, b) = std::thread::scope(|t| {
        let a = t.spawn(|| serve(d, "state-a"));
        let b = t.spawn(|| serve(d, "state-b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    let token = |http: &str| token_in(&curl(&[&format!("{http}/ipxe/a1.ipxe")]));
    assert_eq!(token(&a.1), token(&b.1), "one site key");
    let t = token(&a.1);
    assert!(
        !d.join("state-a/state.redb").exists(),
        "nothing kept locally"
    );
    // a1 asks server A for its script, then server B for its
    // cloud-config: both servers show one boot, each stage with the
    // server that saw it.
    assert!(curl(&[&format!("{}/ipxe/boot?mac=52-54-00-5e-00-01", a.1)]).contains("#!ipxe"));
    assert_eq!(code(&format!("{}/cloud-config/a1?token={t}", b.1)), "200");
    let name = |http: &str| http.trim_start_matches("http://").to_owned();
    let (a_name, b_name) = (name(&a.1), name(&b.1));
    let seen = |row: &serde_json::Value| -> Vec<(String, String)> {
        row["stages"]
            .as_array()
            .map(|stages| {
                stages
                    .iter()
                    .map(|s| {
                        let f = |k: &str| s[k].as_str().unwrap_or("").to_owned();
                        (f("stage"), f("seen_by"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let want = vec![
        ("script".to_owned(), a_name.clone()),
        ("cloud_config".to_owned(), b_name.clone()),
    ];
    for http in [&a.1, &b.1] {
        let mut row = serde_json::Value::Null;
        for _ in 0..50 {
            row = serde_json::from_str(&curl(&[&format!("{http}/api/v1/nodes/a1")])).unwrap();
            if seen(&row) == want {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(seen(&row), want, "on {http}: {row}");
        assert_eq!(row["stage"], "cloud_config", "{row}");
        assert_eq!(row["boots"], 1, "one boot, not one per server: {row}");
        assert_eq!(row["seen_by"], b_name.as_str(), "the last event: {row}");
    }
    // A machine enrolled by server A ...
    let script = curl(&[
        "--interface",
        "127.0.0.3",
        &format!("{}/ipxe/boot?mac=52-54-00-5e-00-09", a.1),
    ]);
    assert!(
        script.contains("/cloud-config/w-5254005e0009?token="),
        "{script}"
    );
    let enrolled_token = token_in(&script);
    drop(a);
    // ... is the same machine to a server started later.
    let (_c, c) = serve(d, "state-c");
    let again = curl(&[&format!("{c}/ipxe/boot?mac=52-54-00-5e-00-09")]);
    assert_eq!(token_in(&again), enrolled_token, "{again}");
    let row = curl(&[&format!("{c}/api/v1/nodes/w-5254005e0009")]);
    assert!(row.contains("\"ip\":\"127.0.0.3\""), "{row}");
    // `bootfleet leases` with no server reachable reads etcd.
    drop(b);
    let o = Command::new(env!("CARGO_BIN_EXE_bootfleet"))
        .arg("--state-dir")
        .arg(d.join("state-d"))
        .args(["leases", d.join("spec.toml").to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "[]", "no DHCP served, no leases");
}

#[test]
fn serve_says_which_etcd_it_cannot_reach_and_exits_needs_etcd() {
    if !have("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("images")).unwrap();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    std::fs::write(d.join("spec.toml"), spec(&nowhere)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bootfleet"))
        .arg("--state-dir")
        .arg(d.join("state"))
        .args(["serve", "--no-dhcp", "--http-listen", "127.0.0.1:0"])
        .args(["--tftp-listen", "127.0.0.1:0", "--images"])
        .arg(d.join("images"))
        .arg(d.join("spec.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&nowhere.replace("http://", "")), "{err}");
}

/// What systemd would have heard on its notification socket, waiting up
/// to `wait` for a message with `needle`; every message read.
fn heard(sock: &std::os::unix::net::UnixDatagram, needle: &str, wait: Duration) -> Vec<String> {
    let start = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < wait {
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = m.contains(needle);
            got.push(m);
            if done {
                break;
            }
        }
    }
    got
}

/// `/healthz` until its status is `want` (up to 40 s): the body.
fn health_until(http: &str, want: &str) -> serde_json::Value {
    let mut last = String::new();
    for _ in 0..200 {
        let status = code(&format!("{http}/healthz"));
        last = curl(&[&format!("{http}/healthz")]);
        if status == want {
            return serde_json::from_str(&last).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("/healthz never answered {want}: {last}");
}

#[test]
fn a_wedged_etcd_makes_healthz_say_503_and_stops_the_systemd_watchdog_until_it_answers_again_needs_etcd()
 {
    let Some(etcd) = etcd() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("images/os")).unwrap();
    std::fs::write(d.join("spec.toml"), spec(&etcd.url)).unwrap();
    // systemd's side of Type=notify with WatchdogSec=1: a datagram socket.
    let path = d.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (_server, http) = serve_with(
        d,
        "state",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let first = heard(&sock, "READY=1", Duration::from_secs(5));
    assert!(first[0].starts_with("READY=1"), "{first:?}");
    let pings = heard(&sock, "WATCHDOG=1", Duration::from_secs(3));
    assert!(pings.iter().any(|m| m == "WATCHDOG=1"), "{pings:?}");
    let well = health_until(&http, "200");
    assert_eq!(well["status"], "ok", "{well}");
    let parts: Vec<&str> = well["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["part"].as_str())
        .collect();
    assert_eq!(parts, ["tftp", "http", "store"], "{well}");

    // etcd stops answering (SIGSTOP: connections open, no replies).
    run(&["kill", "-STOP", &etcd.child.id().to_string()]);
    let sick = health_until(&http, "503");
    assert_eq!(sick["status"], "unhealthy", "{sick}");
    let store = sick["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["part"] == "store")
        .unwrap();
    assert_eq!(store["ok"], false, "{sick}");
    assert!(
        store["detail"].as_str().unwrap().contains("unreachable"),
        "{sick}"
    );
    let metrics = curl(&[&format!("{http}/metrics")]);
    assert!(
        metrics.contains("bootfleet_part_up{part=\"store\"} 0"),
        "{metrics}"
    );
    // The pings stop while it is unwell (systemd would restart it).
    let said = heard(&sock, "STATUS=unwell", Duration::from_secs(5));
    assert!(
        said.iter().any(|m| m.starts_with("STATUS=unwell: store")),
        "{said:?}"
    );
    let quiet = heard(&sock, "WATCHDOG=1", Duration::from_secs(2));
    assert!(!quiet.iter().any(|m| m == "WATCHDOG=1"), "{quiet:?}");

    // etcd answers again: healthy, and the pings resume.
    run(&["kill", "-CONT", &etcd.child.id().to_string()]);
    let back = health_until(&http, "200");
    assert_eq!(back["status"], "ok", "{back}");
    let pings = heard(&sock, "WATCHDOG=1", Duration::from_secs(5));
    assert!(pings.iter().any(|m| m == "WATCHDOG=1"), "{pings:?}");
}
