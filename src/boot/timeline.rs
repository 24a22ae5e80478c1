//! One machine's boot, folded from the events the servers report. Pure:
//! events and `now` in, the stage reached, how long each stage took, the
//! last failure and whether the machine stalled, out.
//!
//! A machine passes through the stages in order: an address (DHCP), its
//! boot loader or iPXE script, the kernel, the initrd, the kernel's own
//! boot, its cloud-config, then the phone-home call that says it booted.
//! Stages may be skipped (an iPXE ROM needs no loader). A stage starts
//! when its first request arrives and ends when its last one is served.
//!
//! One *boot* runs from the firmware's first DHCP through every loader it
//! chainloads (PXE ROM → iPXE, UEFI HTTP boot → iPXE: each asks DHCP
//! again) to phone-home. Firmware starting over before the OS ran (iPXE's
//! retry after a 404, a kernel that panicked and rebooted) is another
//! *try* of the same boot: its stages start again, the boot and its last
//! failure stay. Only firmware DHCP after the OS ran is a new boot. The
//! booted OS asking for its address is news, and ends the kernel's boot.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::failure::Failure;
use crate::spec::Mac;
pub use power::{PowerAction, PowerVerb};

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
    /// The kernel and initrd run: from the initrd served to the booted
    /// OS's first request (its DHCP or its cloud-config).
    OsBoot,
    /// Fetched its cloud-config: the OS is up and configuring itself.
    CloudConfig,
    /// Called home: booted.
    Booted,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 8] = [
        Stage::Dhcp,
        Stage::Loader,
        Stage::Script,
        Stage::Kernel,
        Stage::Initrd,
        Stage::OsBoot,
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
            Stage::OsBoot => "os_boot",
            Stage::CloudConfig => "cloud_config",
            Stage::Booted => "booted",
        }
    }
}

/// What an event says about its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// It arrived: its stage starts (or goes on).
    Asked,
    /// It was answered.
    Served,
    /// It was refused or could not be served.
    Failed {
        /// What the machine was told, for people: `not found (404)`.
        answer: String,
        /// What a sysadmin can do about it.
        fix: Option<String>,
    },
    /// Neither a step forward nor a failure (a DHCP NAK, an inform).
    News,
}

/// Something a server saw a machine do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub mac: Mac,
    /// Unix milliseconds.
    pub at: u64,
    pub stage: Stage,
    pub step: Step,
    /// What was asked: a file, a path, a DHCP message.
    pub asked: String,
    /// What happened, for people: `ack 10.0.0.5 bios undionly.kpxe`,
    /// `tftp pxelinux.0 26,579 bytes`, `GET /assets/vmlinuz 200`.
    pub detail: String,
    /// The address, when the event knows it (DHCP).
    pub ip: Option<Ipv4Addr>,
    /// The firmware, when the event knows it (DHCP from boot firmware).
    pub arch: Option<String>,
}

/// When a stage of the current try started and, once served, ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: u64,
    pub end: Option<u64>,
    /// The server that saw it (a site of several servers; empty for one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
}

