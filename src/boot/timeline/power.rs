//! Power actions in a machine's timeline: `bootfleet power` and
//! `bootfleet reprovision` report each action they took through a BMC
//! (`POST /api/v1/nodes/<name>/power`), and the boot that follows is
//! attributed to it.
//!
//! An action ends the boot the machine was in: its stages are cleared
//! (the machine waits for its firmware), and the next firmware DHCP starts
//! a new boot, even when the OS of the last one never ran. A report that
//! arrives after that DHCP (the firmware was quicker than the command)
//! still attributes the boot that started after the action.

use serde::{Deserialize, Serialize};

use super::Timeline;

/// What was done to the machine's power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerVerb {
    On,
    Off,
    Cycle,
}

/// One power action, as the command that took it reported it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PowerAction {
    /// When the command asked the BMC (unix ms).
    pub at: u64,
    pub action: PowerVerb,
    /// The command: `power` or `reprovision`.
    pub by: String,
    /// The boot override set just before (`pxe once`, `pxe always`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
}

impl PowerAction {
    /// For people: `power cycled by reprovision, network boot once`.
    pub fn describe(&self) -> String {
        let what = match self.action {
            PowerVerb::On => "powered on",
            PowerVerb::Off => "powered off",
            PowerVerb::Cycle => "power cycled",
        };
        let boot = match self.boot.as_deref() {
            Some("pxe once") => ", network boot once",
            Some("pxe always") => ", network boot (kept for every boot)",
            _ => "",
        };
        format!("{what} by {}{boot}", self.by)
    }

    /// Whether the machine starts from its firmware after it.
    pub fn starts(&self) -> bool {
        self.action != PowerVerb::Off
    }
}

impl Timeline {
    /// Folds in a power action; a report older than the last one known
    /// is ignored.
    pub fn powered(&mut self, a: &PowerAction) {
        if self.power.as_ref().is_some_and(|p| p >= a) {
            return;
        }
        self.power = Some(a.clone());
        if a.at >= self.last_at {
            self.last_at = a.at;
            self.last = a.describe();
        }
        if self.boots > 0 && self.started >= a.at {
            // The firmware asked before the report came: this boot is
            // the one the action started.
            if a.starts() {
                self.cause = Some(a.clone());
            }
            return;
        }
        self.pending = Some(a.clone());
        self.stages.clear();
        self.try_failed = false;
    }

    /// Power fields of two views of one machine joined (see
    /// [`Timeline::merge`]): the latest action; the cause of the boot
    /// kept; an action pending until a boot started after it.
    pub(super) fn join_power(&mut self, a: &Timeline, b: &Timeline) {
        self.power = a.power.clone().max(b.power.clone());
        self.cause = if a.started == b.started {
            a.cause.clone().max(b.cause.clone())
        } else if self.started == a.started {
            a.cause.clone()
        } else {
            b.cause.clone()
        };
        self.pending = a.pending.clone().max(b.pending.clone());
        if let Some(p) = &self.pending {
            if self.boots > 0 && self.started >= p.at {
                if p.starts() && self.cause.is_none() {
                    self.cause = Some(p.clone());
                }
                self.pending = None;
            }
        }
        if self.pending.is_some() {
            // The boot either view saw before the action is over.
            self.stages.clear();
            self.try_failed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ev, firmware};
    use super::super::{Stage, State, Step};
    use super::*;

    fn cycle(at: u64) -> PowerAction {
        PowerAction {
            at,
            action: PowerVerb::Cycle,
            by: "reprovision".into(),
            boot: Some("pxe once".into()),
        }
    }

    fn booted(t: &mut Timeline, from: u64) {
        t.apply(&firmware(from, Step::Served));
        for (i, s) in [
            Stage::Kernel,
            Stage::Initrd,
            Stage::CloudConfig,
            Stage::Booted,
        ]
        .into_iter()
        .enumerate()
        {
            t.apply(&ev(from + 100 * (i as u64 + 1), s, Step::Served));
        }
    }

    #[test]
    fn a_power_cycle_ends_the_boot_and_the_next_one_is_attributed_to_it() {
        let mut t = Timeline::default();
        booted(&mut t, 1_000);
        assert_eq!(t.state(2_000, 60_000), State::Booted);
        t.powered(&cycle(5_000));
        assert_eq!(t.state(5_001, 60_000), State::Waiting, "{t:?}");
        assert_eq!(t.last, "power cycled by reprovision, network boot once");
        assert_eq!(t.boots, 1);
        booted(&mut t, 9_000);
        assert_eq!((t.boots, t.started), (2, 9_000));
        assert_eq!(t.cause, Some(cycle(5_000)));
        assert_eq!(t.pending, None);
        assert_eq!(t.state(10_000, 60_000), State::Booted);
    }

    #[test]
    fn a_cycle_during_a_boot_that_never_reached_its_os_starts_a_new_boot_not_a_try() {
        let mut t = Timeline::default();
        t.apply(&firmware(1_000, Step::Served));
        t.apply(&ev(1_100, Stage::Kernel, Step::Served));
        t.powered(&cycle(2_000));
        t.apply(&firmware(3_000, Step::Served));
        assert_eq!((t.boots, t.tries), (2, 1), "{t:?}");
        assert_eq!(t.cause.as_ref().map(|c| c.at), Some(2_000));
    }

    #[test]
    fn a_report_after_the_firmware_asked_still_attributes_that_boot() {
        let mut t = Timeline::default();
        booted(&mut t, 1_000);
        t.apply(&firmware(6_000, Step::Served));
        t.powered(&cycle(5_000));
        assert_eq!(t.boots, 2);
        assert_eq!(t.cause, Some(cycle(5_000)));
        assert_eq!(t.pending, None);
        assert!(
            t.stages.contains_key(&Stage::Dhcp),
            "the boot's stages stay"
        );
        // The same report again, or an older one, changes nothing.
        let before = t.clone();
        t.powered(&cycle(5_000));
        t.powered(&cycle(4_000));
        assert_eq!(t, before);
    }

    #[test]
    fn off_then_a_boot_by_hand_is_a_new_boot_that_no_action_started() {
        let mut t = Timeline::default();
        booted(&mut t, 1_000);
        t.powered(&PowerAction {
            at: 5_000,
            action: PowerVerb::Off,
            by: "power".into(),
            boot: None,
        });
        assert_eq!(t.last, "powered off by power");
        t.apply(&firmware(9_000, Step::Served));
        assert_eq!((t.boots, t.cause.clone()), (2, None));
    }

    #[test]
    fn two_servers_agree_on_the_action_whichever_heard_it() {
        // Server a was told of the cycle; server b saw the boot after it.
        let mut a = Timeline::default();
        booted(&mut a, 1_000);
        let mut b = a.clone();
        a.powered(&cycle(5_000));
        booted(&mut b, 9_000);
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        for t in [&ab, &ba] {
            assert_eq!(t.boots, 2, "{t:?}");
            assert_eq!(t.cause, Some(cycle(5_000)), "{t:?}");
            assert_eq!(t.pending, None, "{t:?}");
            assert_eq!(t.power, Some(cycle(5_000)));
        }
        // A view that only heard of the action joins a fresh server's.
        let mut fresh = Timeline::default();
        fresh.powered(&cycle(5_000));
        let mut joined = Timeline::default();
        joined.merge(&fresh);
        assert_eq!(joined.pending, Some(cycle(5_000)));
    }
}
