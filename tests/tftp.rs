//! The TFTP server against real clients over loopback: atftp, curl,
//! tftp-hpa, busybox and the `tftpd` crate's client. Each test skips with a
//! message when its client is not installed; CI installs them all.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bootfleet::tftp::packet::Packet;
use sha2::{Digest, Sha256};

use crate::support::*;

/// A running `bootfleet tftp` on 127.0.0.1 with fixture files.
struct Server {
    _process: Running,
    port: u16,
    /// Holds `root/` (served), `outside` (a file a symlink escapes to) and
    /// the server's log; removed with the server.
    base: tempfile::TempDir,
    log: PathBuf,
}

/// Deterministic pseudo-random bytes.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const FIXTURES: &[(&str, usize)] = &[
    ("empty.bin", 0),
    ("one-block.bin", 512),
    ("one-mib.bin", 1 << 20),
    ("big.bin", 64 << 20),
];

fn start(extra: &[&str]) -> Server {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    for (i, (name, len)) in FIXTURES.iter().enumerate() {
        std::fs::write(root.join(name), bytes(*len, i as u64 + 7)).unwrap();
    }
    std::fs::write(root.join("text.txt"), "line one\nline two\r\nend\n").unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/inner.bin"), b"inner").unwrap();
    std::fs::write(base.path().join("outside"), "secret").unwrap();
    std::os::unix::fs::symlink(base.path().join("outside"), root.join("escape")).unwrap();
    let log = base.path().join("tftp.log");
    let state = fixed_state();
    let mut args = vec![
        "--state-dir",
        state.path().to_str().unwrap(),
        "tftp",
        "--root",
        root.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bootfleet"));
    cmd.args(&args)
        .env("BOOTFLEET_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap());
    let (process, line) = spawn_until_line(&mut cmd);
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    Server {
        _process: process,
        port,
        base,
        log,
    }
}

impl Server {
    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.base.path().join("root").join(name)).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn assert_same(got: &Path, want: &[u8], what: &str) {
    let got = std::fs::read(got).unwrap_or_else(|e| panic!("{what}: no output: {e}"));
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(sha(&got), sha(want), "{what}: checksum");
}

/// atftp's and busybox tftp's shared "get `name` into `out`" arguments.
fn get_into(cmd: &mut Command, name: &str, out: &Path, port: u16) {
    cmd.args([
        "-g",
        "-r",
        name,
        "-l",
        out.to_str().unwrap(),
        "127.0.0.1",
        &port.to_string(),
    ]);
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn atftp_fetches_every_fixture_with_blksize_windowsize_and_tsize() {
    if !have("atftp") {
        return;
    }
    let s = start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in FIXTURES {
        for opts in [
            vec![],
            vec!["blksize 1468", "windowsize 16", "tsize enable"],
            vec!["blksize 8192", "windowsize 64"],
        ] {
            let out = dir.path().join(format!("{name}-{}", opts.len()));
            let mut cmd = Command::new("atftp");
            for o in &opts {
                cmd.args(["--option", o]);
            }
            get_into(&mut cmd, name, &out, s.port);
            run_ok(&mut cmd, &format!("atftp {name} {opts:?}"));
            assert_same(&out, &s.file(name), &format!("atftp {name} {opts:?}"));
        }
    }
}

/// The `answers` and `polled` counts of the log's completed transfers.
fn answer_counts(log: &str) -> Vec<(u64, u64)> {
    let field = |line: &str, name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    log.lines()
        .filter(|l| l.contains("transfer completed"))
        .map(|l| (field(l, "answers="), field(l, "polled=")))
        .collect()
}

#[test]
fn a_quick_clients_answers_are_caught_by_polling_unless_polling_is_off() {
    if !have("atftp") {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        cannot_run("one core, where the server never polls");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A cap far above any round trip here, so the test does not hang on
    // this machine's speed: it checks that polling catches a real
    // client's ACKs, not where the threshold lies (the unit tests do).
    for (spin, polls) in [("100000", true), ("0", false)] {
        let s = start(&["--spin-us", spin]);
        let file = bytes(4 << 20, 99);
        std::fs::write(s.base.path().join("root/four-mib.bin"), &file).unwrap();
        let out = dir.path().join(format!("spin-{spin}"));
        let mut cmd = Command::new("atftp");
        cmd.args(["--option", "blksize 1468", "--option", "windowsize 4"]);
        get_into(&mut cmd, "four-mib.bin", &out, s.port);
        run_ok(&mut cmd, "atftp four-mib.bin");
        assert_same(&out, &file, "atftp four-mib.bin");
        let counts = answer_counts(&s.log());
        let [(answers, polled)] = counts[..] else {
            panic!("one completed transfer expected: {}", s.log())
        };
        // 4 MiB in windows of 4 blocks of 1468 bytes: 715 windows, and an
        // OACK; the first 179 (up to the one that passes 1 MiB) are short
        // of the warm-up.
        assert!(answers >= 716, "--spin-us {spin}: {answers} answers");
        if polls {
            assert!(
                polled > 0 && polled <= answers - 179,
                "--spin-us {spin}: {polled} of {answers} polled"
            );
        } else {
            assert_eq!(polled, 0, "--spin-us 0 polled");
        }
    }
}

#[test]
fn curl_fetches_every_fixture_at_every_blksize() {
    if !have("curl") {
        return;
    }
    let s = start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in FIXTURES {
        for blksize in ["512", "1468", "65464"] {
            let out = dir.path().join(format!("{name}-{blksize}"));
            let url = format!("tftp://127.0.0.1:{}/{name}", s.port);
            run_ok(
                Command::new("curl").args([
                    "--silent",
                    "--show-error",
                    "--fail",
                    "--tftp-blksize",
                    blksize,
                    "-o",
                    out.to_str().unwrap(),
                    &url,
                ]),
                &format!("curl {name} {blksize}"),
            );
            assert_same(
                &out,
                &s.file(name),
                &format!("curl {name} blksize {blksize}"),
            );
        }
    }
    // Without any option: plain RFC 1350 from curl too.
    let out = dir.path().join("plain");
    let url = format!("tftp://127.0.0.1:{}/one-mib.bin", s.port);
    run_ok(
        Command::new("curl").args([
            "--silent",
            "--fail",
            "--tftp-no-options",
            "-o",
            out.to_str().unwrap(),
            &url,
        ]),
        "curl --tftp-no-options",
    );
    assert_same(&out, &s.file("one-mib.bin"), "curl --tftp-no-options");
}

#[test]
fn tftp_hpa_fetches_every_fixture_in_plain_rfc_1350_including_netascii() {
    if !have("tftp") {
        return;
    }
    let s = start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // big.bin at 512-byte blocks is 131,073 blocks: the block number wraps.
    for (name, _) in FIXTURES {
        let out = dir.path().join(name);
        run_ok(
            Command::new("tftp").args([
                "127.0.0.1",
                &s.port.to_string(),
                "-m",
                "binary",
                "-c",
                "get",
                name,
                out.to_str().unwrap(),
            ]),
            &format!("tftp-hpa {name}"),
        );
        assert_same(&out, &s.file(name), &format!("tftp-hpa {name}"));
    }
    let out = dir.path().join("text.txt");
    run_ok(
        Command::new("tftp").args([
            "127.0.0.1",
            &s.port.to_string(),
            "-m",
            "ascii",
            "-c",
            "get",
            "text.txt",
            out.to_str().unwrap(),
        ]),
        "tftp-hpa netascii",
    );
    assert_same(
        &out,
        &s.file("text.txt"),
        "tftp-hpa netascii (converted back by the client)",
    );
}

#[test]
fn busybox_tftp_fetches_every_fixture() {
    if !have("busybox") {
        return;
    }
    let s = start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in FIXTURES {
        for blksize in [None, Some("1468")] {
            let out = dir.path().join(format!("{name}-{blksize:?}"));
            let mut cmd = Command::new("busybox");
            cmd.arg("tftp");
            if let Some(b) = blksize {
                cmd.args(["-b", b]);
            }
            get_into(&mut cmd, name, &out, s.port);
            run_ok(&mut cmd, &format!("busybox tftp {name}"));
            assert_same(
                &out,
                &s.file(name),
                &format!("busybox tftp {name} {blksize:?}"),
            );
        }
    }
}

#[test]
fn the_tftpd_crate_client_fetches_every_fixture_with_windowsize() {
    let s = start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in FIXTURES {
        let args = [
            "-i",
            "127.0.0.1",
            "-p",
            &s.port.to_string(),
            "-b",
            "1468",
            "-w",
            "8",
            "-rd",
            dir.path().to_str().unwrap(),
            "-d",
            name,
            "-q",
        ];
        let config = tftpd::ClientConfig::new(args.iter().map(|a| a.to_string())).unwrap();
        let mut client = tftpd::Client::new(&config).unwrap();
        assert!(client.run().unwrap(), "tftpd client {name}");
        assert_same(
            &dir.path().join(name),
            &s.file(name),
            &format!("tftpd crate client {name}"),
        );
    }
}

/// A raw client socket for crafted exchanges.
fn raw() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    Packet::Rrq {
        filename: name.into(),
        mode: "octet".into(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
    .to_bytes()
}

fn recv(s: &UdpSocket) -> (Vec<u8>, std::net::SocketAddr) {
    let mut buf = vec![0u8; 70000];
    let (n, from) = s.recv_from(&mut buf).expect("an answer");
    buf.truncate(n);
    (buf, from)
}

fn error_code(b: &[u8]) -> Option<u16> {
    match Packet::decode(b) {
        Ok(Packet::Error { code, .. }) => Some(code),
        _ => None,
    }
}

#[test]
fn the_pxe_size_probe_then_the_re_request_from_the_same_port_is_answered_at_once() {
    let s = start(&[]);
    let c = raw();
    let server = format!("127.0.0.1:{}", s.port);
    // The probe's transfer would wait 60 s for an ACK: a server that
    // kept it until it timed out would leave the re-request unanswered
    // past the client's 3 s read timeout.
    c.send_to(
        &rrq(
            "one-mib.bin",
            &[("tsize", "0"), ("blksize", "1432"), ("timeout", "60")],
        ),
        &server,
    )
    .unwrap();
    let (oack, tid) = recv(&c);
    assert_eq!(
        Packet::decode(&oack).unwrap(),
        Packet::Oack {
            options: vec![
                ("tsize".into(), "1048576".into()),
                ("blksize".into(), "1432".into()),
                ("timeout".into(), "60".into())
            ]
        }
    );
    c.send_to(
        &Packet::Error {
            code: 8,
            message: "size probe done".into(),
        }
        .to_bytes(),
        tid,
    )
    .unwrap();
    // The same client port asks again, now to download, and is answered
    // within recv's timeout.
    c.send_to(&rrq("one-mib.bin", &[("blksize", "1432")]), &server)
        .unwrap();
    let (oack2, tid2) = recv(&c);
    assert!(matches!(
        Packet::decode(&oack2).unwrap(),
        Packet::Oack { .. }
    ));
    assert_ne!(tid, tid2, "a new transfer has a new TID");
    // Take the whole file in lock-step.
    c.send_to(&Packet::Ack { block: 0 }.to_bytes(), tid2)
        .unwrap();
    let mut got = Vec::new();
    loop {
        let (d, _) = recv(&c);
        let Packet::Data { block, data } = Packet::decode(&d).unwrap() else {
            panic!("not data")
        };
        got.extend_from_slice(data);
        c.send_to(&Packet::Ack { block }.to_bytes(), tid2).unwrap();
        if data.len() < 1432 {
            break;
        }
    }
    assert_eq!(sha(&got), sha(&s.file("one-mib.bin")));
}

#[test]
fn a_datagram_from_an_unknown_tid_gets_error_5_and_the_transfer_goes_on() {
    let s = start(&[]);
    let c = raw();
    c.send_to(&rrq("one-block.bin", &[]), format!("127.0.0.1:{}", s.port))
        .unwrap();
    let (first, tid) = recv(&c);
    assert!(matches!(
        Packet::decode(&first).unwrap(),
        Packet::Data { block: 1, .. }
    ));
    let stranger = raw();
    stranger
        .send_to(&Packet::Ack { block: 1 }.to_bytes(), tid)
        .unwrap();
    let (err, from) = recv(&stranger);
    assert_eq!((error_code(&err), from), (Some(5), tid));
    // The real client finishes: 512 bytes, then the empty final block.
    c.send_to(&Packet::Ack { block: 1 }.to_bytes(), tid)
        .unwrap();
    let (last, _) = recv(&c);
    assert_eq!(
        Packet::decode(&last).unwrap(),
        Packet::Data {
            block: 2,
            data: &[]
        }
    );
}

#[test]
fn writes_are_refused_with_error_2() {
    let s = start(&[]);
    let c = raw();
    let wrq = Packet::Wrq {
        filename: "new.bin".into(),
        mode: "octet".into(),
        options: vec![],
    }
    .to_bytes();
    c.send_to(&wrq, format!("127.0.0.1:{}", s.port)).unwrap();
    assert_eq!(error_code(&recv(&c).0), Some(2));
    if have("tftp") {
        let src = tempfile::NamedTempFile::new().unwrap();
        let out = Command::new("tftp")
            .args([
                "127.0.0.1",
                &s.port.to_string(),
                "-m",
                "binary",
                "-c",
                "put",
                src.path().to_str().unwrap(),
                "new.bin",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("read-only"), "tftp-hpa put: {text}");
    }
    assert!(!s.base.path().join("root/new.bin").exists());
    assert!(s.log().contains("write request refused"), "{}", s.log());
}

#[test]
fn every_traversal_attempt_is_refused_and_logged() {
    let s = start(&[]);
    let server = format!("127.0.0.1:{}", s.port);
    let long = "a/".repeat(300);
    let attempts: &[(&str, u16)] = &[
        ("../outside", 2),
        ("sub/../../outside", 2),
        ("..\\..\\etc\\passwd", 2),
        ("escape", 2),
        ("caf\u{e9}.bin", 2),
        ("a\u{7f}b", 2),
        (&long, 2),
        ("/etc/passwd", 1),
        ("sub", 2),
    ];
    for (name, code) in attempts {
        let c = raw();
        c.send_to(&rrq(name, &[]), &server).unwrap();
        assert_eq!(error_code(&recv(&c).0), Some(*code), "{name:?}");
    }
    // Absolute names are mapped into the root.
    let c = raw();
    c.send_to(&rrq("/sub/inner.bin", &[]), &server).unwrap();
    assert_eq!(
        Packet::decode(&recv(&c).0).unwrap(),
        Packet::Data {
            block: 1,
            data: b"inner"
        }
    );
    if have("curl") {
        for path in ["../outside", "sub/../../outside", "%2e%2e/outside"] {
            let out = Command::new("curl")
                .args([
                    "--silent",
                    "--path-as-is",
                    &format!("tftp://{server}/{path}"),
                ])
                .output()
                .unwrap();
            assert!(
                !out.status.success() && out.stdout.is_empty(),
                "curl --path-as-is {path}"
            );
        }
    }
    let log = s.log();
    for reason in [
        "traversal",
        "outside_root",
        "bad_characters",
        "too_long",
        "not_a_file",
        "not_found",
    ] {
        assert!(
            log.contains(&format!("reason=\"{reason}\""))
                || log.contains(&format!("reason={reason}")),
            "{reason} not logged:\n{log}"
        );
    }
}

#[test]
fn malformed_datagrams_are_dropped_and_the_server_keeps_serving() {
    let s = start(&[]);
    let server = format!("127.0.0.1:{}", s.port);
    let c = raw();
    for junk in [
        &b""[..],
        b"\x00",
        b"\x00\x09abc",
        b"\x00\x01noterminator",
        b"\x00\x01f\x00octet\x00tsize\x00",
        b"\xff\xff\xff\xff",
        &[0u8; 1400],
    ] {
        c.send_to(junk, &server).unwrap();
    }
    c.send_to(&rrq("one-block.bin", &[]), &server).unwrap();
    let (d, _) = recv(&c);
    assert!(matches!(
        Packet::decode(&d).unwrap(),
        Packet::Data { block: 1, .. }
    ));
    assert!(s.log().contains("malformed request dropped"));
}

#[test]
fn a_full_server_says_busy() {
    let s = start(&["--max-transfers", "1"]);
    let server = format!("127.0.0.1:{}", s.port);
    let hog = raw();
    hog.send_to(&rrq("one-mib.bin", &[]), &server).unwrap();
    let _ = recv(&hog);
    let c = raw();
    c.send_to(&rrq("one-block.bin", &[]), &server).unwrap();
    let (err, _) = recv(&c);
    let Ok(Packet::Error { code: 0, message }) = Packet::decode(&err) else {
        panic!("{err:?}")
    };
    assert!(message.contains("server busy"), "{message}");
}

#[test]
fn boot_files_rendered_from_the_spec_are_served_and_cloud_configs_are_not() {
    let spec = root().join("examples/rack.toml");
    let s = start(&["--spec", spec.to_str().unwrap()]);
    let server = format!("127.0.0.1:{}", s.port);
    let c = raw();
    c.send_to(&rrq("pxelinux.cfg/01-0c-c4-7a-00-10-01", &[]), &server)
        .unwrap();
    let (d, _) = recv(&c);
    let Packet::Data { data, .. } = Packet::decode(&d).unwrap() else {
        panic!()
    };
    assert!(
        String::from_utf8_lossy(data)
            .contains("cloud-config-url=http://10.0.0.2:8080/cloud-config/worker1?token=")
    );
    let c = raw();
    c.send_to(&rrq("cloud-config/worker1.yml", &[]), &server)
        .unwrap();
    assert_eq!(
        error_code(&recv(&c).0),
        Some(1),
        "cloud-configs carry secrets and are never served over TFTP"
    );
}
