//! Ignition configs checked and applied by the real Ignition: Debian's
//! `ignition-validate` over every example and variant, and Debian's
//! `ignition` (fetch and files stages) inside the test OS booted by QEMU
//! from `bootfleet serve`, whose account of what it wrote must equal what
//! bootfleet rendered.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// `text` with `config = "ignition"` under `[boot]` (unless it says so).
fn as_ignition(text: &str) -> String {
    if text.contains("config = \"ignition\"") {
        return text.to_owned();
    }
    text.replacen("[boot]\n", "[boot]\nconfig = \"ignition\"\n", 1)
}

/// `text` without the table that starts with `header` (up to the next one).
fn without(text: &str, header: &str) -> String {
    let start = text.find(header).unwrap_or_else(|| panic!("no {header}"));
    let end = text[start + header.len()..]
        .find("\n[")
        .map_or(text.len(), |i| start + header.len() + i + 1);
    format!("{}{}", &text[..start], &text[end..])
}

/// Every spec the validator sees, by name: each example as Ignition, and
/// variants of the rack and the CI cluster.
fn variants() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for ex in examples() {
        let name = ex.file_stem().unwrap().to_string_lossy().into_owned();
        out.push((name, as_ignition(&std::fs::read_to_string(&ex).unwrap())));
    }
    let rack = as_ignition(&std::fs::read_to_string(root().join("examples/rack.toml")).unwrap());
    let ci = as_ignition(&std::fs::read_to_string(root().join("examples/ci.toml")).unwrap());
    let swap = |t: &str, a: &str, b: &str| {
        assert!(t.contains(a), "{a}");
        t.replace(a, b)
    };
    out.push((
        "rack, five etcd members".into(),
        swap(
            &rack,
            "roles = [\"worker\"]",
            "roles = [\"etcd\", \"worker\"]",
        ),
    ));
    out.push((
        "rack, proxy mode".into(),
        swap(
            &swap(&rack, "mode = \"full\"", "mode = \"proxy\""),
            "dynamic_range = [\"10.0.0.100\", \"10.0.0.199\"]\n",
            "",
        ),
    ));
    out.push(("rack, no enrolment".into(), without(&rack, "[enrolment]")));
    out.push((
        "rack, no viewers".into(),
        swap(&rack, "viewers = true", "viewers = false"),
    ));
    out.push((
        "rack, etcd from a binary, fleet from an image".into(),
        swap(
            &swap(
                &rack,
                "image = \"quay.io/coreos/etcd:v3.5.17\"",
                "binary = \"etcd/v3.5.17/etcd\"",
            ),
            "binary = \"fleet/v1.0.0/fleetd\"",
            "image = \"quay.io/coreos/fleet:v1.0.0\"",
        ),
    ));
    out.push(("ci, no load".into(), without(&ci, "[load]")));
    out.push((
        "ci, two merges".into(),
        format!(
            "{ci}\n[ignition]\nmerge = [\"ignition-motd.ign\", \"{}\"]\n",
            root().join("tests/fixtures/ignition-sysctl.ign").display()
        ),
    ));
    out
}

