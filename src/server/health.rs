//! Whether each part of a running server is well, for `/healthz`, the
//! `bootfleet_part_up` metric and the systemd watchdog.
//!
//! A part is well when it runs and is not stuck: the DHCP loop wakes at
//! least once a second (it polls with a one-second timeout) and the TFTP
//! runtime runs a one-second heartbeat, each stamping the time; a stamp
//! older than [`STUCK_MS`] means the part is wedged (a store call that
//! never returns, a runtime whose threads are all blocked). The lease
//! store is well while its last call reached it and its last commit
//! succeeded. HTTP is well when it answers: `/healthz` itself is the
//! proof.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::http::PartHealth;
use crate::metrics::Out;

/// A heartbeat older than this (ms) means the part is stuck.
pub const STUCK_MS: u64 = 5_000;

/// What the health of the parts is judged from.
#[derive(Clone)]
pub struct Parts {
    pub dhcp: Option<Arc<crate::dhcp::server::Stats>>,
    pub tftp: Arc<crate::tftp::server::Stats>,
    pub store: Arc<dyn crate::store::Leases>,
    pub http: String,
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Parts")
    }
}

/// One part's state as read: running, its last heartbeat (unix ms).
#[derive(Debug, Clone, Copy)]
pub struct Beat {
    pub running: bool,
    pub at_ms: u64,
}

/// A looping part's health at `now_ms`.
pub fn judge_loop(part: &'static str, beat: Beat, now_ms: u64, what: &str) -> PartHealth {
    let age = now_ms.saturating_sub(beat.at_ms);
    let (ok, detail) = if !beat.running {
        (false, format!("{what} stopped"))
    } else if age > STUCK_MS {
        (
            false,
            format!(
                "{what} stuck: its loop last ran {:.1} s ago",
                age as f64 / 1000.0
            ),
        )
    } else {
        (true, format!("{what} running"))
    };
    PartHealth { part, ok, detail }
}

/// The store's health: it answered its last call and took the last
/// commit.
pub fn judge_store(reachable: bool, commit_failed: bool, shared: bool) -> PartHealth {
    let (ok, detail) = match (reachable, commit_failed) {
        (false, _) => (false, "unreachable: its last call failed".to_owned()),
        (true, true) => (
            false,
            "not writable: its last lease commit failed".to_owned(),
        ),
        (true, false) => (true, "writable".to_owned()),
    };
    let kind = if shared { "shared" } else { "embedded" };
    PartHealth {
        part: "store",
        ok,
        detail: format!("{kind} store {detail}"),
    }
}

impl Parts {
    /// Every part, as of `now_ms`.
    pub fn check(&self, now_ms: u64) -> Vec<PartHealth> {
        let mut out = Vec::new();
        let mut commit_failed = false;
        if let Some(d) = &self.dhcp {
            let beat = Beat {
                running: d.running.load(Ordering::Relaxed),
                at_ms: d.heartbeat_ms.load(Ordering::Relaxed),
            };
            out.push(judge_loop("dhcp", beat, now_ms, "DHCP server"));
            commit_failed = d.last_commit_failed.load(Ordering::Relaxed);
        }
        let t = &self.tftp;
        let beat = Beat {
            running: t.serving.load(Ordering::Relaxed),
            at_ms: t.heartbeat_ms.load(Ordering::Relaxed),
        };
        out.push(judge_loop("tftp", beat, now_ms, "TFTP server"));
        out.push(PartHealth {
            part: "http",
            ok: true,
            detail: format!("answering on {}", self.http),
        });
        out.push(judge_store(
            self.store.reachable(),
            commit_failed,
            self.store.shared(),
        ));
        out
    }
}

impl crate::http::Health for Parts {
    fn parts(&self) -> Vec<PartHealth> {
        self.check(crate::clock::now_ms())
    }
}

/// `bootfleet_part_up{part}`: 1 for a part that is well.
impl Collector for Parts {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let parts = self.check(crate::clock::now_ms());
        Out(encoder).gauges(
            "bootfleet_part_up",
            "1 when the part (dhcp, tftp, http, store) runs and is not stuck; see /healthz for why not",
            parts.iter().map(|p| ([("part", p.part)], i64::from(p.ok))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_well_while_it_runs_and_beats_and_says_why_not() {
        let beat = |running, at_ms| Beat { running, at_ms };
        assert!(judge_loop("dhcp", beat(true, 9_000), 10_000, "DHCP server").ok);
        let stuck = judge_loop("dhcp", beat(true, 1_000), 10_000, "DHCP server");
        assert!(!stuck.ok);
        assert_eq!(
            stuck.detail,
            "DHCP server stuck: its loop last ran 9.0 s ago"
        );
        let stopped = judge_loop("tftp", beat(false, 10_000), 10_000, "TFTP server");
        assert_eq!(
            (stopped.ok, stopped.detail.as_str()),
            (false, "TFTP server stopped")
        );
    }

    #[test]
    fn the_store_is_well_when_reached_and_its_last_commit_held() {
        assert!(judge_store(true, false, false).ok);
        let away = judge_store(false, false, true);
        assert_eq!(
            (away.ok, away.detail.as_str()),
            (false, "shared store unreachable: its last call failed")
        );
        assert!(!judge_store(true, true, false).ok);
    }
}