/// One machine's boot so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeline {
    pub ip: Option<Ipv4Addr>,
    pub arch: Option<String>,
    /// The stages of the current try.
    pub stages: BTreeMap<Stage, Span>,
    /// When this boot started (unix ms): its first DHCP.
    pub started: u64,
    /// Tries of this boot (the firmware started over before the OS ran).
    pub tries: u32,
    /// The current try failed somewhere.
    pub try_failed: bool,
    /// The OS of this boot ran (asked for anything): firmware DHCP after
    /// this is a new boot.
    pub os_ran: bool,
    /// The last thing that happened: when, and what.
    pub last_at: u64,
    pub last: String,
    /// The last failure, kept across tries and boots until the machine
    /// gets past it.
    pub failure: Option<Failure>,
    /// Boots seen.
    pub boots: u32,
    /// The server that saw the last event (a site of several servers).
    pub seen_by: String,
    /// The last power action taken through the machine's BMC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerAction>,
    /// A power action no boot has followed yet: the next firmware DHCP
    /// starts a new boot, attributed to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<PowerAction>,
    /// The power action that started this boot, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<PowerAction>,
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
    /// A step failed and the machine has not got past it.
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
        if e.stage == Stage::Dhcp && matches!(e.step, Step::Asked | Step::Served) {
            self.dhcp(e);
        }
        if self.boots == 0 {
            self.start_boot(e.at);
        }
        if e.ip.is_some() {
            self.ip = e.ip;
        }
        if e.arch.is_some() {
            self.arch.clone_from(&e.arch);
        }
        // The booted OS's DHCP ends the kernel's boot (`os_asked`); it is
        // not more of the firmware's `dhcp` stage, which it would stretch
        // over the whole boot.
        let os_dhcp =
            e.stage == Stage::Dhcp && e.arch.is_none() && self.stages.contains_key(&Stage::OsBoot);
        if os_dhcp && matches!(e.step, Step::Asked | Step::Served) {
            self.os_asked(e);
            self.got_past(e, false);
        } else {
            self.fold_step(e);
        }
        if e.at >= self.last_at {
            self.last_at = e.at;
            self.last.clone_from(&e.detail);
        }
    }

    /// What `e`'s step does to its stage and to the failure.
    fn fold_step(&mut self, e: &Event) {
        match &e.step {
            Step::Asked => {
                self.os_asked(e);
                self.stages.entry(e.stage).or_insert(Span {
                    start: e.at,
                    ..Span::default()
                });
                self.got_past(e, false);
            }
            Step::Served => {
                self.os_asked(e);
                let span = self.stages.entry(e.stage).or_insert(Span {
                    start: e.at,
                    ..Span::default()
                });
                span.end = Some(span.end.map_or(e.at, |t| t.max(e.at)));
                if e.stage == Stage::Initrd {
                    // The kernel boots from here until the OS asks.
                    self.stages.insert(
                        Stage::OsBoot,
                        Span {
                            start: e.at,
                            ..Span::default()
                        },
                    );
                }
                self.got_past(e, true);
            }
            Step::Failed { answer, fix } => {
                if self.stages.get(&e.stage).is_some_and(|s| s.end.is_none()) {
                    self.stages.remove(&e.stage);
                }
                self.try_failed = true;
                match &mut self.failure {
                    Some(f) if f.stage == e.stage && f.asked == e.asked => {
                        f.times += 1;
                        f.at = e.at;
                        f.answer.clone_from(answer);
                    }
                    _ => {
                        self.failure = Some(Failure {
                            stage: e.stage,
                            asked: e.asked.clone(),
                            answer: answer.clone(),
                            fix: fix.clone(),
                            first_at: e.at,
                            at: e.at,
                            times: 1,
                        })
                    }
                }
            }
            Step::News => {}
        }
    }

    /// A DHCP request or answer: a new boot, a new try, or neither.
    fn dhcp(&mut self, e: &Event) {
        let firmware = e.arch.is_some();
        if !firmware {
            return;
        }
        if self.os_ran || self.boots == 0 || self.pending.is_some() {
            let pending = self.pending.take();
            self.start_boot(e.at);
            self.cause = pending.filter(PowerAction::starts);
        } else if self.try_failed || self.stage().is_some_and(|s| s > Stage::Loader) {
            // Started over before the OS ran: another try of this boot.
            self.tries += 1;
            self.try_failed = false;
            self.stages.clear();
        }
        // Else the same try: a chainloaded loader's own DHCP.
    }

    fn start_boot(&mut self, at: u64) {
        self.boots += 1;
        self.tries = 1;
        self.try_failed = false;
        self.os_ran = false;
        self.started = at;
        self.stages.clear();
        self.cause = None;
    }

    /// A request from the booted OS ends the kernel's boot.
    fn os_asked(&mut self, e: &Event) {
        let from_os = match e.stage {
            Stage::Dhcp => e.arch.is_none(),
            Stage::OsBoot | Stage::CloudConfig | Stage::Booted => true,
            _ => false,
        };
        if !from_os {
            return;
        }
        self.os_ran = true;
        if let Some(span) = self.stages.get_mut(&Stage::OsBoot) {
            span.end.get_or_insert(e.at.max(span.start));
        }
    }

    /// Clears the failure once the machine is beyond it: a later stage
    /// asked for, or what failed served.
    fn got_past(&mut self, e: &Event, served: bool) {
        if let Some(f) = &self.failure {
            if e.stage > f.stage || (served && e.stage == f.stage && e.asked == f.asked) {
                self.failure = None;
            }
        }
    }

    /// The furthest stage of the current try.
    pub fn stage(&self) -> Option<Stage> {
        self.stages.keys().next_back().copied()
    }

    /// The machine's state at `now`, given the stall time.
    pub fn state(&self, now: u64, stall_after_ms: u64) -> State {
        match self.stage() {
            Some(Stage::Booted) => State::Booted,
            // Power-cycled, waiting for its firmware.
            None if self.pending.as_ref().is_some_and(PowerAction::starts) => {
                if now.saturating_sub(self.last_at) > stall_after_ms {
                    State::Stalled
                } else {
                    State::Waiting
                }
            }
            _ if self.failure.is_some() => State::Failed,
            None => State::Waiting,
            Some(_) if now.saturating_sub(self.last_at) > stall_after_ms => State::Stalled,
            Some(_) => State::Booting,
        }
    }

    /// How long each stage of the current try lasted, in ms: from its
    /// first request to its last answer, or to `now` while it goes on.
    pub fn durations(&self, now: u64) -> Vec<(Stage, Span, u64)> {
        self.stages
            .iter()
            .map(|(s, span)| {
                let end = span.end.unwrap_or(now);
                (*s, span.clone(), end.saturating_sub(span.start))
            })
            .collect()
    }
}

mod merge;
mod power;
#[cfg(test)]
mod tests;
