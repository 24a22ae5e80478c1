//! Every machine's boot timeline: the DHCP, TFTP and HTTP servers report
//! what they see here ([`Registry::record`]); the status page, the JSON
//! API, `bootfleet nodes` and the metrics read it. This is where the three
//! servers meet, and the answer to "why didn't node X boot?".
//!
//! Timelines are kept in the store ([`crate::store::Timelines`]), written
//! behind (dirty timelines once a second and at shutdown), so a restart
//! keeps them without an fsync per packet.

pub mod classify;
pub mod failure;
pub mod fixes;
pub mod timeline;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use failure::Failure;
pub use timeline::{Event, PowerAction, PowerVerb, Stage, State, Step, Timeline};

use crate::inventory::Inventory;
use crate::spec::Mac;
use crate::store::Timelines;

/// Why the timelines could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("boot timelines")]
    Store(#[from] crate::store::StoreError),
}

/// A machine the spec knows.
#[derive(Debug, Clone)]
pub struct Known {
    pub name: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub roles: Vec<&'static str>,
}

/// One row of the status page and the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The spec's name, or empty for an unknown machine.
    pub name: String,
    pub mac: String,
    pub ip: Option<Ipv4Addr>,
    pub roles: Vec<String>,
    pub known: bool,
    pub state: State,
    pub stage: Option<Stage>,
    pub arch: Option<String>,
    /// The stages of the current try: when each started, how long it
    /// took (so far, while it goes on).
    pub stages: Vec<StageTime>,
    pub last_event: String,
    /// Unix ms of the last event (0: none).
    pub last_event_at: u64,
    /// The last failure, until the machine gets past it.
    pub failure: Option<FailureStatus>,
    /// Boots seen; a retry before the OS ran is a try of the same boot.
    pub boots: u32,
    /// Tries of the current boot.
    pub tries: u32,
    /// When the current boot started (unix ms; 0: none).
    pub boot_started_at: u64,
    /// The server that saw its last event.
    pub seen_by: String,
    /// The segment of the site its address lies in.
    #[serde(default)]
    pub segment: Option<String>,
    /// Its power as its BMC last told this server (none: not polled).
    #[serde(default)]
    pub power: Option<PowerSeen>,
    /// The last power action `bootfleet power` or `reprovision` took.
    #[serde(default)]
    pub power_action: Option<PowerActionStatus>,
    /// The power action that started the current boot, when one did.
    #[serde(default)]
    pub boot_cause: Option<PowerActionStatus>,
}

/// A machine's power as its BMC last reported it to this server, which
/// asks every BMC the spec names at a bounded rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerSeen {
    /// `on`, `off`, a state the BMC names otherwise, or `unknown` when it
    /// could not be asked.
    pub state: String,
    /// The boot override it holds (`none`, `pxe once`, ...), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
    /// `redfish`, `ipmi` or `libvirt`.
    pub driver: String,
    /// Why it could not be asked, and what to fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it answered, or failed to (unix ms).
    pub checked_at: u64,
}

/// A power action as the page, `nodes` and the API show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowerActionStatus {
    /// `power cycled by reprovision, network boot once`.
    pub message: String,
    #[serde(flatten)]
    pub action: PowerAction,
}

impl From<PowerAction> for PowerActionStatus {
    fn from(action: PowerAction) -> Self {
        PowerActionStatus {
            message: action.describe(),
            action,
        }
    }
}

/// A failure as the page, `nodes` and the API show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureStatus {
    /// `failed at initrd: /assets/f/initrd.img not found (404), 3 tries`.
    pub message: String,
    #[serde(flatten)]
    pub failure: Failure,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: Stage,
    /// When its first request arrived (unix ms).
    pub at: u64,
    /// From then to its last answer, or to now while it goes on.
    pub ms: u64,
    /// Served (false while it goes on).
    pub done: bool,
    /// The server that saw it (a site of several servers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub seen_by: String,
}

/// The spec's machines, in spec order.
pub fn known(inventory: &Inventory) -> Vec<Known> {
    inventory
        .nodes
        .iter()
        .map(|n| Known {
            name: n.name.clone(),
            mac: n.mac,
            ip: n.ip,
            roles: n.roles.names(),
        })
        .collect()
}

