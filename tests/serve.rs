//! `bootfleet serve` over loopback with DHCP off, against curl as the
//! HTTP and TFTP client: tokens, assets (Range, ETag, refusals), the API,
//! the page, metrics, SIGHUP reload, and timelines across a restart.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

/// Two nodes on loopback (shared with the in-process route tests).
const SPEC: &str = include_str!("fixtures/serve.toml");

struct Served {
    _server: Running,
    http: String,
    tftp: String,
    pid: u32,
}

fn serve(dir: &Path) -> Served {
    serve_stalling_after(dir, "60")
}

fn serve_stalling_after(dir: &Path, stall_secs: &str) -> Served {
    serve_with(dir, &["--stall-after", stall_secs])
}

/// `bootfleet serve` on loopback ports of the system's choosing, without
/// DHCP, on the spec, state and images of `dir`.
fn serve_command(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bootfleet"));
    cmd.arg("--state-dir")
        .arg(dir.join("state"))
        .args([
            "serve",
            "--no-dhcp",
            "--http-listen",
            "127.0.0.1:0",
            "--tftp-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--images")
        .arg(dir.join("images"))
        .arg(dir.join("spec.toml"))
        .env_remove("BOOTFLEET_LOG");
    cmd
}

fn serve_with(dir: &Path, extra: &[&str]) -> Served {
    let mut cmd = serve_command(dir, extra);
    cmd.stderr(std::fs::File::create(dir.join("serve.log")).unwrap());
    let (server, line) = spawn_until_line(&mut cmd);
    assert!(
        line.starts_with("listening:"),
        "{line:?}: {}",
        std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
    );
    let http = line
        .split("http ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('/')
        .to_owned();
    let tftp = line
        .split("tftp ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let pid = server.0.id();
    Served {
        _server: server,
        http,
        tftp,
        pid,
    }
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap()
}

/// Status code of a GET (or of the given curl arguments).
fn code(args: &[&str]) -> String {
    let mut a = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    a.extend_from_slice(args);
    stdout(&curl(&a))
}

fn setup() -> tempfile::TempDir {
    let dir = fixed_state();
    let d = dir.path();
    std::fs::create_dir_all(d.join("state")).unwrap();
    std::fs::rename(d.join("site.key"), d.join("state/site.key")).unwrap();
    std::fs::create_dir_all(d.join("images/os")).unwrap();
    std::fs::write(d.join("images/os/vmlinuz"), vec![7u8; 300_000]).unwrap();
    std::fs::write(d.join("images/os/initrd.img"), b"initrd").unwrap();
    std::fs::write(d.join("secret"), b"not for you").unwrap();
    std::os::unix::fs::symlink(d.join("secret"), d.join("images/escape")).unwrap();
    std::fs::write(d.join("spec.toml"), SPEC).unwrap();
    dir
}

fn token_of(http: &str, node: &str) -> String {
    token_in(&stdout(&curl(&[&format!("{http}/ipxe/{node}.ipxe")])))
}

#[test]
fn cloud_configs_need_the_nodes_own_token() {
    if !have("curl") {
        return;
    }
    let dir = setup();
    let s = serve(dir.path());
    let (t1, t2) = (token_of(&s.http, "a1"), token_of(&s.http, "a2"));
    assert_ne!(t1, t2);
    let url = |node: &str, t: &str| format!("{}/cloud-config/{node}?token={t}", s.http);
    assert_eq!(
        code(&[&format!("{}/cloud-config/a1", s.http)]),
        "403",
        "no token"
    );
    assert_eq!(code(&[&url("a1", &t2)]), "403", "another node's token");
    assert_eq!(code(&[&url("a1", "00")]), "403", "a wrong token");
    assert_eq!(code(&[&url("nobody", &t1)]), "404");
    let body = stdout(&curl(&[&url("a1", &t1)]));
    assert!(body.starts_with("#cloud-config"), "{body}");
    assert!(body.contains("a1"), "{body}");
    assert!(!body.contains(&t2), "a1's config holds only a1's token");
    assert_eq!(code(&[&url("a2", &t2)]), "200");
}

/// (thread name, nice value) of every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap();
        // pid (comm) state ... : comm may hold spaces, so split after ')'.
        let (head, rest) = stat.rsplit_once(") ").unwrap();
        let name = head.split_once(" (").unwrap().1.to_owned();
        // Fields after comm start at field 3 (state); nice is field 19.
        let nice = rest.split(' ').nth(19 - 3).unwrap().parse().unwrap();
        out.push((name, nice));
    }
    out
}

#[test]
fn tftp_runs_on_threads_of_its_own_ahead_of_the_http_workers() {
    let dir = setup();
    let s = serve(dir.path());
    // Threads name themselves and set their priority as they start, so
    // a first look may come too early.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let threads = threads(s.pid);
        let tftp: Vec<i64> = threads
            .iter()
            .filter(|(n, _)| n == "tftp")
            .map(|t| t.1)
            .collect();
        let workers: Vec<i64> = threads
            .iter()
            .filter(|(n, _)| n == "http")
            .map(|t| t.1)
            .collect();
        let settled = !tftp.is_empty() && !workers.is_empty();
        if settled
            && tftp.iter().all(|t| *t == tftp[0])
            && workers.iter().all(|w| *w == tftp[0] + 5)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "want tftp threads and HTTP workers 5 nice levels below them: {threads:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn assets_support_range_and_etag_and_never_leave_the_images_directory() {
    if !have("curl") {
        return;
    }
    let dir = setup();
    let s = serve(dir.path());
    let kernel = format!("{}/assets/os/vmlinuz", s.http);
    let head = stdout(&curl(&["-i", "-r", "100-199", &kernel]));
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 100"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-range: bytes 100-199/300000"),
        "{head}"
    );
    let etag = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("etag:")
                .then(|| l[5..].trim().to_owned())
        })
        .expect("an ETag");
    assert_eq!(
        code(&["-H", &format!("If-None-Match: {etag}"), &kernel]),
        "304"
    );
    let whole = curl(&[&kernel]);
    assert_eq!(whole.stdout.len(), 300_000);
    for bad in [
        "/assets/escape",
        "/assets/../secret",
        "/assets/os/",
        "/assets/os",
        "/assets/%2e%2e/secret",
    ] {
        assert_eq!(
            code(&["--path-as-is", &format!("{}{bad}", s.http)]),
            "404",
            "{bad}"
        );
    }
}

