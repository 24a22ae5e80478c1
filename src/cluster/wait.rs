//! Waiting for the nodes to phone home, from the boot server's timelines
//! (`/api/v1/nodes`): one live line per node on a terminal (indicatif),
//! a line per change otherwise, and who stalled where when time runs out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::ClusterError;
use crate::boot::{NodeStatus, State};

/// A node waited for, and where to look when it does not come (its
/// console log, its BMC).
#[derive(Debug, Clone)]
pub struct Waited {
    pub node: String,
    pub look: String,
}

/// The server's view of every node, by node name.
pub fn fetch(http: &str) -> Result<HashMap<String, NodeStatus>, crate::http::client::ClientError> {
    let body = crate::http::client::get(http, "/api/v1/nodes")?;
    let rows: Vec<NodeStatus> = serde_json::from_str(&body).unwrap_or_default();
    Ok(rows
        .into_iter()
        .filter(|n| !n.name.is_empty())
        .map(|n| (n.name.clone(), n))
        .collect())
}

/// One line about a node: its state, stage and last event.
pub fn describe(n: Option<&NodeStatus>) -> String {
    let Some(n) = n else {
        return "waiting for its first DHCP request".into();
    };
    let stage = n.stage.map_or("-", |s| s.name());
    // Power-cycled and not heard from since.
    if n.stage.is_none() && matches!(n.state, State::Waiting | State::Stalled) {
        if let Some(p) = &n.power_action {
            let quiet = crate::clock::now_ms().saturating_sub(p.action.at) / 1000;
            let mut said = format!("no DHCP request since it was {} {quiet} s ago", p.message);
            if n.state == State::Stalled {
                said.push_str(" (is it set to boot from the network, and is its NIC on a segment this server answers?)");
            }
            return said;
        }
    }
    match n.state {
        State::Booted => "booted (phoned home)".into(),
        State::Waiting => "waiting for its first DHCP request".into(),
        State::Failed => match &n.failure {
            Some(f) => f.message.clone(),
            None => format!("failed at {stage}: {}", n.last_event),
        },
        State::Stalled => format!("stalled at {stage}: {}", n.last_event),
        State::Booting => format!("{stage}: {}", n.last_event),
    }
}

/// Where a node that did not phone home got to, for the timeout's error.
fn stuck(n: Option<&NodeStatus>) -> String {
    match n {
        Some(n)
            if matches!(n.state, State::Booting | State::Stalled)
                && n.stage == Some(crate::boot::Stage::OsBoot) =>
        {
            let quiet = crate::clock::now_ms().saturating_sub(n.last_event_at) / 1000;
            format!(
                "got as far as os_boot: its kernel and initrd were served {quiet} s ago and its OS never asked for anything since (a kernel panic or a hang, or no network in the OS)"
            )
        }
        Some(n) if matches!(n.state, State::Booting | State::Stalled) && n.stage.is_some() => {
            let quiet = crate::clock::now_ms().saturating_sub(n.last_event_at) / 1000;
            format!(
                "got as far as {} ({}), nothing since for {quiet} s",
                n.stage.map_or("-", |s| s.name()),
                n.last_event
            )
        }
        other => describe(other),
    }
}

/// Whether `n` phoned home in this boot: after `since` (Unix ms) when the
/// node was started now, at any time when it was already running.
fn booted(n: Option<&NodeStatus>, since: u64, fresh: bool) -> bool {
    let Some(n) = n else { return false };
    n.state == State::Booted
        && (!fresh
            || n.stages
                .iter()
                .any(|s| s.stage == crate::boot::Stage::Booted && s.at >= since))
}

/// Waits until every node of `nodes` has phoned home. `started` names the
/// nodes started now (phone-homes before `since`, Unix ms, do not count
/// for them); `stop` ends the wait early (a signal).
pub fn until_booted(
    nodes: &[Waited],
    http: &str,
    started: &[String],
    since: u64,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<HashMap<String, NodeStatus>, ClusterError> {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let live = !multi.is_hidden();
    let style = ProgressStyle::with_template("{spinner} {prefix:<12} {elapsed:>4} {wide_msg}")
        .expect("style");
    let bars: Vec<ProgressBar> = nodes
        .iter()
        .map(|d| {
            let b = multi.add(
                ProgressBar::new_spinner()
                    .with_style(style.clone())
                    .with_prefix(d.node.clone()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        })
        .collect();
    let mut last: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + timeout;
    loop {
        let now = fetch(http).unwrap_or_default();
        let mut all = true;
        for (d, bar) in nodes.iter().zip(&bars) {
            let n = now.get(&d.node);
            let fresh = started.contains(&d.node);
            let done = booted(n, since, fresh);
            all &= done;
            let text = if done {
                "booted (phoned home)".to_owned()
            } else if fresh && n.is_some_and(|n| n.state == State::Booted) {
                "booting".to_owned()
            } else {
                describe(n)
            };
            if last.get(&d.node) != Some(&text) {
                if !live {
                    eprintln!("{}: {text}", d.node);
                }
                last.insert(d.node.clone(), text.clone());
            }
            if done && !bar.is_finished() {
                bar.finish_with_message(text);
            } else if !done {
                bar.set_message(text);
            }
        }
        if all {
            return Ok(now);
        }
        if stop.load(Ordering::Relaxed) {
            bars.iter().for_each(ProgressBar::abandon);
            return Err(ClusterError::Interrupted);
        }
        if Instant::now() > deadline {
            bars.iter().for_each(ProgressBar::abandon);
            let stalled = nodes
                .iter()
                .filter(|d| !booted(now.get(&d.node), since, started.contains(&d.node)))
                .map(|d| format!("{}: {} ({})", d.node, stuck(now.get(&d.node)), d.look))
                .collect();
            return Err(ClusterError::Stalled { timeout, stalled });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
