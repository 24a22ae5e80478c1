//! The power column of the page, `nodes` and the API: a thread of the
//! server asks every BMC the spec names for the machine's power state,
//! each at most once per [`EVERY`], [`AT_ONCE`] at a time, and keeps the
//! answer in the timelines' registry. A BMC that does not answer is shown
//! as `unknown` with why, never as off. Nothing here changes a machine's
//! power.
//!
//! Nodes without a `bmc` are the libvirt domains of `bootfleet cluster`:
//! asked only when the server runs a cluster (`serve --cluster`), and
//! shown without a power state when there is no such domain.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::live::Live;
use crate::boot::{PowerSeen, Registry};
use crate::clock::now_ms;
use crate::power::{Bmc, PowerError};
use crate::spec::{BmcDriver, NodeSpec, Spec};

/// How often each BMC is asked.
pub const EVERY: Duration = Duration::from_secs(30);

/// BMCs asked at once.
pub const AT_ONCE: usize = 4;

/// Wakes the poller early (a power action was reported) and stops it.
#[derive(Default)]
pub struct Poke {
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Poke {
    /// Starts the next round now.
    pub fn now(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = true;
        self.cv.notify_all();
    }

    /// Ends the poller after the round under way.
    pub fn stop(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1 = true;
        self.cv.notify_all();
    }

    /// Waits until `until`, a poke or the stop; true when stopped.
    fn wait(&self, until: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if s.1 {
                return true;
            }
            if s.0 {
                s.0 = false;
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            s = self
                .cv
                .wait_timeout(s, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// One node's BMC, kept open between rounds (a Redfish service's system
/// is looked up once; an insecure one is warned about once per opening).
struct Open {
    /// The node's `bmc` as the spec gave it when opened.
    spec: Option<crate::spec::Bmc>,
    bmc: Box<dyn Bmc>,
}

/// Asks the BMCs until `poke` says stop. Runs on a thread of its own
/// (BMC calls block, up to [`crate::power::CALL_TIMEOUT`] each).
pub(super) fn run(live: Arc<Live>, registry: Arc<Registry>, cluster: bool, poke: Arc<Poke>) {
    let mut open: HashMap<String, Open> = HashMap::new();
    loop {
        let started = Instant::now();
        let spec = live.spec();
        let nodes: Vec<&NodeSpec> = spec
            .nodes
            .iter()
            .filter(|n| n.bmc.is_some() || cluster)
            .collect();
        open.retain(|name, _| nodes.iter().any(|n| &n.name == name));
        let jobs: Vec<(&NodeSpec, Option<Open>)> = nodes
            .iter()
            .map(|n| {
                let kept = open.remove(&n.name).filter(|o| o.spec == n.bmc);
                (*n, kept)
            })
            .collect();
        for (name, seen, kept) in round(&spec, jobs) {
            registry.set_power(&name, seen);
            if let Some(k) = kept {
                open.insert(name, k);
            }
        }
        if poke.wait(started + EVERY) {
            return;
        }
    }
}

/// Asks every node of `jobs`, [`AT_ONCE`] at a time.
fn round(
    spec: &Spec,
    jobs: Vec<(&NodeSpec, Option<Open>)>,
) -> Vec<(String, Option<PowerSeen>, Option<Open>)> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let queue = Mutex::new(jobs);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..AT_ONCE {
            s.spawn(|| {
                loop {
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some((node, kept)) = job else { break };
                    let (seen, kept) = ask(spec, node, kept);
                    out.lock().unwrap_or_else(|p| p.into_inner()).push((
                        node.name.clone(),
                        seen,
                        kept,
                    ));
                }
            });
        }
    });
    out.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// One node's power; its BMC kept open when it answered.
fn ask(spec: &Spec, node: &NodeSpec, kept: Option<Open>) -> (Option<PowerSeen>, Option<Open>) {
    let driver = node
        .bmc
        .as_ref()
        .map_or(BmcDriver::Libvirt, |b| b.driver)
        .name()
        .to_owned();
    let failed = |e: PowerError| PowerSeen {
        state: "unknown".into(),
        boot: None,
        driver: driver.clone(),
        error: Some(e.to_string()),
        checked_at: now_ms(),
    };
    let mut o = match kept {
        Some(o) => o,
        None => match crate::power::open(spec, node) {
            Ok(bmc) => Open {
                spec: node.bmc.clone(),
                bmc,
            },
            // A node without a BMC that is not a VM of this cluster.
            Err(PowerError::NoBmc { .. }) if node.bmc.is_none() => return (None, None),
            Err(e) => return (Some(failed(e)), None),
        },
    };
    match o.bmc.status() {
        Ok(s) => (
            Some(PowerSeen {
                state: s.power.to_string(),
                boot: Some(s.boot.to_string()),
                driver: driver.clone(),
                error: None,
                checked_at: now_ms(),
            }),
            Some(o),
        ),
        Err(e) => (Some(failed(e)), None),
    }
}

/// Starts the poller on a thread of its own, woken and stopped by `poke`.
pub(super) fn spawn(
    live: Arc<Live>,
    registry: Arc<Registry>,
    cluster: bool,
    poke: Arc<Poke>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("power".into())
        .spawn(move || run(live, registry, cluster, poke))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poke_wakes_the_poller_early_and_stop_ends_it() {
        let poke = Poke::default();
        let t = Instant::now();
        poke.now();
        assert!(!poke.wait(t + Duration::from_secs(30)));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!poke.wait(Instant::now() + Duration::from_millis(20)));
        poke.stop();
        assert!(poke.wait(Instant::now() + Duration::from_secs(30)));
    }
}
