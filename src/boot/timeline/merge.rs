//! Two servers' views of one machine joined into one timeline.
//!
//! In a site of several servers a machine talks to more than one of them:
//! every server on its segment answers its DHCP, and it fetches its
//! loader, kernel and cloud-config from the one whose answer it took.
//! Each server folds what it saw ([`Timeline::apply`]) and saves that
//! view; the others join it into theirs here. The join takes, stage by
//! stage, the earliest start and the latest answer, and keeps which
//! server saw each stage, so every server shows the whole boot.
//!
//! Joining is order-free and joining a view twice changes nothing, so
//! servers that keep swapping their (joined) views agree, and a server
//! restarted with an older view of its own loses nothing newer.

use super::{Span, Stage, Timeline};

/// Two views whose boots started closer together than this (after the
/// earlier view's last event) are of one boot: every server hears the
/// firmware's DHCP within a few seconds of the others.
const SAME_BOOT_MS: u64 = 10_000;

impl Timeline {
    /// Names `server` as the one that saw this machine's last event, of
    /// `stage` (and the kernel's boot its initrd started). Named once per
    /// stage and server, not copied at every event.
    pub fn seen(&mut self, stage: Stage, server: &str) {
        if self.seen_by != server {
            self.seen_by = server.to_owned();
        }
        for s in [stage, Stage::OsBoot] {
            if let Some(span) = self.stages.get_mut(&s) {
                if span.by != server && (s == stage || span.by.is_empty()) {
                    span.by = server.to_owned();
                }
            }
        }
    }

    /// Joins `other`, another server's view of this machine, into this one.
    pub fn merge(&mut self, other: &Timeline) {
        if (other.boots == 0 && other.power.is_none()) || other == self {
            return;
        }
        if self.boots == 0 || other.boots == 0 {
            // One view has seen no boot (at most a power action): the
            // other's boot, and the power actions of both.
            let mine = self.clone();
            if self.boots == 0 {
                *self = other.clone();
            }
            self.join_power(&mine, other);
            // The last thing either heard (a power action, perhaps).
            if let Some(t) = [other, &mine].into_iter().max_by_key(|t| t.last_at) {
                if t.last_at > self.last_at {
                    self.last_at = t.last_at;
                    self.last.clone_from(&t.last);
                }
            }
            return;
        }
        let boots = self.boots.max(other.boots);
        // The view of the later boot, or else the one that heard last.
        let other_later = (other.started, other.last_at, &other.last, &other.seen_by)
            > (self.started, self.last_at, &self.last, &self.seen_by);
        let (first, second) = if other_later {
            (&*self, other)
        } else {
            (other, &*self)
        };
        // A boot that started after a power action the other view holds
        // pending is a later one, however soon it followed.
        let after_action = first
            .pending
            .as_ref()
            .is_some_and(|p| second.boots > 0 && second.started >= p.at);
        if after_action || second.started > first.last_at.saturating_add(SAME_BOOT_MS) {
            // A later boot: the earlier view has nothing of it.
            let mut t = second.clone();
            t.boots = boots;
            t.join_power(self, other);
            *self = t;
            return;
        }
        let heard_last = if (other.last_at, &other.last, &other.seen_by)
            > (self.last_at, &self.last, &self.seen_by)
        {
            other
        } else {
            &*self
        };
        let mut t = heard_last.clone();
        let (a, b) = (&*self, other);
        t.boots = boots;
        t.started = a.started.min(b.started);
        t.os_ran = a.os_ran || b.os_ran;
        t.ip = heard_last.ip.or(a.ip).or(b.ip);
        if t.arch.is_none() {
            t.arch = a.arch.clone().or_else(|| b.arch.clone());
        }
        // Stages of the latest try only: an earlier try's are over.
        t.tries = a.tries.max(b.tries);
        t.stages = match a.tries.cmp(&b.tries) {
            std::cmp::Ordering::Greater => a.stages.clone(),
            std::cmp::Ordering::Less => b.stages.clone(),
            std::cmp::Ordering::Equal => {
                let mut stages = a.stages.clone();
                for (stage, span) in &b.stages {
                    stages
                        .entry(*stage)
                        .and_modify(|mine| *mine = join(mine, span))
                        .or_insert_with(|| span.clone());
                }
                stages
            }
        };
        t.try_failed = match a.tries.cmp(&b.tries) {
            std::cmp::Ordering::Greater => a.try_failed,
            std::cmp::Ordering::Less => b.try_failed,
            std::cmp::Ordering::Equal => a.try_failed || b.try_failed,
        };
        // The latest failure, unless the machine got past it since.
        t.failure = match (&a.failure, &b.failure) {
            (Some(x), Some(y)) => Some(if (y.at, &y.asked) > (x.at, &x.asked) {
                y.clone()
            } else {
                x.clone()
            }),
            (x, y) => x.clone().or_else(|| y.clone()),
        };
        if let Some(f) = &t.failure {
            let past = t.stage().is_some_and(|s| s > f.stage)
                || t.stages
                    .get(&f.stage)
                    .and_then(|s| s.end)
                    .is_some_and(|end| end > f.at);
            if past {
                t.failure = None;
            }
        }
        t.join_power(self, other);
        *self = t;
    }
}

