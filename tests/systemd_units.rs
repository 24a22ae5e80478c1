//! Every unit bootfleet renders (inside cloud-configs, inside Ignition
//! configs and under `units/`) passes the real `systemd-analyze verify`.
//! The browser units go no further than this and Ignition's files stage
//! (tests/ignition.rs): their images cannot be pulled here. The OS's docker.service and the
//! binaries the units start do not exist on this machine: a stub
//! docker.service stands in for the first, and "not executable" findings
//! for exactly those paths are the only ones tolerated.

use std::process::Command;

use crate::support::*;

fn have_systemd_analyze() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !ok {
        cannot_run("systemd-analyze is not installed (apt-get install systemd)");
    }
    ok
}

/// Paths that exist on the booted node but not here.
const NODE_ONLY: &[&str] = &["/usr/bin/docker", "/opt/bootfleet/bin/"];

#[test]
fn rendered_units_of_cloud_and_ignition_configs_pass_systemd_analyze_verify_browser_units_not_run_as_images_cannot_be_pulled_here()
 {
    if !have_systemd_analyze() {
        return;
    }
    let mut checked = 0;
    let mut from_ignition = 0;
    for ex in examples() {
        let name = ex.file_name().unwrap().to_str().unwrap().to_owned();
        let (_state, out) = render_example(&name);
        let units_dir = tempfile::tempdir().unwrap();
        std::fs::write(
            units_dir.path().join("docker.service"),
            "[Unit]\nDescription=stub for the OS's docker\n[Service]\nExecStart=/bin/true\n",
        )
        .unwrap();
        let mut names = Vec::new();
        let cloud = out.path().join("cloud-config");
        for f in if cloud.exists() {
            files_under(&cloud)
        } else {
            Vec::new()
        } {
            let text = std::fs::read_to_string(cloud.join(&f)).unwrap();
            for (unit, content) in cloud_config_parts(&text).1 {
                if let Some(content) = content {
                    std::fs::write(units_dir.path().join(&unit), content).unwrap();
                    names.push(unit);
                }
            }
        }
        let ignition = out.path().join("ignition");
        for f in if ignition.exists() {
            files_under(&ignition)
        } else {
            Vec::new()
        } {
            let text = std::fs::read_to_string(ignition.join(&f)).unwrap();
            let config: bootfleet::ignition::Config = serde_json::from_str(&text).unwrap();
            for u in config
                .systemd
                .into_iter()
                .flat_map(|s| s.units.unwrap_or_default())
            {
                if let Some(content) = u.contents {
                    std::fs::write(units_dir.path().join(&u.name), content).unwrap();
                    names.push(u.name);
                    from_ignition += 1;
                }
            }
        }
        if out.path().join("units").exists() {
            for f in files_under(&out.path().join("units")) {
                std::fs::copy(
                    out.path().join("units").join(&f),
                    units_dir.path().join(format!("fleet-{f}")),
                )
                .unwrap();
                names.push(format!("fleet-{f}"));
            }
        }
        names.sort();
        names.dedup();
        for unit in names {
            // Template units are verified through an instance.
            let target = units_dir.path().join(&unit);
            let run = Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&target)
                .current_dir(units_dir.path())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&run.stderr).into_owned()
                + &String::from_utf8_lossy(&run.stdout);
            let problems: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter(|l| {
                    !(l.contains("is not executable: No such file or directory")
                        && NODE_ONLY.iter().any(|p| l.contains(p)))
                })
                .collect();
            assert!(
                problems.is_empty(),
                "{name}: {unit}:\n{}",
                problems.join("\n")
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} units checked");
    assert!(
        from_ignition >= 6,
        "only {from_ignition} units of Ignition configs"
    );
}

#[test]
fn bootfleets_own_unit_passes_systemd_analyze_verify() {
    if !have_systemd_analyze() {
        return;
    }
    let unit = std::fs::read_to_string(root().join("dist/bootfleet.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/bootfleet "));
    // The installed path does not exist here: point it at the built binary.
    let local = unit.replace("/usr/local/bin/bootfleet", env!("CARGO_BIN_EXE_bootfleet"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootfleet.service");
    std::fs::write(&path, local).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}
