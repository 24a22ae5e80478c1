use super::*;

#[test]
fn data_urls_round_trip_every_byte() {
    let all: Vec<u8> = (0..=255).collect();
    let url = data_url(&all);
    assert!(url.starts_with("data:,"));
    assert!(!url[6..].contains([' ', '\n', '"', '%', '#']) || url.contains("%25"));
    assert_eq!(decode_data_url(&url), Some(all));
    assert_eq!(
        decode_data_url("data:text/plain;base64,aGVsbG8K"),
        Some(b"hello\n".to_vec())
    );
    assert_eq!(decode_data_url("data:,bad%zz"), None);
    assert_eq!(decode_data_url("http://x/"), None);
}

fn sample() -> Pieces {
    Pieces {
        files: vec![FilePiece {
            path: "/etc/hostname".into(),
            mode: 0o644,
            contents: "n1\n".into(),
        }],
        units: vec![UnitPiece {
            name: "a.service".into(),
            contents: Some("[Unit]\nDescription=a\n\n[Service]\nExecStart=/bin/true \\\n  --flag\n\n[Install]\nWantedBy=multi-user.target\n".into()),
            enabled: true,
        }],
        users: vec![UserPiece {
            name: "core".into(),
            password_hash: None,
            groups: vec![],
            ssh_authorized_keys: vec!["ssh-ed25519 AAAA k".into()],
        }],
        merge: vec![(
            "http://10.0.0.1/ignition/n1/merge/0?token=t".into(),
            format!("sha512-{}", "ab".repeat(64)),
        )],
    }
}

fn messages(config: &Config) -> Vec<String> {
    validate(config, &|u| u.starts_with("http://10.0.0.1/"))
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_built_config_is_clean_and_says_its_version() {
    let config = build(&sample());
    assert_eq!(messages(&config), Vec::<String>::new());
    let json = to_json(&config);
    assert!(json.contains("\"version\": \"3.3.0\""), "{json}");
    assert!(!json.contains("null"), "{json}");
    let (back, _) = ignition_config::Config::parse_str(&json).unwrap();
    assert!(matches!(back, ignition_config::Config::V3_3(c) if c == config));
}

#[test]
fn each_rule_of_ignition_validate_is_enforced() {
    type Change = Box<dyn Fn(&mut Pieces)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "not a clean absolute path",
            Box::new(|p| p.files[0].path = "etc/x".into()),
        ),
        (
            "not a clean absolute path",
            Box::new(|p| p.files[0].path = "/etc/../x".into()),
        ),
        (
            "is given twice",
            Box::new(|p| p.files.push(p.files[0].clone())),
        ),
        (
            "is not a file mode",
            Box::new(|p| p.files[0].mode = 0o17777),
        ),
        (
            "unit a.service is given twice",
            Box::new(|p| p.units.push(p.units[0].clone())),
        ),
        (
            "is not a unit name",
            Box::new(|p| p.units[0].name = "a.serv".into()),
        ),
        (
            "no [Install] section",
            Box::new(|p| p.units[0].contents = Some("[Unit]\nDescription=a\n".into())),
        ),
        (
            "is not a section",
            Box::new(|p| p.units[0].contents = Some("[Unit]\nnot a key\n".into())),
        ),
        (
            "user core is given twice",
            Box::new(|p| p.users.push(p.users[0].clone())),
        ),
        (
            "is not served by bootfleet",
            Box::new(|p| p.merge[0].0 = "http://elsewhere/x".into()),
        ),
        (
            "unsupported URL scheme",
            Box::new(|p| p.merge[0].0 = "ftp://10.0.0.1/x".into()),
        ),
        (
            "is not sha512-",
            Box::new(|p| p.merge[0].1 = "sha512-abc".into()),
        ),
    ];
    for (want, change) in cases {
        let mut p = sample();
        change(&mut p);
        let got = messages(&build(&p));
        assert!(
            got.iter().any(|m| m.contains(want)),
            "want {want:?}, got {got:?}"
        );
    }
    // Not enabled: no [Install] needed.
    let mut p = sample();
    p.units[0].contents = Some("[Unit]\nDescription=a\n".into());
    p.units[0].enabled = false;
    assert_eq!(messages(&build(&p)), Vec::<String>::new());
}

#[test]
fn merge_files_must_be_ignition_of_a_version_nodes_read() {
    assert!(check_merge(br#"{"ignition":{"version":"3.3.0"}}"#).is_ok());
    assert!(check_merge(br#"{"ignition":{"version":"3.0.0"}}"#).is_ok());
    let too_new = check_merge(br#"{"ignition":{"version":"3.4.0"}}"#).unwrap_err();
    assert!(
        too_new.to_string().contains("newer than 3.3.0"),
        "{too_new}"
    );
    assert!(check_merge(b"#cloud-config\n").is_err());
    assert!(check_merge(br#"{"ignition":{"version":"2.2.0"}}"#).is_err());
    let bad =
        check_merge(br#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"rel"}]}}"#)
            .unwrap_err();
    assert!(bad.to_string().contains("storage.files[0].path"), "{bad}");
}

#[test]
fn the_digest_lists_files_units_keys_and_enabled_units() {
    let config = build(&sample());
    let lines = digest(&[&config]);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(lines[0].starts_with("enabled a.service"));
    assert!(lines[1].starts_with("file /etc/hostname 644 "));
    assert!(lines[2].starts_with("file /etc/systemd/system/a.service 644 "));
    assert!(lines[3].starts_with("file /home/core/.ssh/authorized_keys.d/ignition 600 "));
    assert_eq!(lines[4], "user core");
}