#[derive(Default)]
struct Inner {
    timelines: HashMap<Mac, Timeline>,
    by_ip: HashMap<Ipv4Addr, Mac>,
    dirty: HashSet<Mac>,
    /// The spec's machines (replaced when the spec is reloaded).
    known: Vec<Known>,
    mac_by_name: HashMap<String, Mac>,
    /// What the spec's machines' BMCs last said.
    power: HashMap<Mac, PowerSeen>,
    /// The site's segments, to name each row's.
    segments: crate::spec::SegmentNames,
}

impl Inner {
    /// Joins `t`, a view of the machine saved by some server (this one
    /// before a restart, or another of the site), into the one held; says
    /// whether anything changed. A joined view is saved again (it is this
    /// server's view now).
    fn merge(&mut self, mac: Mac, t: &Timeline) -> bool {
        let mine = self.timelines.entry(mac).or_default();
        let before = mine.clone();
        mine.merge(t);
        if *mine == before {
            return false;
        }
        if let Some(ip) = mine.ip {
            self.by_ip.insert(ip, mac);
        }
        true
    }

    fn set_known(&mut self, known: Vec<Known>) {
        for k in &known {
            self.by_ip.entry(k.ip).or_insert(k.mac);
        }
        self.mac_by_name = known.iter().map(|k| (k.name.clone(), k.mac)).collect();
        self.power
            .retain(|mac, _| known.iter().any(|k| k.mac == *mac));
        self.known = known;
    }
}

/// Every machine's timeline, shared by the servers.
pub struct Registry {
    inner: Mutex<Inner>,
    stall_after_ms: u64,
    store: Option<Arc<dyn Timelines>>,
    /// This server, as timelines name it (its HTTP address).
    server: Mutex<String>,
    /// Seconds each stage took (first request to first answer), and
    /// whole boots (first DHCP to phone-home), as this server saw them.
    stage_seconds: crate::metrics::Histograms,
}

impl Registry {
    /// A registry for the spec's machines, loading earlier timelines from
    /// `store` (none kept when it is `None`). A record that does not read
    /// as a timeline (an older format) is left out.
    pub fn open(
        known: Vec<Known>,
        stall_after_ms: u64,
        store: Option<Arc<dyn Timelines>>,
    ) -> Result<Registry, BootError> {
        let mut inner = Inner::default();
        if let Some(store) = &store {
            for (mac, record) in store.load()? {
                let Ok(t) = serde_json::from_slice::<Timeline>(&record) else {
                    continue;
                };
                inner.merge(mac, &t);
            }
        }
        inner.set_known(known);
        Ok(Registry {
            inner: Mutex::new(inner),
            stall_after_ms,
            store,
            server: Mutex::new(String::new()),
            stage_seconds: crate::metrics::histograms(crate::metrics::slow),
        })
    }

    /// Puts the boot durations on the metrics page.
    pub fn register_metrics(&self, m: &mut crate::metrics::Metrics) {
        m.register(
            "bootfleet_boot_stage_duration_seconds",
            "Boot stages from their first request to their first answer (os_boot: initrd served to the OS's first request; booted: a whole boot, first DHCP to phone-home)",
            self.stage_seconds.clone(),
        );
    }

    /// Names this server in the timelines it writes.
    pub fn set_server(&self, name: String) {
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = name;
    }

