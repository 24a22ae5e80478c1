//! What `serve` puts on `/metrics`: every counter the DHCP and TFTP
//! servers, the file cache and the store keep (read at scrape time), the
//! machines by boot state, and the histograms observed as work is done.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::boot::Registry;
use crate::clock::now_ms;
use crate::metrics::{Histograms, Metrics, Out, bytes, histograms, signed, slow};

fn n(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Histograms the TFTP observer fills.
#[derive(Clone, Debug)]
pub struct Timings {
    /// TFTP transfer seconds and bytes by kind of file (loader, kernel,
    /// initrd, ...: the boot stage it serves).
    pub tftp_seconds: Histograms,
    pub tftp_bytes: Histograms,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            tftp_seconds: histograms(slow),
            tftp_bytes: histograms(bytes),
        }
    }
}

impl Timings {
    /// Registers them on the page.
    pub fn register(&self, m: &mut Metrics) {
        m.register(
            "bootfleet_tftp_transfer_duration_seconds",
            "Completed TFTP transfers from request to last acknowledgement, by kind of file",
            self.tftp_seconds.clone(),
        );
        m.register(
            "bootfleet_tftp_transfer_size_bytes",
            "Completed TFTP transfers' sizes, by kind of file",
            self.tftp_bytes.clone(),
        );
    }
}

/// The DHCP server's counters, histograms and pool use.
pub(super) struct DhcpGauges(pub(super) Arc<crate::dhcp::server::Stats>);

impl fmt::Debug for DhcpGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DhcpGauges")
    }
}

impl DhcpGauges {
    /// Registers the histograms the server observes, and the collector.
    pub(super) fn register(self, m: &mut Metrics) {
        m.register(
            "bootfleet_dhcp_reply_duration_seconds",
            "DHCP requests from arrival (their batch read) to reply sent, store commit included",
            self.0.reply_seconds.clone(),
        );
        m.register(
            "bootfleet_dhcp_lease_commit_duration_seconds",
            "Lease store commits (one per batch of requests)",
            self.0.commit_seconds.clone(),
        );
        m.collect(self);
    }
}

impl Collector for DhcpGauges {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &self.0;
        let mut out = Out(encoder);
        out.counter(
            "bootfleet_dhcp_received",
            "DHCP datagrams received",
            n(&s.received),
        )?;
        out.counter(
            "bootfleet_dhcp_malformed",
            "DHCP datagrams dropped as malformed",
            n(&s.malformed),
        )?;
        let outcomes = s.outcomes();
        out.counters(
            "bootfleet_dhcp_requests",
            "DHCP requests by message type and outcome",
            outcomes
                .iter()
                .map(|((kind, outcome), v)| ([("type", *kind), ("outcome", *outcome)], *v)),
        )?;
        out.counter(
            "bootfleet_dhcp_lease_commits",
            "Lease store commits that succeeded",
            n(&s.commits),
        )?;
        out.counter(
            "bootfleet_dhcp_lease_commit_failures",
            "Lease store commits that failed (their replies withheld)",
            n(&s.commit_failures),
        )?;
        out.counter(
            "bootfleet_dhcp_replies_withheld",
            "Replies not sent because their lease could not be stored",
            n(&s.store_errors),
        )?;
        out.counter(
            "bootfleet_dhcp_leases_forgotten",
            "Leases forgotten once they had been expired for longer than [state] keep_expired",
            n(&s.forgotten),
        )?;
        out.counter(
            "bootfleet_dhcp_lost_races",
            "Claims another server of the site won first (the request was decided again)",
            n(&s.lost_races),
        )?;
        // One row per segment's pool (a segment is a spec entry: bounded).
        let pools = s.pools.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let rows = |v: fn(&crate::dhcp::server::PoolUse) -> u64| {
            pools
                .iter()
                .map(move |p| {
                    (
                        [("pool", p.range.clone()), ("segment", p.segment.clone())],
                        signed(v(p)),
                    )
                })
                .collect::<Vec<_>>()
        };
        out.gauges(
            "bootfleet_dhcp_pool_addresses",
            "Addresses the pool can hand out, by segment",
            rows(|p| p.size),
        )?;
        out.gauges(
            "bootfleet_dhcp_pool_leased_addresses",
            "Pool addresses leased now (unexpired), by segment",
            rows(|p| p.leased),
        )?;
        out.gauges(
            "bootfleet_dhcp_pool_quarantined_addresses",
            "Pool addresses held back after a DECLINE, by segment",
            rows(|p| p.quarantined),
        )?;
        out.gauges(
            "bootfleet_dhcp_pool_free_addresses",
            "Pool addresses free to lease now, by segment: when this nears 0, new machines there get no address",
            rows(|p| p.size.saturating_sub(p.leased + p.quarantined)),
        )
    }
}