#[test]
fn a_big_file_fetched_over_http_and_tftp_is_read_from_disk_once_within_the_memory_bound() {
    if !have("curl") {
        return;
    }
    let dir = setup();
    let initrd: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("images/os/big.img"), &initrd).unwrap();
    let reads = |s: &Served| {
        let metrics = stdout(&curl(&[&format!("{}/metrics", s.http)]));
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("bootfleet_file_reads_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no file reads in {metrics}"))
    };
    let over_tftp = |s: &Served| {
        let out = dir.path().join("over-tftp");
        let _ = std::fs::remove_file(&out);
        let tftp = curl(&[
            "--tftp-blksize",
            "1468",
            "-o",
            out.to_str().unwrap(),
            &format!("tftp://{}/os/big.img", s.tftp),
        ]);
        tftp.status.success() && std::fs::read(&out).unwrap() == initrd
    };
    {
        let s = serve(dir.path());
        assert_eq!(reads(&s), 0);
        let http = curl(&[&format!("{}/assets/os/big.img", s.http)]);
        assert!(http.stdout == initrd, "HTTP copy differs");
        assert_eq!(reads(&s), 1, "HTTP read it into the shared copies");
        assert!(over_tftp(&s), "TFTP copy differs");
        assert_eq!(reads(&s), 1, "TFTP served the copy HTTP read");
    }
    // A bound below the file: HTTP serves it from disk, TFTP says busy.
    let s = serve_with(dir.path(), &["--max-memory-mib", "2"]);
    let http = curl(&[&format!("{}/assets/os/big.img", s.http)]);
    assert!(http.stdout == initrd, "HTTP copy from disk differs");
    assert_eq!(reads(&s), 0);
    assert!(!over_tftp(&s), "TFTP served a file over the memory bound");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("memory_full"), "{log}");
}

