//! The rendered `browser-run` script, run by the real `/bin/sh`, gives each
//! browser the serial and MAC the spec promises. No docker engine runs
//! here, so `DOCKER` points at a fake that prints its arguments.

use std::process::Command;

use crate::support::*;

fn spec_load(example: &str) -> bootfleet::spec::Load {
    let loaded = bootfleet::spec::load(&root().join("examples").join(example)).unwrap();
    loaded.spec.load.unwrap()
}

#[test]
fn browser_run_with_a_fake_docker_gives_every_browser_the_promised_identity() {
    let (_state, out) = render_example("rack.toml");
    let text = std::fs::read_to_string(out.path().join("cloud-config/worker1.yml")).unwrap();
    let (files, _) = cloud_config_parts(&text);
    let script = &files
        .iter()
        .find(|(p, _)| p == "/opt/bootfleet/bin/browser-run")
        .unwrap()
        .1;
    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("browser-run");
    std::fs::write(&script_path, script).unwrap();
    let fake = dir.path().join("fake-docker");
    std::fs::write(&fake, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let load = spec_load("rack.toml");
    for n in [
        1u32, 9, 255, 256, 400, 65_535, 65_536, 1_000_000, 16_777_215,
    ] {
        let run = Command::new("/bin/sh")
            .arg(&script_path)
            .arg(n.to_string())
            .env("DOCKER", &fake)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let args = String::from_utf8_lossy(&run.stdout).into_owned();
        let args: Vec<&str> = args.lines().collect();
        assert_eq!(&args[..2], ["run", "--rm"]);
        assert!(args.contains(&format!("browser-{n}").as_str()));
        let serial = format!("IPTV_SERIAL={}", load.serial.serial(n));
        let mac = format!("IPTV_MAC={}", load.browser_mac(n));
        assert!(
            args.contains(&serial.as_str()),
            "{n}: {serial} not in {args:?}"
        );
        assert!(args.contains(&mac.as_str()), "{n}: {mac} not in {args:?}");
        assert!(args.contains(&"IPTV_HOST=mw.iptv.lab.example"));
        assert!(args.contains(&"IPTV_PATH=/portal/index.html"));
        assert!(args.contains(&"IPTV_DISABLE_CACHE=true"));
        assert_eq!(
            &args[args.len() - 3..],
            [
                "registry.lab.example/iptv/browser:latest",
                "--kiosk",
                "--autoplay-policy=no-user-gesture-required"
            ]
        );
    }
    for bad in ["", "007", "1a", "-1"] {
        let run = Command::new("/bin/sh")
            .arg(&script_path)
            .arg(bad)
            .env("DOCKER", &fake)
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(2), "{bad:?} must be refused");
    }
}

#[test]
fn every_browser_is_started_once_across_the_workers_with_distinct_serials_and_macs() {
    let (_state, out) = render_example("rack.toml");
    let load = spec_load("rack.toml");
    let mut seen = Vec::new();
    for w in ["worker1", "worker2", "worker3", "worker4"] {
        let text =
            std::fs::read_to_string(out.path().join(format!("cloud-config/{w}.yml"))).unwrap();
        let (_, units) = cloud_config_parts(&text);
        let target = units
            .iter()
            .find(|(n, _)| n == "bootfleet-load.target")
            .unwrap()
            .1
            .clone()
            .unwrap();
        let mine: Vec<u32> = target
            .lines()
            .filter_map(|l| l.strip_prefix("Wants="))
            .flat_map(|l| l.split(' '))
            .filter_map(|u| {
                u.strip_prefix("browser@")?
                    .strip_suffix(".service")?
                    .parse()
                    .ok()
            })
            .collect();
        assert!(
            target.contains(&format!("viewer@{}.service", mine[0])),
            "viewers are on in the rack example"
        );
        assert_eq!(
            mine.len(),
            100,
            "{w}: 400 browsers spread evenly over 4 workers"
        );
        seen.extend(mine);
    }
    seen.sort();
    assert_eq!(seen, (1..=400).collect::<Vec<_>>());
    let serials: std::collections::HashSet<String> =
        seen.iter().map(|n| load.serial.serial(*n)).collect();
    let macs: std::collections::HashSet<String> = seen
        .iter()
        .map(|n| load.browser_mac(*n).to_string())
        .collect();
    assert_eq!((serials.len(), macs.len()), (400, 400));
    assert!(macs.iter().all(|m| m.starts_with("02:1b:f0:")));
}