    /// Joins the timelines other servers of the site saved since the last
    /// call into this server's: every server then shows every machine of
    /// the site, each stage with the server that saw it.
    pub fn absorb(&self) -> Result<usize, BootError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let server = self
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let rows = store.changed(&server)?;
        let mut inner = self.lock();
        let mut taken = 0;
        for (mac, record) in rows {
            let Ok(t) = serde_json::from_slice::<Timeline>(&record) else {
                continue;
            };
            if inner.merge(mac, &t) {
                inner.dirty.insert(mac);
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// Replaces the spec's machines (the spec was reloaded).
    pub fn set_known(&self, known: Vec<Known>) {
        self.lock().set_known(known);
    }

    /// Names the site's segments, for each row's `segment`.
    pub fn set_segments(&self, segments: crate::spec::SegmentNames) {
        self.lock().segments = segments;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds in one event; a failure is logged with the machine, what it
    /// asked, what it was told and the fix.
    pub fn record(&self, e: Event) {
        let mut inner = self.lock();
        if let Some(ip) = e.ip {
            inner.by_ip.insert(ip, e.mac);
        }
        if let Step::Failed { answer, fix } = &e.step {
            let name = inner
                .known
                .iter()
                .find(|k| k.mac == e.mac)
                .map_or("(unknown)", |k| k.name.as_str());
            tracing::warn!(
                machine = %name,
                mac = %e.mac,
                stage = e.stage.name(),
                asked = %e.asked,
                answer = %answer,
                fix = fix.as_deref().unwrap_or("-"),
                "boot step failed"
            );
        }
        let t = inner.timelines.entry(e.mac).or_default();
        let open = |t: &Timeline, s: Stage| t.stages.get(&s).is_none_or(|x| x.end.is_none());
        let (was_open, os_was_open) = (open(t, e.stage), open(t, Stage::OsBoot));
        t.apply(&e);
        self.observe(t, e.stage, was_open);
        if e.stage != Stage::OsBoot {
            self.observe(t, Stage::OsBoot, os_was_open);
        }
        t.seen(
            e.stage,
            &self.server.lock().unwrap_or_else(|p| p.into_inner()),
        );
        inner.dirty.insert(e.mac);
    }

    /// Folds in a power action taken on the spec's machine `name`; false
    /// when the spec has no such machine.
    pub fn record_power(&self, name: &str, action: &PowerAction) -> bool {
        let mut inner = self.lock();
        let Some(mac) = inner.mac_by_name.get(name).copied() else {
            return false;
        };
        tracing::info!(machine = %name, mac = %mac, "{}", action.describe());
        let t = inner.timelines.entry(mac).or_default();
        t.powered(action);
        let server = self
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if t.seen_by != server {
            t.seen_by = server;
        }
        inner.dirty.insert(mac);
        true
    }

    /// What the BMC of the spec's machine `name` said (`None`: it has no
    /// BMC to ask).
    pub fn set_power(&self, name: &str, seen: Option<PowerSeen>) {
        let mut inner = self.lock();
        let Some(mac) = inner.mac_by_name.get(name).copied() else {
            return;
        };
        match seen {
            Some(s) => inner.power.insert(mac, s),
            None => inner.power.remove(&mac),
        };
    }

    /// A stage that was open and is served now: its duration into the
    /// metrics (a whole boot's too, when it is the phone-home).
    fn observe(&self, t: &Timeline, stage: Stage, was_open: bool) {
        let Some(span) = t.stages.get(&stage).filter(|_| was_open) else {
            return;
        };
        let Some(end) = span.end else { return };
        let (start, label) = match stage {
            Stage::Booted => (t.started, "booted"),
            s => (span.start, s.name()),
        };
        self.stage_seconds
            .get_or_create(&[("stage", label)])
            .observe(end.saturating_sub(start) as f64 / 1000.0);
    }

    /// The machine that last held `ip` (from DHCP, or the spec).
    pub fn mac_of_ip(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.lock().by_ip.get(&ip).copied()
    }

    /// The MAC of the spec's machine called `name`.
    pub fn mac_of_name(&self, name: &str) -> Option<Mac> {
        self.lock().mac_by_name.get(name).copied()
    }

    /// How long without news before a booting machine counts as stalled.
    pub fn stall_after_ms(&self) -> u64 {
        self.stall_after_ms
    }

    /// Writes the timelines changed since the last flush.
    pub fn flush(&self) -> Result<(), BootError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let rows: Vec<(Mac, Vec<u8>)> = {
            let mut inner = self.lock();
            let dirty: Vec<Mac> = inner.dirty.drain().collect();
            dirty
                .into_iter()
                .filter_map(|m| {
                    let t = inner.timelines.get(&m)?;
                    Some((m, serde_json::to_vec(t).ok()?))
                })
                .collect()
        };
        let server = self
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Err(e) = store.save(&server, &rows) {
            // Kept dirty for the next flush.
            let mut inner = self.lock();
            inner.dirty.extend(rows.iter().map(|(m, _)| *m));
            return Err(e.into());
        }
        Ok(())
    }

    /// Forgets the timelines of machines the spec does not list whose last
    /// news is older than `before` (unix ms), here and in the store: a
    /// site that has seen many machines come and go (throwaway clusters,
    /// strangers refused) would otherwise keep each forever. Their number.
    pub fn forget_quiet(&self, before: u64) -> Result<usize, BootError> {
        let old: Vec<Mac> = {
            let mut inner = self.lock();
            let known: HashSet<Mac> = inner.known.iter().map(|k| k.mac).collect();
            let old: HashSet<Mac> = inner
                .timelines
                .iter()
                .filter(|(mac, t)| !known.contains(mac) && t.last_at < before)
                .map(|(mac, _)| *mac)
                .collect();
            inner.timelines.retain(|mac, _| !old.contains(mac));
            inner.dirty.retain(|mac| !old.contains(mac));
            inner.by_ip.retain(|_, mac| !old.contains(mac));
            old.into_iter().collect()
        };
        if let Some(store) = &self.store {
            store.forget(&old)?;
        }
        Ok(old.len())
    }

    /// Every machine, known ones first in spec order, then unknown ones by
    /// MAC, as of `now`.
    pub fn snapshot(&self, now: u64) -> Vec<NodeStatus> {
        let inner = self.lock();
        let empty = Timeline::default();
        let segment_of = |ip: Option<Ipv4Addr>| inner.segments.name_of(ip?).map(str::to_owned);
        let row = |mac: Mac, known: Option<&Known>, t: &Timeline| NodeStatus {
            segment: segment_of(known.map(|k| k.ip).or(t.ip)),
            name: known.map(|k| k.name.clone()).unwrap_or_default(),
            mac: mac.to_string(),
            ip: t.ip.or(known.map(|k| k.ip)),
            roles: known
                .map(|k| k.roles.iter().map(|r| r.to_string()).collect())
                .unwrap_or_default(),
            known: known.is_some(),
            state: t.state(now, self.stall_after_ms),
            // A machine that failed is at the stage it failed in (its
            // failed stage is no longer among those of its try).
            stage: match (t.state(now, self.stall_after_ms), &t.failure) {
                (State::Failed, Some(f)) => Some(f.stage),
                _ => t.stage(),
            },
            arch: t.arch.clone(),
            stages: t
                .durations(now)
                .into_iter()
                .map(|(stage, span, ms)| StageTime {
                    stage,
                    at: span.start,
                    ms,
                    done: span.end.is_some(),
                    seen_by: span.by,
                })
                .collect(),
            last_event: t.last.clone(),
            last_event_at: t.last_at,
            failure: t.failure.clone().map(|failure| FailureStatus {
                message: failure.message(),
                failure,
            }),
            boots: t.boots,
            tries: t.tries,
            boot_started_at: t.started,
            seen_by: t.seen_by.clone(),
            power: known.and_then(|_| inner.power.get(&mac).cloned()),
            power_action: t.power.clone().map(PowerActionStatus::from),
            boot_cause: t.cause.clone().map(PowerActionStatus::from),
        };
        let mut out: Vec<NodeStatus> = inner
            .known
            .iter()
            .map(|k| {
                row(
                    k.mac,
                    Some(k),
                    inner.timelines.get(&k.mac).unwrap_or(&empty),
                )
            })
            .collect();
        let known_macs: HashSet<Mac> = inner.known.iter().map(|k| k.mac).collect();
        let mut unknown: Vec<(&Mac, &Timeline)> = inner
            .timelines
            .iter()
            .filter(|(m, _)| !known_macs.contains(m))
            .collect();
        unknown.sort_by_key(|(m, _)| **m);
        out.extend(unknown.into_iter().map(|(m, t)| row(*m, None, t)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<Known> {
        vec![Known {
            name: "n1".into(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            ip: Ipv4Addr::new(10, 0, 0, 10),
            roles: vec!["etcd"],
        }]
    }

    fn ev(mac: Mac, at: u64, stage: Stage) -> Event {
        Event {
            mac,
            at,
            stage,
            step: Step::Served,
            asked: stage.name().into(),
            detail: stage.name().into(),
            ip: None,
            arch: None,
        }
    }

    #[test]
    fn known_and_unknown_machines_are_listed_and_timelines_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let stranger = Mac([2, 0, 0, 0, 0, 9]);
        let store = || -> Option<Arc<dyn Timelines>> {
            Some(Arc::new(crate::store::embedded::Lazy::new(dir.path())))
        };
        {
            let r = Registry::open(known(), 60_000, store()).unwrap();
            let mut e = ev(stranger, 1, Stage::Dhcp);
            e.ip = Some(Ipv4Addr::new(10, 0, 0, 100));
            r.record(e);
            r.record(ev(Mac([2, 0, 0, 0, 0, 1]), 5, Stage::Dhcp));
            r.record(ev(Mac([2, 0, 0, 0, 0, 1]), 9, Stage::Booted));
            assert_eq!(r.mac_of_ip(Ipv4Addr::new(10, 0, 0, 100)), Some(stranger));
            r.flush().unwrap();
        }
        let r = Registry::open(known(), 60_000, store()).unwrap();
        let rows = r.snapshot(100);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].name.as_str(), rows[0].state),
            ("n1", State::Booted)
        );
        assert_eq!((rows[1].known, rows[1].state), (false, State::Booting));
        assert_eq!(rows[1].ip, Some(Ipv4Addr::new(10, 0, 0, 100)));
        r.set_known(vec![Known {
            name: "n9".into(),
            ..known().remove(0)
        }]);
        assert_eq!(r.mac_of_name("n9"), Some(Mac([2, 0, 0, 0, 0, 1])));
        assert_eq!(r.mac_of_name("n1"), None, "renamed by a reloaded spec");
        assert_eq!(r.snapshot(100)[0].name, "n9");
        assert_eq!(
            r.mac_of_ip(Ipv4Addr::new(10, 0, 0, 10)),
            Some(Mac([2, 0, 0, 0, 0, 1]))
        );
    }

    #[test]
    fn a_machine_failed_at_its_initrd_is_at_the_initrd_stage() {
        let r = Registry::open(known(), 60_000, None).unwrap();
        let n1 = Mac([2, 0, 0, 0, 0, 1]);
        r.record(ev(n1, 1, Stage::Dhcp));
        r.record(ev(n1, 2, Stage::Script));
        r.record(ev(n1, 3, Stage::Kernel));
        r.record(Event {
            step: Step::Failed {
                answer: "not found (404)".into(),
                fix: None,
            },
            ..ev(n1, 4, Stage::Initrd)
        });
        let row = &r.snapshot(10)[0];
        assert_eq!(row.state, State::Failed);
        assert_eq!(row.stage, Some(Stage::Initrd), "{row:?}");
        assert_eq!(
            row.failure.as_ref().map(|f| f.failure.stage),
            Some(Stage::Initrd)
        );
    }

    #[test]
    fn timelines_of_strangers_quiet_for_long_are_forgotten_and_the_specs_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (old, recent) = (Mac([2, 0, 0, 0, 0, 8]), Mac([2, 0, 0, 0, 0, 9]));
        let store = || -> Option<Arc<dyn Timelines>> {
            Some(Arc::new(crate::store::embedded::Lazy::new(dir.path())))
        };
        {
            let r = Registry::open(known(), 60_000, store()).unwrap();
            let mut e = ev(old, 1_000, Stage::Dhcp);
            e.ip = Some(Ipv4Addr::new(10, 0, 0, 100));
            r.record(e);
            r.record(ev(recent, 9_000, Stage::Dhcp));
            r.record(ev(Mac([2, 0, 0, 0, 0, 1]), 1_000, Stage::Booted));
            r.flush().unwrap();
            assert_eq!(r.forget_quiet(5_000).unwrap(), 1, "only the quiet stranger");
            assert_eq!(r.mac_of_ip(Ipv4Addr::new(10, 0, 0, 100)), None);
            assert_eq!(r.forget_quiet(5_000).unwrap(), 0);
        }
        // Gone from the store too; the spec's machine and the recent
        // stranger stay.
        let r = Registry::open(known(), 60_000, store()).unwrap();
        let macs: Vec<String> = r.snapshot(10_000).into_iter().map(|row| row.mac).collect();
        assert_eq!(
            macs,
            vec![Mac([2, 0, 0, 0, 0, 1]).to_string(), recent.to_string()]
        );
    }
}
