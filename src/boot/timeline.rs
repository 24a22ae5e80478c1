//! One machine's boot, folded from the events the servers report. Pure:
//! events and `now` in, the stage reached, how long each stage took and
//! whether the machine stalled, out.
//!
//! A machine passes through the stages in order: an address (DHCP), its
//! boot loader or iPXE script, the kernel, the initrd, its cloud-config,
//! then the phone-home call that says it booted. Stages may be skipped (an
//! iPXE ROM needs no loader). A DHCP exchange after the machine got further
//! than DHCP is a new boot when it comes from boot firmware (it declares
//! an architecture): the timeline starts over and counts it. The booted
//! OS asking for its address again is news, not a new boot.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::spec::Mac;

/// The stages of a boot, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Got its address and boot file name.
    Dhcp,
    /// Fetched its boot loader or pxelinux config (TFTP).
    Loader,
    /// Fetched its iPXE script (HTTP).
    Script,
    /// Fetched the kernel.
    Kernel,
    /// Fetched the initrd.
    Initrd,
    /// Fetched its cloud-config: the OS is up and configuring itself.
    CloudConfig,
    /// Called home: booted.
    Booted,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 7] = [
        Stage::Dhcp,
        Stage::Loader,
        Stage::Script,
        Stage::Kernel,
        Stage::Initrd,
        Stage::CloudConfig,
        Stage::Booted,
    ];

    /// The name shown on the page and in the API.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Dhcp => "dhcp",
            Stage::Loader => "loader",
            Stage::Script => "script",
            Stage::Kernel => "kernel",
            Stage::Initrd => "initrd",
            Stage::CloudConfig => "cloud_config",
            Stage::Booted => "booted",
        }
    }
}

/// Something a server saw a machine do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub mac: Mac,
    /// Unix milliseconds.
    pub at: u64,
    pub stage: Stage,
    /// What happened, for people: `ack 10.0.0.5 bios undionly.kpxe`,
    /// `tftp pxelinux.0 26,579 bytes`, `GET /assets/vmlinuz`.
    pub detail: String,
    /// The step failed (a transfer aborted, a 403): the stage is not
    /// reached, but the machine is marked as failing there.
    pub failed: bool,
    /// The address, when the event knows it (DHCP).
    pub ip: Option<Ipv4Addr>,
    /// The firmware, when the event knows it (DHCP).
    pub arch: Option<String>,
}

/// One machine's boot so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub ip: Option<Ipv4Addr>,
    pub arch: Option<String>,
    /// When each stage was first reached in this boot (unix ms).
    pub reached: BTreeMap<Stage, u64>,
    /// The last thing that happened: when, and what.
    pub last_at: u64,
    pub last: String,
    /// The last failure in this boot, if any.
    pub failure: Option<String>,
    /// Boots seen (a new DHCP exchange after the loader starts one).
    pub boots: u32,
}

/// How a machine is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Nothing seen yet.
    Waiting,
    /// On its way.
    Booting,
    /// Called home.
    Booted,
    /// Nothing happened for longer than the stall time.
    Stalled,
    /// Its last step failed.
    Failed,
}

impl State {
    /// The name shown on the page, in the API and in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Booting => "booting",
            State::Booted => "booted",
            State::Stalled => "stalled",
            State::Failed => "failed",
        }
    }
}

impl Timeline {
    /// Folds one event in.
    pub fn apply(&mut self, e: &Event) {
        let beyond_dhcp = self.reached.keys().any(|s| *s > Stage::Dhcp);
        let firmware = e.arch.is_some();
        let new_boot = (beyond_dhcp && firmware) || self.reached.is_empty();
        if e.stage == Stage::Dhcp && !e.failed && new_boot {
            self.reached.clear();
            self.failure = None;
            self.boots += 1;
        }
        if e.ip.is_some() {
            self.ip = e.ip;
        }
        if e.arch.is_some() {
            self.arch.clone_from(&e.arch);
        }
        if e.failed {
            self.failure = Some(e.detail.clone());
        } else {
            self.reached.entry(e.stage).or_insert(e.at);
            if self.failure.is_some() && e.stage >= self.stage().unwrap_or(Stage::Dhcp) {
                self.failure = None;
            }
        }
        if e.at >= self.last_at {
            self.last_at = e.at;
            self.last.clone_from(&e.detail);
        }
    }

    /// The furthest stage reached in this boot.
    pub fn stage(&self) -> Option<Stage> {
        self.reached.keys().next_back().copied()
    }

    /// The machine's state at `now`, given the stall time.
    pub fn state(&self, now: u64, stall_after_ms: u64) -> State {
        match self.stage() {
            None if self.failure.is_some() => State::Failed,
            None => State::Waiting,
            Some(Stage::Booted) => State::Booted,
            Some(_) if self.failure.is_some() => State::Failed,
            Some(_) if now.saturating_sub(self.last_at) > stall_after_ms => State::Stalled,
            Some(_) => State::Booting,
        }
    }