#[test]
fn the_api_page_and_metrics_follow_a_machine_to_booted_and_keep_it_across_a_restart() {
    if !have("curl") {
        return;
    }
    let dir = setup();
    {
        let s = serve(dir.path());
        let t1 = token_of(&s.http, "a1");
        // a1 (127.0.0.1 in the spec) fetches its script, kernel and config
        // and calls home; the TFTP fetch of its pxelinux config counts too.
        assert_eq!(
            code(&[&format!("{}/ipxe/boot?mac=52-54-00-5e-00-01", s.http)]),
            "200"
        );
        let tftp = curl(&[&format!(
            "tftp://{}/pxelinux.cfg/01-52-54-00-5e-00-01",
            s.tftp
        )]);
        assert!(stdout(&tftp).contains("a1"), "{}", stdout(&tftp));
        assert_eq!(code(&[&format!("{}/assets/os/vmlinuz", s.http)]), "200");
        assert_eq!(
            code(&[&format!("{}/cloud-config/a1?token={t1}", s.http)]),
            "200"
        );
        assert_eq!(
            code(&[
                "-X",
                "POST",
                &format!("{}/phone-home/a1?token={t1}", s.http)
            ]),
            "204"
        );
        let api = stdout(&curl(&[&format!("{}/api/v1/nodes/a1", s.http)]));
        let v: serde_json::Value = serde_json::from_str(&api).unwrap();
        assert_eq!(v["state"], "booted", "{api}");
        let stages = stage_names(&v);
        assert_eq!(
            stages,
            ["loader", "script", "kernel", "cloud_config", "booted"],
            "{api}"
        );
        let all: serde_json::Value =
            serde_json::from_str(&stdout(&curl(&[&format!("{}/api/v1/nodes", s.http)]))).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 2);
        assert_eq!(all[1]["state"], "waiting");
        let metrics = stdout(&curl(&[&format!("{}/metrics", s.http)]));
        if have("promtool") {
            promtool_check(&metrics);
        }
        assert!(
            metrics.contains("bootfleet_machines{state=\"booted\"} 1"),
            "{metrics}"
        );
        // The histograms moved with the traffic: the config's transfer,
        // each route's requests, the stages and the whole boot.
        for (series, at_least) in [
            (
                "bootfleet_tftp_transfer_duration_seconds_count{kind=\"loader\"}",
                1.0,
            ),
            (
                "bootfleet_tftp_transfer_size_bytes_count{kind=\"loader\"}",
                1.0,
            ),
            (
                "bootfleet_http_request_duration_seconds_count{route=\"/assets/\"}",
                1.0,
            ),
            (
                "bootfleet_http_request_duration_seconds_count{route=\"/cloud-config/\"}",
                1.0,
            ),
            (
                "bootfleet_boot_stage_duration_seconds_count{stage=\"kernel\"}",
                1.0,
            ),
            (
                "bootfleet_boot_stage_duration_seconds_count{stage=\"booted\"}",
                1.0,
            ),
            ("bootfleet_tftp_requests_total", 1.0),
            (
                "bootfleet_http_requests_total{route=\"/phone-home/\",status=\"204\"}",
                1.0,
            ),
        ] {
            let v = sample(&metrics, series).unwrap_or_else(|| panic!("{series}: {metrics}"));
            assert!(v >= at_least, "{series} = {v}");
        }
        assert_eq!(
            sample(&metrics, "bootfleet_tftp_active_transfers"),
            Some(0.0)
        );
        // A scraper that asks for OpenMetrics gets it.
        let om = stdout(&curl(&[
            "-H",
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            &format!("{}/metrics", s.http),
        ]));
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("# TYPE bootfleet_tftp_requests counter"),
            "{om}"
        );
        assert!(
            metrics.contains("bootfleet_tftp_transfers_total{result=\"completed\"} 1"),
            "{metrics}"
        );
        for wait in ["polled", "slept"] {
            let line = format!("bootfleet_tftp_answers_total{{wait=\"{wait}\"}} ");
            assert!(metrics.contains(&line), "{line}: {metrics}");
        }
        let table = bootfleet(
            &dir.path().join("state"),
            &[
                "nodes",
                dir.path().join("spec.toml").to_str().unwrap(),
                "--server",
                s.http.trim_start_matches("http://"),
            ],
        );
        let text = stdout(&table);
        assert!(table.status.success(), "{text}{}", stderr(&table));
        let a1 = text
            .lines()
            .find(|l| l.starts_with("a1 "))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            a1.contains("52:54:00:5e:00:01")
                && a1.contains("booted")
                && a1.contains("cloud_config"),
            "{text}"
        );
        let a2 = text.lines().find(|l| l.starts_with("a2 ")).unwrap();
        assert!(a2.contains("waiting"), "{text}");
        let page = stdout(&curl(&[&format!("{}/", s.http)]));
        assert!(
            page.contains("data-mac=\"52:54:00:5e:00:01\" data-state=\"booted\""),
            "{page}"
        );
        let _ = Command::new("kill").arg(s.pid.to_string()).status();
        let mut s = s;
        let _ = s._server.0.wait();
    }
    let s = serve(dir.path());
    let api = stdout(&curl(&[&format!(
        "{}/api/v1/nodes/52-54-00-5e-00-01",
        s.http
    )]));
    assert!(
        api.contains("\"state\":\"booted\""),
        "after a restart: {api}"
    );
}

