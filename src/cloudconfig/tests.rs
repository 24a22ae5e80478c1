use super::*;

fn levels(text: &str) -> Vec<(Level, String)> {
    validate(text)
        .into_iter()
        .map(|f| (f.level, f.path))
        .collect()
}

#[test]
fn a_clean_config_has_no_findings() {
    let text = "#cloud-config\nhostname: \"a\"\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAA x\"\ncoreos:\n  units:\n    - name: \"x.service\"\n      command: \"start\"\n      enable: true\n      content: |\n        [Service]\n        ExecStart=/bin/true\n      drop_ins:\n        - name: \"a.conf\"\n          content: \"[Service]\"\nwrite_files:\n  - path: \"/etc/x\"\n    permissions: \"0644\"\n    content: \"x\"\n";
    assert_eq!(validate(text), vec![]);
}

#[test]
fn header_is_required() {
    assert_eq!(
        levels("hostname: a\n"),
        vec![(Level::Error, "(header)".into())]
    );
}

#[test]
fn broken_yaml_is_an_error() {
    let f = validate("#cloud-config\nhostname: [\n");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].level, Level::Error);
}

#[test]
fn unknown_dashed_and_deprecated_keys_are_reported() {
    let text = "#cloud-config\nbogus: \"x\"\nssh-authorized-keys: []\ncoreos:\n  etcd2:\n    name: \"x\"\n  fleet: {}\n";
    assert_eq!(
        levels(text),
        vec![
            (Level::Warning, "bogus".into()),
            (Level::Info, "ssh-authorized-keys".into()),
            (Level::Warning, "coreos.etcd2".into()),
            (Level::Warning, "coreos.fleet".into()),
        ]
    );
}

#[test]
fn unit_command_and_name_are_checked() {
    let text = "#cloud-config\ncoreos:\n  units:\n    - name: \"a\"\n      command: \"begin\"\n    - command: \"start\"\n";
    assert_eq!(
        levels(text),
        vec![
            (Level::Error, "coreos.units[0].command".into()),
            (Level::Error, "coreos.units[1]".into())
        ]
    );
}

#[test]
fn types_are_checked_including_yaml_11_traps() {
    let text = "#cloud-config\nhostname: no\nwrite_files:\n  - path: \"/etc/a\"\n    permissions: 0644\ncoreos:\n  units:\n    - name: \"a\"\n      enable: \"yes\"\n";
    assert_eq!(
        levels(text),
        vec![
            (Level::Warning, "line 2".into()),
            (Level::Warning, "line 5".into()),
            (Level::Warning, "coreos.units[0].enable".into()),
        ]
    );
}

#[test]
fn file_rules() {
    let text = "#cloud-config\nwrite_files:\n  - path: \"/usr/bin/x\"\n  - path: \"etc/x\"\n  - content: \"x\"\n  - path: \"/etc/y\"\n    permissions: \"999\"\n    encoding: \"rot13\"\n";
    assert_eq!(
        levels(text),
        vec![
            (Level::Error, "write_files[0].path".into()),
            (Level::Error, "write_files[1].path".into()),
            (Level::Error, "write_files[2]".into()),
            (Level::Error, "write_files[3].permissions".into()),
            (Level::Error, "write_files[3].encoding".into()),
        ]
    );
}
