//! Bad specs and templates: exit status 2, `file:line:column`, what is
//! wrong and how to fix it, and nothing written (no output, no site key).

use std::path::Path;

use crate::support::*;

const BASE: &str = r#"[cluster]
name = "t"

[network]
interface = "eth0"
subnet = "10.0.0.0/24"
server = "10.0.0.2"
dynamic_range = ["10.0.0.100", "10.0.0.199"]

[boot]
kernel = "k/vmlinuz"
initrd = "k/initrd.gz"
"#;

fn node(name: &str, mac: &str, ip: &str, roles: &str) -> String {
    format!("\n[[nodes]]\nname = \"{name}\"\nmac = \"{mac}\"\nip = \"{ip}\"\nroles = {roles}\n")
}

fn good_nodes() -> String {
    node("e0", "52:54:00:00:00:01", "10.0.0.10", r#"["etcd"]"#)
        + &node("w1", "52:54:00:00:00:02", "10.0.0.11", r#"["worker"]"#)
}

/// Renders `spec` into a fresh directory and expects a bad-input failure at
/// `line` whose text contains `needle`. Returns stderr.
fn expect_rejected(spec: &str, line: usize, needle: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, spec).unwrap();
    reject_at(dir.path(), &path, line, needle)
}

fn reject_at(dir: &Path, path: &Path, line: usize, needle: &str) -> String {
    let state = dir.join("state");
    let out_dir = dir.join("out");
    let out = bootfleet(
        &state,
        &[
            "render",
            path.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let place = format!("{}:{line}:", path.display());
    assert!(err.contains(&place), "expected {place} in:\n{err}");
    assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    assert!(err.contains("help: "), "no fix offered:\n{err}");
    assert!(!out_dir.exists(), "output was written despite the error");
    assert!(
        !state.join("site.key").exists(),
        "a site key was written despite the error"
    );
    err
}

fn line_of(spec: &str, needle: &str, nth: usize) -> usize {
    spec.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .unwrap()
}

#[test]
fn the_base_spec_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, BASE.to_owned() + &good_nodes()).unwrap();
    let out = bootfleet(
        &dir.path().join("state"),
        &["check", path.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn duplicate_mac() {
    let spec = BASE.to_owned()
        + &good_nodes()
        + &node("w2", "52:54:00:00:00:02", "10.0.0.12", r#"["worker"]"#);
    let err = expect_rejected(
        &spec,
        line_of(&spec, "52:54:00:00:00:02", 1),
        "MAC 52:54:00:00:00:02 is given to two nodes",
    );
    assert!(err.contains("`w1` at line"), "{err}");
}

#[test]
fn duplicate_ip() {
    let spec = BASE.to_owned()
        + &good_nodes()
        + &node("w2", "52:54:00:00:00:03", "10.0.0.11", r#"["worker"]"#);
    expect_rejected(
        &spec,
        line_of(&spec, "10.0.0.11", 1),
        "address 10.0.0.11 is given to two nodes",
    );
}

#[test]
fn duplicate_name() {
    let spec = BASE.to_owned()
        + &good_nodes()
        + &node("w1", "52:54:00:00:00:03", "10.0.0.12", r#"["worker"]"#);
    expect_rejected(
        &spec,
        line_of(&spec, "name = \"w1\"", 1),
        "node name `w1` is used twice",
    );
}

#[test]
fn ip_outside_the_subnet() {
    let spec = BASE.to_owned()
        + &good_nodes()
        + &node("w2", "52:54:00:00:00:03", "10.0.1.12", r#"["worker"]"#);
    expect_rejected(
        &spec,
        line_of(&spec, "10.0.1.12", 0),
        "outside the subnet 10.0.0.0/24",
    );
}

#[test]
fn reservation_inside_the_dynamic_range() {
    let spec = BASE.to_owned()
        + &good_nodes()
        + &node("w2", "52:54:00:00:00:03", "10.0.0.150", r#"["worker"]"#);
    expect_rejected(
        &spec,
        line_of(&spec, "10.0.0.150", 0),
        "inside the dynamic range 10.0.0.100..10.0.0.199",
    );
}

#[test]
fn malformed_mac() {
    let spec = BASE.to_owned()
        + &good_nodes()
        + &node("w2", "52:54:00:00:03", "10.0.0.12", r#"["worker"]"#);
    expect_rejected(
        &spec,
        line_of(&spec, "52:54:00:00:03", 0),
        "is not a MAC address",
    );
}

#[test]
fn load_with_no_workers() {
    let spec = BASE.to_owned()
        + &node("e0", "52:54:00:00:00:01", "10.0.0.10", r#"["etcd"]"#)
        + "\n[load]\nimage = \"b:1\"\nhost = \"h\"\nbrowsers = 10\n";
    expect_rejected(
        &spec,
        line_of(&spec, "browsers = 10", 0),
        "the load has no workers",
    );
}

#[test]
fn load_that_does_not_fit_the_cap() {
    let spec = BASE.to_owned()
        + &good_nodes()
        + "\n[load]\nimage = \"b:1\"\nhost = \"h\"\nbrowsers = 10\nper_node_cap = 5\n";
    expect_rejected(&spec, line_of(&spec, "per_node_cap", 0), "cannot run 10");
}

#[test]
fn an_even_number_of_etcd_members_is_a_warning_only() {
    let spec = BASE.to_owned()
        + &node("e0", "52:54:00:00:00:01", "10.0.0.10", r#"["etcd"]"#)
        + &node(
            "e1",
            "52:54:00:00:00:02",
            "10.0.0.11",
            r#"["etcd", "worker"]"#,
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, &spec).unwrap();
    let out = bootfleet(
        &dir.path().join("state"),
        &["check", path.to_str().unwrap()],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let place = format!(
        "{}:{}:",
        path.display(),
        line_of(&spec, "roles = [\"etcd\", \"worker\"]", 0)
    );
    assert!(
        err.contains(&place) && err.contains("warning: 2 etcd members"),
        "{err}"
    );
    assert!(err.contains("help: use an odd number"), "{err}");
}

#[test]
fn every_error_is_reported_in_one_run() {
    let spec = BASE.to_owned() + &node("Bad_Name", "zz", "10.0.9.1", r#"["chef"]"#);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, &spec).unwrap();
    let out = bootfleet(
        &dir.path().join("state"),
        &["check", path.to_str().unwrap()],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    for needle in [
        "node name `Bad_Name`",
        "`zz` is not a MAC address",
        "outside the subnet",
        "unknown role `chef`",
        "4 error(s)",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
}

#[test]
fn toml_syntax_errors_name_the_place() {
    let spec = BASE.replace("name = \"t\"", "name = \"t");
    expect_rejected(&spec, 2, "error:");
}

/// A directory with `spec.toml` (the base spec with a `[templates]` dir)
/// and the given template overrides under `tpl/`.
fn with_overrides(overrides: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in overrides {
        let path = dir.path().join("tpl").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let spec = BASE.to_owned() + "\n[templates]\ndir = \"tpl\"\n" + &good_nodes();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, spec).unwrap();
    (dir, path)
}

/// Runs `bootfleet ARGS SPEC` (plus `--out DIR` for render) in `dir` and
/// expects bad input with nothing written; returns stderr.
fn expect_bad(dir: &Path, cmd: &str, spec: &Path) -> String {
    let out_dir = dir.join("out");
    let state = dir.join("state");
    let mut args = vec![cmd, spec.to_str().unwrap()];
    if cmd == "render" {
        args.extend(["--out", out_dir.to_str().unwrap()]);
    }
    let out = bootfleet(&state, &args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("help: "), "no fix offered:\n{err}");
    assert!(
        !out_dir.exists() && !state.join("site.key").exists(),
        "something was written"
    );
    err
}

#[test]
fn a_template_using_an_undefined_variable() {
    let unit = "[Unit]\nDescription={{ node.name }}\n\n[Service]\nExecStart=/bin/true {{ node.nickname }}\n";
    let (dir, spec) = with_overrides(&[("units/phone-home.service", unit)]);
    let err = expect_bad(dir.path(), "render", &spec);
    let place = format!(
        "{}:5:",
        dir.path().join("tpl/units/phone-home.service").display()
    );
    assert!(
        err.contains(&place) && err.contains("undefined value"),
        "{err}"
    );
}

#[test]
fn a_user_template_directory_with_a_broken_template() {
    let (dir, spec) = with_overrides(&[(
        "boot/node.ipxe",
        "#!ipxe\n# ok\n{% for x in %}\nkernel {{ boot.kernel_url }}\n",
    )]);
    let err = expect_bad(dir.path(), "check", &spec);
    let place = format!("{}:3:", dir.path().join("tpl/boot/node.ipxe").display());
    assert!(
        err.contains(&place) && err.contains("syntax error"),
        "{err}"
    );
}

#[test]
fn a_template_override_with_an_unknown_name() {
    let (dir, spec) = with_overrides(&[("units/fleet.servise", "x")]);
    let err = expect_bad(dir.path(), "check", &spec);
    assert!(
        err.contains("fleet.servise: not the name of a built-in template")
            && err.contains("units/fleet.service"),
        "{err}"
    );
}

#[test]
fn an_override_that_breaks_the_cloud_config_is_caught_before_writing() {
    let cc = "#cloud-config\nhostname: {{ node.hostname|yaml }}\ncoreos:\n  etcd2:\n    name: {{ node.name|yaml }}\n  units:\n    - name: \"x.service\"\n      command: \"begin\"\n";
    let (dir, spec) = with_overrides(&[("cloud-config.yml", cc)]);
    let err = expect_bad(dir.path(), "render", &spec);
    assert!(
        err.contains("coreos.etcd2: deprecated key")
            && err.contains("coreos.units[0].command: invalid value"),
        "{err}"
    );
}

#[test]
fn a_state_backend_that_does_not_exist() {
    let spec = BASE.to_owned() + &good_nodes() + "\n[state]\nbackend = \"sqlite\"\n";
    let err = expect_rejected(
        &spec,
        line_of(&spec, "sqlite", 0),
        "unknown state backend `sqlite`",
    );
    assert!(err.contains("\"embedded\""), "{err}");
}

#[test]
fn an_etcd_state_without_endpoints_or_with_a_bad_one() {
    let spec = BASE.to_owned() + &good_nodes() + "\n[state]\nbackend = \"etcd\"\n";
    expect_rejected(&spec, line_of(&spec, "backend", 0), "needs endpoints");
    let spec = BASE.to_owned()
        + &good_nodes()
        + "\n[state]\nbackend = \"etcd\"\nendpoints = [\"10.0.1.5:2379\"]\n";
    expect_rejected(
        &spec,
        line_of(&spec, "endpoints", 0),
        "is not an etcd endpoint URL",
    );
}

#[test]
fn the_clusters_own_etcd_is_refused_as_bootfleets_store() {
    // e0 (10.0.0.10) is the cluster's etcd member.
    let spec = BASE.to_owned()
        + &good_nodes()
        + "\n[state]\nbackend = \"etcd\"\nendpoints = [\"http://10.0.0.10:2379\"]\n";
    let err = expect_rejected(
        &spec,
        line_of(&spec, "endpoints", 0),
        "10.0.0.10 is an etcd member of this cluster",
    );
    assert!(err.contains("an etcd of its own"), "{err}");
}

#[test]
fn an_etcd_state_with_its_own_endpoints_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    let spec = BASE.to_owned()
        + &good_nodes()
        + "\n[state]\nbackend = \"etcd\"\nendpoints = [\"http://10.0.1.5:2379\"]\n";
    std::fs::write(&path, spec).unwrap();
    let state = dir.path().join("state");
    let out = bootfleet(&state, &["check", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!state.exists(), "check writes nothing and asks no etcd");
}

/// The base spec as Ignition, merging `merge` (written beside it as
/// `extra.ign` when given).
fn ignition_spec(dir: &Path, merge: Option<&str>) -> String {
    let mut spec = BASE.replace("[boot]\n", "[boot]\nconfig = \"ignition\"\n") + &good_nodes();
    if let Some(text) = merge {
        std::fs::write(dir.join("extra.ign"), text).unwrap();
        spec.push_str("\n[ignition]\nmerge = [\"extra.ign\"]\n");
    }
    spec
}

#[test]
fn an_unknown_config_format() {
    let spec = BASE.replace("[boot]\n", "[boot]\nconfig = \"butane\"\n") + &good_nodes();
    let err = expect_rejected(
        &spec,
        line_of(&spec, "config =", 0),
        "unknown config format `butane`",
    );
    assert!(err.contains("\"ignition\""), "{err}");
}

#[test]
fn merge_files_that_nodes_could_not_merge_are_refused_at_the_line_naming_them() {
    for (text, needle) in [
        (
            "#cloud-config\nhostname: x\n",
            "is not an Ignition config nodes can merge",
        ),
        (r#"{"ignition":{"version":"3.4.0"}}"#, "newer than 3.3.0"),
        (
            r#"{"ignition":{"version":"2.3.0"}}"#,
            "is not an Ignition config nodes can merge",
        ),
        (
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"tmp/x"}]}}"#,
            "storage.files[0].path",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spec = ignition_spec(dir.path(), Some(text));
        let path = dir.path().join("spec.toml");
        std::fs::write(&path, &spec).unwrap();
        reject_at(dir.path(), &path, line_of(&spec, "merge =", 0), needle);
    }
    // A missing file, too.
    let dir = tempfile::tempdir().unwrap();
    let spec = ignition_spec(dir.path(), None) + "\n[ignition]\nmerge = [\"gone.ign\"]\n";
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, &spec).unwrap();
    reject_at(dir.path(), &path, line_of(&spec, "merge =", 0), "gone.ign");
}

#[test]
fn what_ignition_cannot_express_is_refused() {
    // Merging into cloud-configs.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("extra.ign"),
        r#"{"ignition":{"version":"3.3.0"}}"#,
    )
    .unwrap();
    let spec = BASE.to_owned() + &good_nodes() + "\n[ignition]\nmerge = [\"extra.ign\"]\n";
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, &spec).unwrap();
    reject_at(
        dir.path(),
        &path,
        line_of(&spec, "merge =", 0),
        "applies to Ignition configs",
    );
    // A cloud-config.yml override, which an Ignition config would ignore.
    let (dir, _) = with_overrides(&[("cloud-config.yml", "#cloud-config\n")]);
    let spec = ignition_spec(dir.path(), None) + "\n[templates]\ndir = \"tpl\"\n";
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, &spec).unwrap();
    reject_at(
        dir.path(),
        &path,
        line_of(&spec, "dir =", 0),
        "which Ignition configs do not use",
    );
}

#[test]
fn a_bmc_that_could_not_be_used_is_refused_at_its_line() {
    for (bmc, needle) in [
        (r#"{ driver = "hp" }"#, "unknown BMC driver `hp`"),
        (
            r#"{ driver = "redfish", username = "a", password_env = "P" }"#,
            "this BMC has no `address`",
        ),
        (
            r#"{ driver = "redfish", address = "10.0.0.9", username = "a", password_env = "P" }"#,
            "is not an http(s) URL",
        ),
        (
            r#"{ driver = "ipmi", address = "10.0.0.9", username = "a" }"#,
            "password comes from nowhere",
        ),
        (
            r#"{ driver = "ipmi", address = "10.0.0.9", username = "a", password_env = "P", password_file = "f" }"#,
            "both `password_file` and `password_env`",
        ),
        (
            r#"{ driver = "libvirt", username = "a" }"#,
            "a libvirt BMC takes no `username`",
        ),
        (
            r#"{ driver = "redfish", address = "https://b", username = "a", password_env = "P", password = "x" }"#,
            "unknown field `password`",
        ),
    ] {
        let spec = BASE.to_owned()
            + &good_nodes().replacen(
                "roles = [\"etcd\"]\n",
                &format!("roles = [\"etcd\"]\nbmc = {bmc}\n"),
                1,
            );
        expect_rejected(&spec, line_of(&spec, "bmc =", 0), needle);
    }
}

/// `[[segments]]` entries for [`BASE`]: a relayed rack and a direct one.
fn segments() -> String {
    r#"
[[segments]]
name = "rack2"
subnet = "10.2.0.0/24"
relay = true
gateway = "10.2.0.1"
dynamic_range = ["10.2.0.100", "10.2.0.199"]

[[segments]]
name = "rack3"
subnet = "10.3.0.0/24"
interface = "eth3"
server = "10.3.0.2"
"#
    .to_owned()
}

#[test]
fn a_site_of_several_segments_renders_each_nodes_urls_with_the_address_it_reaches() {
    let spec = BASE.to_owned()
        + &segments()
        + &good_nodes()
        + &node("r2", "52:54:00:00:00:12", "10.2.0.10", r#"["worker"]"#)
        + &node("r3", "52:54:00:00:00:13", "10.3.0.10", r#"["worker"]"#);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, &spec).unwrap();
    let out_dir = dir.path().join("out");
    let out = bootfleet(
        &dir.path().join("state"),
        &[
            "render",
            path.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |p: &str| std::fs::read_to_string(out_dir.join(p)).unwrap();
    // The relayed rack reaches [network]'s address; the direct one its own.
    assert!(read("ipxe/w1.ipxe").contains("http://10.0.0.2:8080/assets/k/vmlinuz"));
    assert!(read("ipxe/r2.ipxe").contains("http://10.0.0.2:8080/assets/k/vmlinuz"));
    assert!(read("ipxe/r3.ipxe").contains("http://10.3.0.2:8080/assets/k/vmlinuz"));
    assert!(read("cloud-config/r3.yml").contains("http://10.3.0.2:8080/phone-home/r3"));
    assert!(!read("cloud-config/r3.yml").contains("10.0.0.2"));
    // boot.ipxe chains relative to where it came from.
    let boot = read("boot.ipxe");
    assert!(boot.contains("chain --autofree ipxe/boot?mac="), "{boot}");
}

#[test]
fn a_segment_overlapping_another_is_refused() {
    let spec = BASE.to_owned() + &segments().replace("10.3.0.0/24", "10.0.0.0/16") + &good_nodes();
    expect_rejected(
        &spec,
        line_of(&spec, "10.0.0.0/16", 0),
        "segment `rack3`'s subnet 10.0.0.0/16 overlaps `eth0`'s 10.0.0.0/24",
    );
}

#[test]
fn a_node_in_no_segment_is_refused_naming_them_all() {
    let spec = BASE.to_owned()
        + &segments()
        + &good_nodes()
        + &node("w9", "52:54:00:00:00:09", "10.9.0.10", r#"["worker"]"#);
    let err = expect_rejected(
        &spec,
        line_of(&spec, "10.9.0.10", 0),
        "address 10.9.0.10 is in no segment of the site",
    );
    assert!(
        err.contains("eth0 10.0.0.0/24, rack2 10.2.0.0/24, rack3 10.3.0.0/24"),
        "{err}"
    );
}

#[test]
fn a_direct_segment_on_an_interface_already_serving_one_is_refused() {
    let spec = BASE.to_owned()
        + &segments().replace("interface = \"eth3\"", "interface = \"eth0\"")
        + &good_nodes();
    expect_rejected(
        &spec,
        line_of(&spec, "interface = \"eth0\"", 1),
        "interface `eth0` serves two segments",
    );
}

#[test]
fn a_segments_dynamic_range_outside_its_subnet_is_refused() {
    let spec = BASE.to_owned()
        + &segments().replace(
            "[\"10.2.0.100\", \"10.2.0.199\"]",
            "[\"10.0.0.200\", \"10.0.0.210\"]",
        )
        + &good_nodes();
    expect_rejected(
        &spec,
        line_of(&spec, "10.0.0.210", 0),
        "not an ordered range inside 10.2.0.0/24",
    );
}

#[test]
fn a_segment_reached_both_ways_or_neither_is_refused() {
    let both = BASE.to_owned()
        + &segments().replace("relay = true", "relay = true\ninterface = \"eth2\"")
        + &good_nodes();
    expect_rejected(
        &both,
        line_of(&both, "interface = \"eth2\"", 0),
        "segment `rack2` has both an interface and relay = true",
    );
    let neither = BASE.to_owned() + &segments().replace("relay = true\n", "") + &good_nodes();
    expect_rejected(
        &neither,
        line_of(&neither, "name = \"rack2\"", 0),
        "segment `rack2` says neither how it is reached",
    );
    let no_server =
        BASE.to_owned() + &segments().replace("server = \"10.3.0.2\"\n", "") + &good_nodes();
    expect_rejected(
        &no_server,
        line_of(&no_server, "name = \"rack3\"", 0),
        "direct segment `rack3` needs the server's address there",
    );
}

#[test]
fn cluster_refuses_a_relayed_segment_before_creating_anything() {
    let spec = BASE.to_owned() + &segments() + &good_nodes();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, &spec).unwrap();
    let out = bootfleet(
        &dir.path().join("state"),
        &["cluster", "up", path.to_str().unwrap()],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("segment `rack2` is reached through relays"),
        "{err}"
    );
    assert!(err.contains("help: "), "{err}");
    assert!(!dir.path().join("state").exists(), "nothing written: {err}");
}