#[test]
fn sighup_reloads_a_good_spec_and_keeps_the_old_one_when_the_new_is_bad() {
    if !have("curl") {
        return;
    }
    let dir = setup();
    let d = dir.path();
    let s = serve(d);
    // Each SIGHUP is answered in the log, reloaded or not.
    let answers = || {
        std::fs::read_to_string(d.join("serve.log"))
            .unwrap_or_default()
            .matches("reloaded")
            .count()
    };
    let hup = || {
        let before = answers();
        Command::new("kill")
            .args(["-HUP", &s.pid.to_string()])
            .status()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while answers() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no answer to SIGHUP in the log"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    std::fs::write(
        d.join("spec.toml"),
        SPEC.replace("[boot]", "[boot]\nbogus = 1"),
    )
    .unwrap();
    hup();
    assert_eq!(
        code(&[&format!("{}/ipxe/a1.ipxe", s.http)]),
        "200",
        "the old spec still serves"
    );
    let log = std::fs::read_to_string(d.join("serve.log")).unwrap();
    assert!(
        log.contains("spec not reloaded") && log.contains("bogus"),
        "{log}"
    );
    let grown = format!(
        "{SPEC}\n[[nodes]]\nname = \"a3\"\nmac = \"52:54:00:5e:00:03\"\nip = \"127.0.0.3\"\nroles = [\"worker\"]\n"
    );
    std::fs::write(d.join("spec.toml"), grown).unwrap();
    assert_eq!(code(&[&format!("{}/ipxe/a3.ipxe", s.http)]), "404");
    hup();
    assert_eq!(
        code(&[&format!("{}/ipxe/a3.ipxe", s.http)]),
        "200",
        "the new node is served"
    );
    let a3 = stdout(&curl(&[&format!("{}/api/v1/nodes/a3", s.http)]));
    assert!(
        a3.contains("\"known\":true") && a3.contains("\"state\":\"waiting\""),
        "the status page knows the new node: {a3}"
    );
}

