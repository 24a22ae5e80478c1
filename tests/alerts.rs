//! The Prometheus alerting rules in `dist/` load in Prometheus' own
//! `promtool` (Debian's prometheus package) and fire on the series that
//! should raise them, not earlier (`dist/bootfleet-alerts.test.yml`).
//! `tests/dhcp.rs` checks that every metric they name is on a running
//! server's page.

use std::process::Command;

use crate::support::*;

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(root().join("dist"))
        .output()
        .unwrap()
}

#[test]
fn the_alerting_rules_load_and_fire_when_they_should_in_promtool() {
    if !have("promtool") {
        return;
    }
    let check = promtool(&["check", "rules", "bootfleet-alerts.yml"]);
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    assert!(
        stdout(&check).contains("SUCCESS: 7 rules found"),
        "{}",
        stdout(&check)
    );
    let test = promtool(&["test", "rules", "bootfleet-alerts.test.yml"]);
    assert!(test.status.success(), "{}{}", stdout(&test), stderr(&test));
}

/// Every `bootfleet_` metric the alerting rules name (counters with
/// their `_total`).
pub fn metrics_in_rules() -> Vec<String> {
    let rules = std::fs::read_to_string(root().join("dist/bootfleet-alerts.yml")).unwrap();
    let mut names: Vec<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("bootfleet_"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}