/// Whether the state store answers (an etcd can be away).
pub(super) struct StoreGauges(pub(super) Arc<dyn crate::store::Leases>);

impl fmt::Debug for StoreGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreGauges")
    }
}

impl Collector for StoreGauges {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut out = Out(encoder);
        out.gauge(
            "bootfleet_store_reachable",
            "1 when the last call reached the state store",
            i64::from(self.0.reachable()),
        )?;
        out.counter(
            "bootfleet_store_lease_rereads",
            "Times every lease was read again because the shared store's history was compacted past what this server had followed",
            self.0.rereads(),
        )
    }
}

/// The TFTP server's counters.
#[derive(Debug)]
pub(super) struct TftpGauges(pub(super) Arc<crate::tftp::server::Stats>);

impl Collector for TftpGauges {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &self.0;
        let mut out = Out(encoder);
        out.counter(
            "bootfleet_tftp_requests",
            "TFTP requests received",
            n(&s.requests),
        )?;
        out.counter(
            "bootfleet_tftp_malformed",
            "TFTP datagrams dropped as malformed (requests and in transfers)",
            n(&s.malformed),
        )?;
        out.counter(
            "bootfleet_tftp_unknown_tid",
            "Datagrams from an unknown transfer ID, answered with ERROR 5",
            n(&s.unknown_tid),
        )?;
        out.counters(
            "bootfleet_tftp_transfers",
            "TFTP transfers ended, by result",
            [
                ([("result", "completed")], n(&s.completed)),
                ([("result", "client_error")], n(&s.client_errors)),
                ([("result", "timed_out")], n(&s.timed_out)),
            ],
        )?;
        let mut refused: Vec<_> = s.refused().into_iter().collect();
        refused.sort();
        out.counters(
            "bootfleet_tftp_refused",
            "TFTP requests refused, by reason",
            refused.into_iter().map(|(r, v)| ([("reason", r)], v)),
        )?;
        out.counter(
            "bootfleet_tftp_sent_bytes",
            "TFTP data sent, retransmissions included",
            n(&s.bytes_sent),
        )?;
        let (all, polled) = (n(&s.answers), n(&s.answers_polled));
        out.counters(
            "bootfleet_tftp_answers",
            "Clients' answers to a window, by whether the transfer polled for it or slept",
            [
                ([("wait", "polled")], polled),
                ([("wait", "slept")], all.saturating_sub(polled)),
            ],
        )?;
        out.gauge(
            "bootfleet_tftp_active_transfers",
            "TFTP transfers going on now",
            signed(n(&s.active)),
        )
    }
}

/// The whole-file copies TFTP and HTTP share.
pub(super) struct FileGauges(pub(super) Arc<crate::files::Files>);

impl fmt::Debug for FileGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileGauges")
    }
}

impl Collector for FileGauges {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut out = Out(encoder);
        out.counter(
            "bootfleet_file_reads",
            "Files read from disk into memory (for TFTP and HTTP alike)",
            self.0.disk_reads(),
        )?;
        out.gauge(
            "bootfleet_file_memory_bytes",
            "File data held in memory now",
            signed(self.0.bytes_in_use()),
        )
    }
}

/// Machines by boot state, from the timelines.
pub(super) struct MachineGauges(pub(super) Arc<Registry>);

impl fmt::Debug for MachineGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MachineGauges")
    }
}

impl Collector for MachineGauges {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        use crate::boot::State;
        let rows = self.0.snapshot(now_ms());
        let count = |s: State| rows.iter().filter(|r| r.state == s).count() as i64;
        let states = [
            State::Waiting,
            State::Booting,
            State::Booted,
            State::Stalled,
            State::Failed,
        ];
        Out(encoder).gauges(
            "bootfleet_machines",
            "Machines by boot state (stalled and failed ones need a look)",
            states.map(|s| ([("state", s.name())], count(s))),
        )
    }
}