#[test]
fn the_status_page_in_headless_chromium_shows_booted_and_stalled_machines() {
    if !have("curl") || !have("chromium") {
        return;
    }
    let dir = setup();
    let d = dir.path();
    let s = serve_stalling_after(d, "1");
    let http = s.http.clone();
    // a1 boots all the way; a2 (by MAC) fetches its script and goes quiet.
    let t1 = token_of(&http, "a1");
    assert_eq!(
        code(&["-X", "POST", &format!("{http}/phone-home/a1?token={t1}")]),
        "204"
    );
    assert_eq!(
        code(&[&format!("{http}/ipxe/boot?mac=52-54-00-5e-00-02")]),
        "200"
    );
    // Until a2 has been quiet for longer than --stall-after (1 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !stdout(&curl(&[&format!("{http}/api/v1/nodes/52-54-00-5e-00-02")]))
        .contains("\"state\":\"stalled\"")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a2 never shown as stalled"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let browser = |extra: &str| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,500",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(extra)
            .arg(format!("{http}/"))
            .output()
            .unwrap()
    };
    let dom = browser("--dump-dom");
    let html = stdout(&dom);
    assert!(
        html.contains("data-mac=\"52:54:00:5e:00:01\" data-state=\"booted\""),
        "{html}{}",
        stderr(&dom)
    );
    assert!(
        html.contains("data-mac=\"52:54:00:5e:00:02\" data-state=\"stalled\""),
        "{html}"
    );
    assert!(html.contains("stalled at script"), "{html}");
    let png = browser(&format!("--screenshot={}", shot.display()));
    let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{e}: {}", stderr(&png)));
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
        "a real screenshot"
    );
    eprintln!("screenshot kept at {}", shot.display());
}

