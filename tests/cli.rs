//! The command line as a user meets it: help, completions, exit codes, the
//! site key, `--node`, and the output directory over repeated renders.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

#[test]
fn every_command_has_help_with_examples() {
    let state = tempfile::tempdir().unwrap();
    for cmd in [
        vec!["--help"],
        vec!["check", "--help"],
        vec!["render", "--help"],
        vec!["completions", "--help"],
        vec!["serve", "--help"],
        vec!["nodes", "--help"],
        vec!["dhcp", "--help"],
        vec!["tftp", "--help"],
    ] {
        let out = bootfleet(state.path(), &cmd);
        assert!(out.status.success(), "{cmd:?}");
        assert!(
            stdout(&out).contains("Examples:"),
            "{cmd:?}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn completions_are_printed_for_bash_and_zsh() {
    let state = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = bootfleet(state.path(), &["completions", shell]);
        assert!(out.status.success());
        assert!(stdout(&out).contains("render"), "{shell}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let state = tempfile::tempdir().unwrap();
    let ex = root().join("examples/ci.toml");
    assert_eq!(
        bootfleet(state.path(), &["render", ex.to_str().unwrap()])
            .status
            .code(),
        Some(2),
        "needs --out or --node"
    );
    assert_eq!(
        bootfleet(state.path(), &["frobnicate"]).status.code(),
        Some(2)
    );
    let out = bootfleet(
        state.path(),
        &["render", ex.to_str().unwrap(), "--node", "nope"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no node named `nope`"));
}

#[test]
fn a_missing_spec_file_is_a_runtime_failure() {
    let state = tempfile::tempdir().unwrap();
    let out = bootfleet(state.path(), &["check", "/nonexistent/spec.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read spec /nonexistent/spec.toml"));
}

#[test]
fn render_creates_the_site_key_once_in_a_store_of_mode_0600_and_check_creates_none() {
    let state = tempfile::tempdir().unwrap();
    let key = state.path().join("state.redb");
    let ex = root().join("examples/ci.toml");
    assert!(
        bootfleet(state.path(), &["check", ex.to_str().unwrap()])
            .status
            .success()
    );
    assert!(!key.exists(), "check writes nothing");
    let first = bootfleet(
        state.path(),
        &["render", ex.to_str().unwrap(), "--node", "ci0"],
    );
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = bootfleet(
        state.path(),
        &["render", ex.to_str().unwrap(), "--node", "ci0"],
    );
    assert_eq!(
        stdout(&first),
        stdout(&again),
        "the key is reused, so tokens are stable"
    );
    let other = tempfile::tempdir().unwrap();
    let third = bootfleet(
        other.path(),
        &["render", ex.to_str().unwrap(), "--node", "ci0"],
    );
    assert_ne!(
        stdout(&first),
        stdout(&third),
        "another site key gives other tokens"
    );
}

#[test]
fn render_node_prints_the_same_cloud_config_render_out_writes() {
    let state = fixed_state();
    let ex = root().join("examples/rack.toml");
    let out = tempfile::tempdir().unwrap();
    assert!(
        bootfleet(
            state.path(),
            &[
                "render",
                ex.to_str().unwrap(),
                "--out",
                out.path().to_str().unwrap()
            ]
        )
        .status
        .success()
    );
    let one = bootfleet(
        state.path(),
        &["render", ex.to_str().unwrap(), "--node", "worker2"],
    );
    assert!(one.status.success());
    assert_eq!(
        stdout(&one),
        std::fs::read_to_string(out.path().join("cloud-config/worker2.yml")).unwrap()
    );
}

#[test]
fn tokens_open_only_their_own_node() {
    let state = fixed_state();
    let ex = root().join("examples/rack.toml");
    let mut tokens = Vec::new();
    for node in ["etcd0", "worker1", "worker2"] {
        let out = stdout(&bootfleet(
            state.path(),
            &["render", ex.to_str().unwrap(), "--node", node],
        ));
        let url = out.lines().find(|l| l.contains("/phone-home/")).unwrap();
        assert!(url.contains(&format!("/phone-home/{node}?token=")), "{url}");
        tokens.push(url.rsplit("token=").next().unwrap().to_owned());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 3);
    assert!(
        tokens
            .iter()
            .all(|t| t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit()))
    );
}

#[test]
fn a_node_removed_from_the_spec_loses_its_files_on_the_next_render() {
    let state = fixed_state();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    let text = std::fs::read_to_string(root().join("examples/rack.toml")).unwrap();
    std::fs::write(&spec, &text).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    assert!(
        bootfleet(
            state.path(),
            &[
                "render",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap()
            ]
        )
        .status
        .success()
    );
    assert!(out.join("pxelinux.cfg/01-0c-c4-7a-00-10-04").exists());
    // Drop worker4 (the last [[nodes]] entry before [enrolment]).
    let start = text.find("[[nodes]]\nname = \"worker4\"").unwrap();
    let end = text.find("[enrolment]").unwrap();
    std::fs::write(&spec, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let run = bootfleet(
        state.path(),
        &[
            "render",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("(3 stale files removed)"),
        "{}",
        stderr(&run)
    );
    assert!(!out.join("pxelinux.cfg/01-0c-c4-7a-00-10-04").exists());
    assert!(!out.join("cloud-config/worker4.yml").exists());
    assert!(out.join("cloud-config/worker3.yml").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine",
        "files bootfleet did not write are kept"
    );
}

#[test]
fn images_stage_copies_the_systems_boot_loaders() {
    let system = [
        ("undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe"),
        ("ipxe.efi", "/usr/lib/ipxe/ipxe.efi"),
        ("pxelinux.0", "/usr/lib/PXELINUX/pxelinux.0"),
        ("ldlinux.c32", "/usr/lib/syslinux/modules/bios/ldlinux.c32"),
    ];
    if system
        .iter()
        .any(|(_, p)| !std::path::Path::new(p).exists())
    {
        cannot_run("needs the ipxe, pxelinux and syslinux-common packages");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let images = state.path().join("images");
    let out = bootfleet(
        state.path(),
        &["images", "stage", "--images", images.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, path) in system {
        assert_eq!(
            std::fs::read(images.join(name)).unwrap(),
            std::fs::read(path).unwrap(),
            "{name}"
        );
        assert!(stdout(&out).contains(name));
    }
}

#[test]
fn nodes_says_so_when_what_answers_at_the_address_is_not_bootfleet() {
    if !have("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = root().join("examples/quickstart.toml");
    // Another web server (Python's) where bootfleet is expected: it answers
    // /api/v1/nodes with its own 404.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-u", "-c"]).arg(format!(
        "import http.server,sys\nsrv=http.server.HTTPServer(('127.0.0.1',{port}),http.server.SimpleHTTPRequestHandler)\nprint('ready',flush=True)\nsrv.serve_forever()"
    ));
    cmd.current_dir(dir.path())
        .stderr(std::process::Stdio::null());
    let (_python, line) = spawn_until_line(&mut cmd);
    assert_eq!(line.trim(), "ready");
    let addr = format!("127.0.0.1:{port}");
    let out = bootfleet(
        dir.path(),
        &["nodes", spec.to_str().unwrap(), "--server", &addr],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("answered HTTP 404, but it is not bootfleet"),
        "{err}"
    );
    assert!(err.contains("--server HOST:PORT"), "{err}");
}