/// One stage as two servers saw it: from the first request to the last
/// answer, named after the server that answered (the first to, when both
/// did).
fn join(a: &Span, b: &Span) -> Span {
    let by = match (a.end, b.end) {
        (Some(_), None) => &a.by,
        (None, Some(_)) => &b.by,
        _ if (b.start, &b.by) < (a.start, &a.by) => &b.by,
        _ => &a.by,
    };
    Span {
        start: a.start.min(b.start),
        end: a.end.max(b.end),
        by: by.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::ev;
    use super::super::{Event, State, Step};
    use super::*;

    fn firmware(at: u64) -> Event {
        super::super::tests::firmware(at, Step::Served)
    }

    /// A view as server `by` folds it: every stage it saw named after it.
    fn view(by: &str, events: &[Event]) -> Timeline {
        let mut t = Timeline::default();
        for e in events {
            t.apply(e);
            t.seen(e.stage, by);
        }
        t
    }

    fn served(at: u64, stage: Stage) -> Event {
        ev(at, stage, Step::Served)
    }

    /// Server A answered the DHCP the machine took and served its boot;
    /// server B answered DHCP too, later served its cloud-config.
    fn site() -> (Timeline, Timeline) {
        let a = view(
            "a",
            &[
                firmware(10),
                served(2_000, Stage::Script),
                served(3_000, Stage::Kernel),
                served(4_000, Stage::Initrd),
            ],
        );
        let b = view(
            "b",
            &[
                firmware(12),
                served(30_000, Stage::CloudConfig),
                served(31_000, Stage::Booted),
            ],
        );
        (a, b)
    }

    #[test]
    fn two_servers_views_of_one_boot_make_one_timeline_naming_who_saw_each_stage() {
        let (a, b) = site();
        let mut t = a.clone();
        t.merge(&b);
        let by: Vec<(Stage, &str)> = t.stages.iter().map(|(s, x)| (*s, x.by.as_str())).collect();
        assert_eq!(
            by,
            vec![
                (Stage::Dhcp, "a"),
                (Stage::Script, "a"),
                (Stage::Kernel, "a"),
                (Stage::Initrd, "a"),
                (Stage::OsBoot, "a"),
                (Stage::CloudConfig, "b"),
                (Stage::Booted, "b"),
            ]
        );
        assert_eq!(t.started, 10);
        assert_eq!((t.boots, t.tries), (1, 1));
        assert_eq!(t.state(40_000, 60_000), State::Booted);
        assert_eq!((t.last_at, t.seen_by.as_str()), (31_000, "b"));
    }

    #[test]
    fn the_join_does_not_depend_on_order_and_joining_again_changes_nothing() {
        let (a, b) = site();
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        let mut again = ab.clone();
        again.merge(&a);
        again.merge(&b);
        again.merge(&ab);
        assert_eq!(again, ab);
    }

    #[test]
    fn a_later_boot_replaces_an_earlier_one_and_boots_are_not_counted_twice() {
        let (a, _) = site();
        let mut b = a.clone();
        b.merge(&view("b", &[]));
        // The OS ran on A's view; B then hears the machine boot again.
        let mut b2 = a.clone();
        b2.apply(&ev(20_000, Stage::CloudConfig, Step::Served));
        b2.apply(&firmware(90_000));
        b2.seen_by = "b".into();
        assert_eq!(b2.boots, 2);
        let mut t = a.clone();
        t.merge(&b2);
        assert_eq!((t.boots, t.started), (2, 90_000));
        assert_eq!(t.stages.len(), 1, "only the new boot's DHCP");
        assert_eq!(b, a, "an empty view adds nothing");
    }

    #[test]
    fn a_failure_one_server_saw_stays_until_another_saw_the_machine_get_past_it() {
        let mut a = view("a", &[firmware(10), served(2_000, Stage::Script)]);
        a.apply(&ev(
            2_500,
            Stage::Kernel,
            Step::Failed {
                answer: "not found (404)".into(),
                fix: None,
            },
        ));
        let b = view("b", &[firmware(11)]);
        let mut t = b.clone();
        t.merge(&a);
        assert_eq!(t.state(3_000, 60_000), State::Failed);
        // The same try fetched the kernel from B afterwards.
        let mut b = t.clone();
        b.apply(&served(5_000, Stage::Kernel));
        a.merge(&b);
        assert_eq!(a.failure, None);
        assert_eq!(a.stages[&Stage::Kernel].end, Some(5_000));
    }
}