#[test]
fn unknown_machines_are_enrolled_with_their_own_name_address_and_token_and_keep_them() {
    if !have("curl") {
        return;
    }
    let dir = setup();
    let d = dir.path();
    let spec = SPEC.replace(
        "server = \"127.0.0.9\"",
        "server = \"127.0.0.9\"\ndynamic_range = [\"127.0.0.100\", \"127.0.0.200\"]",
    ) + "\n[enrolment]\nrole = \"worker\"\nname = \"w-{mac}\"\n";
    std::fs::write(d.join("spec.toml"), spec).unwrap();
    let script_for = |http: &str, from: &str| {
        let url = format!("{http}/ipxe/boot?mac=52-54-00-5e-00-09");
        stdout(&curl(&["--interface", from, &url]))
    };
    let token;
    {
        let s = serve_with(d, &["--check-source"]);
        // The machine asks for its script from 127.0.0.3: it is enrolled
        // with that address and gets a script of its own.
        let script = script_for(&s.http, "127.0.0.3");
        assert!(
            script.contains("/cloud-config/w-5254005e0009?token="),
            "{script}"
        );
        token = token_in(&script);
        let url = format!("{}/cloud-config/w-5254005e0009?token={token}", s.http);
        let config = stdout(&curl(&["--interface", "127.0.0.3", &url]));
        assert!(config.starts_with("#cloud-config"), "{config}");
        assert!(
            config.contains("w-5254005e0009 (52:54:00:5e:00:09)"),
            "{config}"
        );
        // --check-source: its config is not served to another address,
        // and a spec node's is served only to its own.
        assert_eq!(code(&["--interface", "127.0.0.1", &url]), "403");
        let a2 = format!(
            "{}/cloud-config/a2?token={}",
            s.http,
            token_of(&s.http, "a2")
        );
        assert_eq!(code(&["--interface", "127.0.0.1", &a2]), "403");
        let row = stdout(&curl(&[&format!("{}/api/v1/nodes/a2", s.http)]));
        let v: serde_json::Value = serde_json::from_str(&row).unwrap();
        assert_eq!(
            v["failure"]["message"],
            "failed at cloud_config: /cloud-config/a2 refused: wrong source address 127.0.0.1 (403)",
            "{row}"
        );
        assert!(
            v["failure"]["fix"]
                .as_str()
                .unwrap_or_default()
                .contains("--check-source"),
            "{row}"
        );
        assert_eq!(code(&["--interface", "127.0.0.2", &a2]), "200");
        let row = stdout(&curl(&[&format!("{}/api/v1/nodes/a2", s.http)]));
        assert!(row.contains("\"failure\":null"), "served at last: {row}");
        let api = stdout(&curl(&[&format!("{}/api/v1/nodes/w-5254005e0009", s.http)]));
        let v: serde_json::Value = serde_json::from_str(&api).unwrap();
        assert_eq!(v["known"], true, "{api}");
        assert_eq!(v["ip"], "127.0.0.3", "{api}");
        assert_eq!(v["roles"], serde_json::json!(["worker"]), "{api}");
        assert!(d.join("state/state.redb").exists(), "kept in the store");
        let log = std::fs::read_to_string(d.join("serve.log")).unwrap();
        assert!(
            log.contains("enrolled a machine that is not in the spec"),
            "{log}"
        );
    }
    // After a restart it is the same machine: name, address and token,
    // wherever it asks from.
    let s = serve(d);
    let script = script_for(&s.http, "127.0.0.4");
    assert_eq!(token_in(&script), token, "{script}");
    let api = stdout(&curl(&[&format!("{}/api/v1/nodes/w-5254005e0009", s.http)]));
    assert!(api.contains("\"ip\":\"127.0.0.3\""), "{api}");
    // Without [enrolment] an unknown machine is told it is not in the spec.
    drop(s);
    std::fs::write(d.join("spec.toml"), SPEC).unwrap();
    let s = serve(d);
    let url = format!("{}/ipxe/boot?mac=52-54-00-5e-00-77", s.http);
    assert_eq!(code(&[&url]), "404");
    assert!(stdout(&curl(&[&url])).contains("not in the cluster spec"));
}

#[test]
fn json_logs_are_one_object_per_line_with_level_message_and_fields() {
    if !have("curl") {
        return;
    }
    let dir = setup();
    let d = dir.path();
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bootfleet"));
        cmd.args(["--log-format", "json", "--state-dir"])
            .arg(d.join("state"))
            .args(["serve", "--no-dhcp", "--http-listen", "127.0.0.1:0"])
            .args(["--tftp-listen", "127.0.0.1:0", "--images"])
            .arg(d.join("images"))
            .arg(d.join("spec.toml"))
            .env_remove("BOOTFLEET_LOG")
            .stderr(std::fs::File::create(d.join("json.log")).unwrap());
        let (server, line) = spawn_until_line(&mut cmd);
        let http = line
            .split("http ")
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches('/');
        // A refused fetch logs a warning with its fields.
        assert_eq!(
            code(&[&format!("{http}/cloud-config/a1?token=wrong")]),
            "403"
        );
        run(&["kill", "-TERM", &server.0.id().to_string()]);
        let mut server = server;
        let _ = server.0.wait();
    }
    let log = std::fs::read_to_string(d.join("json.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
        assert!(l["message"].is_string(), "{l}");
    }
    let serving = lines
        .iter()
        .find(|l| l["message"] == "serving")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        serving["http_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    let refused = lines
        .iter()
        .find(|l| l["level"] == "WARN" && l["message"] == "boot step failed")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(refused["machine"], "a1", "{refused}");
    assert_eq!(refused["stage"], "cloud_config", "{refused}");
}

#[test]
fn a_store_that_fails_is_reported_with_its_cause_not_only_what_failed() {
    let dir = setup();
    let d = dir.path();
    // A damaged state database: serve must say which file, and why.
    std::fs::write(d.join("state/state.redb"), b"this is not a redb database").unwrap();
    let o = serve_command(d, &[]).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    // What failed, the file, and after it the database's own reason.
    let (_, cause) = line
        .split_once("state.redb")
        .unwrap_or_else(|| panic!("the file is not named: {line}"));
    assert!(
        cause
            .strip_prefix(": ")
            .is_some_and(|c| !c.trim().is_empty()),
        "the cause is missing: {line}"
    );
}

/// A machine that stopped reading in the middle of a download (paused,
/// powered off) must not keep the server from stopping: requests under way
/// get a few seconds, then are cut off.
#[test]
fn a_download_nobody_reads_does_not_keep_the_server_from_stopping() {
    use std::io::Write;
    let dir = setup();
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("images/os/big.img"), &big).unwrap();
    let mut s = serve(dir.path());
    let addr = s.http.trim_start_matches("http://").to_owned();
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stuck,
        "GET /assets/os/big.img HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    // The answer has started (its headers are out) and is never read.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let started = std::time::Instant::now();
    run(&["kill", "-TERM", &s.pid.to_string()]);
    let status = loop {
        if let Some(status) = s._server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("were cut off"), "{log}");
    drop(stuck);
}