#[test]
fn every_example_and_variant_renders_ignition_that_debians_ignition_validate_accepts_without_a_word()
 {
    if !have("ignition-validate") {
        cannot_run("needs ignition-validate (Debian's ignition package)");
        return;
    }
    let mut checked = 0;
    for (name, text) in variants() {
        let state = fixed_state();
        // Beside the examples, so `merge` paths resolve as they do there.
        let spec = root()
            .join("examples")
            .join(format!(".variant-{}.toml", std::process::id()));
        let _gone = Remove(spec.clone());
        std::fs::write(&spec, &text).unwrap();
        let out = tempfile::tempdir().unwrap();
        let run = bootfleet(
            state.path(),
            &[
                "render",
                spec.to_str().unwrap(),
                "--out",
                out.path().to_str().unwrap(),
            ],
        );
        assert!(run.status.success(), "{name}: {}", stderr(&run));
        let configs = files_under(&out.path().join("ignition"));
        assert!(!configs.is_empty(), "{name}: no Ignition configs");
        assert!(
            !out.path().join("cloud-config").exists(),
            "{name}: cloud-configs rendered too"
        );
        for f in configs {
            let path = out.path().join("ignition").join(&f);
            let v = std::process::Command::new("ignition-validate")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                v.status.success() && v.stdout.is_empty() && v.stderr.is_empty(),
                "{name}: {f}: {}{}",
                stdout(&v),
                stderr(&v)
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} configs checked");
}

/// Removes a file when dropped.
struct Remove(std::path::PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn debians_ignition_validate_refuses_what_the_in_memory_rules_refuse() {
    if !have("ignition-validate") {
        cannot_run("needs ignition-validate (Debian's ignition package)");
        return;
    }
    // The same broken configs, both ways: a rule bootfleet holds that the
    // real validator does not would refuse good configs; the reverse would
    // let a bad one through to the node.
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"etc/x"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/x"},{"path":"/x"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Unit]\nDescription=a\n"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service"},{"name":"a.service"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.serv"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/x","contents":{"source":"http://h/x","verification":{"hash":"sha512-abc"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"passwd":{"users":[{"name":"a"},{"name":"a"}]}}"#,
    ];
    for (i, case) in cases.iter().enumerate() {
        let path = dir.path().join(format!("{i}.ign"));
        std::fs::write(&path, case).unwrap();
        let real = std::process::Command::new("ignition-validate")
            .arg(&path)
            .output()
            .unwrap();
        let ours = bootfleet::ignition::check_merge(case.as_bytes());
        assert!(
            !(real.status.success() && real.stdout.is_empty() && real.stderr.is_empty()),
            "ignition-validate accepts case {i}: {case}"
        );
        assert!(ours.is_err(), "bootfleet accepts case {i}: {case}");
    }
}

/// Boots two test-OS VMs with `config = "ignition"` from `bootfleet serve`,
/// one in the spec and one enrolled, and compares what Ignition wrote (the
/// test OS prints it) with what bootfleet rendered and the merged file
/// holds.
#[test]
fn the_test_os_applies_its_config_with_debians_ignition_and_writes_exactly_what_bootfleet_rendered_needs_root_and_qemu()
 {
    if !(is_root()
        && have("qemu-system-x86_64")
        && have("curl")
        && Path::new("/usr/lib/ipxe/qemu/pxe-virtio.rom").exists())
    {
        cannot_run("needs root, qemu-system-x86, ipxe-qemu and curl");
        return;
    }
    let Some(os) = test_os() else { return };
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut ns = Netns::bridged(&format!("bfign-{id}"), "10.97.0.2/24");
    ns.tap("ig0");
    ns.tap("ig1");
    let images = d.join("images/testos");
    std::fs::create_dir_all(&images).unwrap();
    for f in ["vmlinuz", "initrd.img"] {
        std::fs::copy(os.join(f), images.join(f)).unwrap();
    }
    let merge = root().join("examples/ignition-motd.ign");
    let spec = format!(
        r#"[cluster]
name = "ign"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJvb3RmbGVldC10ZXN0LWtleS0wMDAwMDAwMDAw test@bootfleet"]

[[cluster.users]]
name = "ops"
passwd = "$6$bootfleet$I5bTcEq.1Ilx4kZf2T1rYH1N9IrlWUdbQ1lXxS3ZF0fT4Ev.fvJNbS0nk1n6M0x0BpYkPz5u.sT0q6J2PvqSC0"
groups = ["sudo", "docker"]

[network]
interface = "br0"
subnet = "10.97.0.0/24"
server = "10.97.0.2"
dynamic_range = ["10.97.0.100", "10.97.0.150"]

[boot]
testos = true
config = "ignition"
console = ["ttyS0"]

[enrolment]
role = "worker"
name = "w-{{mac}}"

[[nodes]]
name = "i1"
mac = "52:54:00:19:00:01"
ip = "10.97.0.11"
roles = ["etcd", "worker"]

[load]
image = "registry.local/iptv/browser:test"
host = "10.97.0.2:9000"
browsers = 2
viewers = true

[ignition]
merge = ["{}"]
"#,
        merge.display()
    );
    std::fs::write(d.join("spec.toml"), spec).unwrap();
    let (_server, log) = serve_in(&ns, d);
    // i1 is in the spec; the second machine is not, and is enrolled.
    let machines = [
        ("i1", "52:54:00:19:00:01", "ig0"),
        ("w-525400190099", "52:54:00:19:00:99", "ig1"),
    ];
    let serials: Vec<_> = machines
        .iter()
        .map(|(name, mac, tap)| {
            let serial = d.join(format!("{name}.log"));
            let vm = qemu_pxe(&ns, tap, mac, 384, Vm::BiosVirtio, &serial).spawn();
            ns.children.push(vm.unwrap());
            serial
        })
        .collect();
    let get = |path: &str| {
        let o = ns
            .exec(&[
                "curl",
                "-s",
                "--max-time",
                "10",
                &format!("http://10.97.0.2:8080{path}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut i1_token = String::new();
    for ((name, _, _), serial) in machines.iter().zip(&serials) {
        let done = wait_for(serial, "testos: done", Duration::from_secs(420));
        let console = std::fs::read_to_string(serial).unwrap_or_default();
        let served = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            done,
            "the VM never finished\nserial:\n{console}\nserve:\n{served}"
        );
        assert!(!console.contains("ignition fetch failed"), "{console}");
        assert!(!console.contains("ignition files failed"), "{console}");
        let printed: Vec<String> = console
            .split("=====BEGIN IGNITION DIGEST=====")
            .nth(1)
            .and_then(|s| s.split("=====END IGNITION DIGEST=====").next())
            .unwrap_or_else(|| panic!("no digest on the console:\n{console}"))
            .lines()
            .map(|l| l.trim_end_matches('\r').trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();

        // What bootfleet served: the node's config (its URL and token from the
        // node's own iPXE script) and the file it merges.
        let script = get(&format!("/ipxe/{name}.ipxe"));
        let token = token_in(&script);
        let text = get(&format!("/ignition/{name}?token={token}"));
        let config: bootfleet::ignition::Config =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let merged: bootfleet::ignition::Config =
            serde_json::from_slice(&std::fs::read(&merge).unwrap()).unwrap();
        let want = bootfleet::ignition::digest(&[&config, &merged]);
        assert_eq!(printed, want, "console:\n{console}");
        // The checks bite: files with modes, units, keys, logins, the merge.
        for line in [
            "enabled bootfleet-phone-home.service",
            "file /opt/bootfleet/bin/browser-run 755 ",
            "file /etc/systemd/system/fleet.service 644 ",
            "file /home/core/.ssh/authorized_keys.d/ignition 600 ",
            "file /etc/motd.d/bootfleet.conf 644 ",
            "group ops docker",
            "password ops ",
            "user core",
        ] {
            assert!(
                printed.iter().any(|l| l.starts_with(line)),
                "{line}: {printed:#?}"
            );
        }
        assert!(console.contains("testos: phoned home"), "{console}");
        if *name == "i1" {
            assert!(
                printed.iter().any(|l| l == "enabled etcd-member.service"),
                "{printed:#?}"
            );
            i1_token = token;
        }
    }

    // The timeline: Ignition's fetches are the config stage; a token that
    // is not the node's is refused.
    std::thread::sleep(Duration::from_millis(300));
    let api = get("/api/v1/nodes/i1");
    let v: serde_json::Value = serde_json::from_str(&api).unwrap_or_else(|e| panic!("{e}: {api}"));
    assert_eq!(v["state"], "booted", "{api}");
    assert_eq!(
        stage_names(&v),
        [
            "dhcp",
            "script",
            "kernel",
            "initrd",
            "os_boot",
            "cloud_config",
            "booted"
        ],
        "{api}"
    );
    let o = ns
        .exec(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://10.97.0.2:8080/ignition/i1/merge/0?token={i1_token}0"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "403");
}