    /// How long each reached stage lasted, in ms: from reaching it to
    /// reaching the next (or to `now` for the current one, unless booted).
    pub fn durations(&self, now: u64) -> Vec<(Stage, u64)> {
        let times: Vec<(Stage, u64)> = self.reached.iter().map(|(s, t)| (*s, *t)).collect();
        times
            .iter()
            .enumerate()
            .map(|(i, (s, t))| {
                let end = match times.get(i + 1) {
                    Some((_, next)) => *next,
                    None if *s == Stage::Booted => *t,
                    None => now,
                };
                (*s, end.saturating_sub(*t))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: u64, stage: Stage) -> Event {
        Event {
            mac: Mac([2, 0, 0, 0, 0, 1]),
            at,
            stage,
            detail: format!("{} at {at}", stage.name()),
            failed: false,
            ip: None,
            arch: None,
        }
    }

    #[test]
    fn a_boot_goes_through_the_stages_and_each_has_a_duration() {
        let mut t = Timeline::default();
        assert_eq!(t.state(0, 1000), State::Waiting);
        for (at, s) in [
            (0, Stage::Dhcp),
            (100, Stage::Script),
            (150, Stage::Kernel),
            (900, Stage::Initrd),
        ] {
            t.apply(&ev(at, s));
        }
        assert_eq!(t.stage(), Some(Stage::Initrd));
        assert_eq!(t.state(1000, 5000), State::Booting);
        assert_eq!(t.state(7000, 5000), State::Stalled, "nothing for 6.1 s");
        t.apply(&ev(3000, Stage::CloudConfig));
        t.apply(&ev(4000, Stage::Booted));
        assert_eq!(t.state(99_999, 5000), State::Booted, "booted never stalls");
        assert_eq!(
            t.durations(99_999),
            vec![
                (Stage::Dhcp, 100),
                (Stage::Script, 50),
                (Stage::Kernel, 750),
                (Stage::Initrd, 2100),
                (Stage::CloudConfig, 1000),
                (Stage::Booted, 0)
            ]
        );
        assert_eq!(t.boots, 1);
    }

    fn firmware_dhcp(at: u64) -> Event {
        Event {
            arch: Some("bios".into()),
            ..ev(at, Stage::Dhcp)
        }
    }

    #[test]
    fn firmware_dhcp_after_the_loader_is_a_new_boot_but_not_before_nor_the_oss_own() {
        let mut t = Timeline::default();
        t.apply(&firmware_dhcp(0));
        t.apply(&firmware_dhcp(10));
        assert_eq!(
            (t.boots, t.reached[&Stage::Dhcp]),
            (1, 0),
            "iPXE's second DHCP"
        );
        t.apply(&ev(20, Stage::Kernel));
        t.apply(&ev(25, Stage::Dhcp));
        assert_eq!(
            (t.boots, t.stage()),
            (1, Some(Stage::Kernel)),
            "the OS asks again"
        );
        t.apply(&ev(30, Stage::Booted));
        t.apply(&firmware_dhcp(5000));
        assert_eq!(t.boots, 2, "rebooted");
        assert_eq!(t.stage(), Some(Stage::Dhcp));
    }

    #[test]
    fn a_failure_marks_the_machine_until_it_gets_further() {
        let mut t = Timeline::default();
        t.apply(&ev(0, Stage::Dhcp));
        let mut bad = ev(10, Stage::Loader);
        bad.failed = true;
        bad.detail = "tftp undionly.kpxe: not found".into();
        t.apply(&bad);
        assert_eq!(t.state(20, 1000), State::Failed);
        assert_eq!(t.failure.as_deref(), Some("tftp undionly.kpxe: not found"));
        assert_eq!(t.stage(), Some(Stage::Dhcp), "a failed step is not reached");
        t.apply(&ev(30, Stage::Loader));
        assert_eq!(t.state(40, 1000), State::Booting);
    }

    #[test]
    fn state_names_are_the_apis() {
        for st in [
            State::Waiting,
            State::Booting,
            State::Booted,
            State::Stalled,
            State::Failed,
        ] {
            assert_eq!(serde_json::to_value(st).unwrap(), st.name());
        }
    }

    #[test]
    fn events_out_of_order_keep_the_latest_as_last() {
        let mut t = Timeline::default();
        t.apply(&ev(100, Stage::Dhcp));
        t.apply(&ev(50, Stage::Dhcp));
        assert_eq!((t.last_at, t.last.as_str()), (100, "dhcp at 100"));
    }
}