/// An HTTP stage ends when its last byte was handed over, not when the
/// headers left: a kernel fetched slowly has a kernel stage as long as the
/// transfer; a transfer the client gives up is that stage's failure.
#[test]
fn a_kernel_stage_lasts_as_long_as_its_transfer_and_a_cut_transfer_is_a_failure() {
    if !have("curl") {
        return;
    }
    let dir = setup();
    // Bigger than what the loopback's socket buffers hold (a receiver's
    // may grow to tcp_rmem's 32 MiB), so that most of it waits for the
    // client.
    let kernel: Vec<u8> = (0..64u32 << 20).map(|i| (i % 249) as u8).collect();
    std::fs::write(dir.path().join("images/os/vmlinuz"), &kernel).unwrap();
    let s = serve(dir.path());
    let api = || {
        let text = stdout(&curl(&[&format!("{}/api/v1/nodes/a1", s.http)]));
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    // a1 is 127.0.0.1 in the spec: its script, then 64 MiB at 16 MiB/s.
    assert_eq!(
        code(&[&format!("{}/ipxe/boot?mac=52-54-00-5e-00-01", s.http)]),
        "200"
    );
    let started = std::time::Instant::now();
    assert_eq!(
        code(&[
            "--limit-rate",
            "16M",
            &format!("{}/assets/os/vmlinuz", s.http)
        ]),
        "200"
    );
    let took = started.elapsed().as_millis() as u64;
    let v = api();
    let kernel = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["stage"] == "kernel")
        .unwrap_or_else(|| panic!("no kernel stage: {v}"))
        .clone();
    let ms = kernel["ms"].as_u64().unwrap();
    assert_eq!(kernel["done"], true, "{v}");
    // The stage holds the transfer, but for what the socket buffers took
    // at once (it used to end with the headers, at 0 ms).
    assert!(
        ms >= 1000 && ms <= took + 500,
        "kernel {ms} ms, curl {took} ms: {v}"
    );
    // Given up after a second: the transfer was cut, and the timeline says so.
    let o = curl(&[
        "--limit-rate",
        "1M",
        "--max-time",
        "1",
        "-o",
        "/dev/null",
        &format!("{}/assets/os/vmlinuz", s.http),
    ]);
    assert!(
        !o.status.success(),
        "curl finished 64 MiB at 1 MiB/s in 1 s"
    );
    let start = std::time::Instant::now();
    let v = loop {
        let v = api();
        if !v["failure"].is_null() || start.elapsed() > std::time::Duration::from_secs(10) {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let answer = v["failure"]["answer"].as_str().unwrap_or_default();
    assert!(
        answer.starts_with("transfer cut off after ") && answer.ends_with(" of 67108864 bytes"),
        "{v}"
    );
}

/// A connection from `from` to `to` that sends half a request header and
/// nothing more.
fn half_open(from: &str, to: &str) -> std::net::TcpStream {
    use std::io::Write;
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    sock.bind(&from.into()).unwrap();
    let to: std::net::SocketAddr = to.parse().unwrap();
    sock.connect(&to.into()).unwrap();
    let mut s: std::net::TcpStream = sock.into();
    s.write_all(b"GET /boot.ipxe HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    s
}

/// Whether the server closed `s` (read gives EOF or a reset) within `wait`.
fn closed_within(s: &mut std::net::TcpStream, wait: std::time::Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or similar before the close is fine.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Anyone on a boot segment can open connections: half-open ones are
/// closed after the header timeout, one address cannot hold more than its
/// share, past the bound new connections wait (they are not lost), and a
/// booting machine's request gets through all along.
#[test]
fn half_open_connections_are_bounded_and_closed_and_a_booting_machines_request_still_gets_through()
{
    if !have("curl") {
        return;
    }
    let dir = setup();
    let s = serve_with(
        dir.path(),
        &[
            "--http-header-timeout",
            "3",
            "--http-max-connections",
            "60",
            "--http-max-per-client",
            "30",
        ],
    );
    let addr = s.http.trim_start_matches("http://").to_owned();
    // 45 from one address: 30 held, 15 closed at once.
    let mut held: Vec<std::net::TcpStream> =
        (0..45).map(|_| half_open("127.0.0.3", &addr)).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut closed_at_once = 0;
    for c in held.iter_mut() {
        if closed_within(c, std::time::Duration::from_millis(1)) {
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 15, "the address's share is 30");
    // Another machine on the segment is answered meanwhile.
    let got = code(&["--interface", "127.0.0.2", &format!("{}/boot.ipxe", s.http)]);
    assert_eq!(got, "200");
    // 30 more from another address fill the server (60): a machine's
    // connection waits for a slot instead of being refused, and is answered
    // once the half-open ones time out.
    let mut more: Vec<std::net::TcpStream> =
        (0..30).map(|_| half_open("127.0.0.4", &addr)).collect();
    let started = std::time::Instant::now();
    let got = code(&["--interface", "127.0.0.2", &format!("{}/boot.ipxe", s.http)]);
    assert_eq!(got, "200", "waited, then answered");
    eprintln!(
        "answered after {:?} with the server full",
        started.elapsed()
    );
    // Every half-open one is closed by the server after the timeout.
    for c in held.iter_mut().chain(more.iter_mut()) {
        assert!(
            closed_within(c, std::time::Duration::from_secs(10)),
            "a half-open connection still open"
        );
    }
    // A kept-alive connection that made its request and then idles is
    // closed after the same time.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    {
        use std::io::{Read, Write};
        write!(idle, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut first = [0u8; 12];
        idle.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200", "answered and kept alive");
    }
    let idled = std::time::Instant::now();
    assert!(closed_within(&mut idle, std::time::Duration::from_secs(10)));
    assert!(
        idled.elapsed() >= std::time::Duration::from_secs(2),
        "closed for idling, not at once: {:?}",
        idled.elapsed()
    );
    let metrics = stdout(&curl(&[&format!("{}/metrics", s.http)]));
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert_eq!(value("bootfleet_http_connections_refused_total"), 15.0);
    assert!(value("bootfleet_http_connections_full_total") >= 1.0);
    assert!(
        value("bootfleet_http_header_timeouts_total") >= 60.0,
        "{metrics}"
    );
    // The metrics request's own connection is the one open now.
    assert!(value("bootfleet_http_connections_open") <= 1.0, "{metrics}");
}
