//! What `serve` adds to `/metrics` from the DHCP and TFTP servers'
//! counters, in Prometheus text.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::http::Gauges;

pub(super) struct DhcpGauges(pub(super) Arc<crate::dhcp::server::Stats>);

impl Gauges for DhcpGauges {
    fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str("# HELP bootfleet_dhcp_requests_total DHCP requests by message type and outcome.\n# TYPE bootfleet_dhcp_requests_total counter\n");
        for ((kind, outcome), n) in self.0.outcomes() {
            let _ = writeln!(
                out,
                "bootfleet_dhcp_requests_total{{type=\"{kind}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# TYPE bootfleet_dhcp_malformed_total counter\nbootfleet_dhcp_malformed_total {}\n# TYPE bootfleet_dhcp_lease_commits_total counter\nbootfleet_dhcp_lease_commits_total {}",
            self.0.malformed.load(Ordering::Relaxed),
            self.0.commits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP bootfleet_dhcp_replies_withheld_total Replies not sent because their lease could not be stored.\n# TYPE bootfleet_dhcp_replies_withheld_total counter\nbootfleet_dhcp_replies_withheld_total {}\n# HELP bootfleet_dhcp_lost_races_total Claims another server of the site won first.\n# TYPE bootfleet_dhcp_lost_races_total counter\nbootfleet_dhcp_lost_races_total {}",
            self.0.store_errors.load(Ordering::Relaxed),
            self.0.lost_races.load(Ordering::Relaxed)
        );
    }
}

/// Whether the state store answers (an etcd can be away).
pub(super) struct StoreGauges(pub(super) Arc<dyn crate::store::Leases>);

impl Gauges for StoreGauges {
    fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP bootfleet_store_reachable 1 when the last call reached the state store.\n# TYPE bootfleet_store_reachable gauge\nbootfleet_store_reachable {}",
            u8::from(self.0.reachable())
        );
    }
}

pub(super) struct TftpGauges(pub(super) Arc<crate::tftp::server::Stats>);

impl Gauges for TftpGauges {
    fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = &self.0;
        out.push_str("# HELP bootfleet_tftp_transfers_total TFTP transfers by result.\n# TYPE bootfleet_tftp_transfers_total counter\n");
        for (result, n) in [
            ("completed", s.completed.load(Ordering::Relaxed)),
            ("client_error", s.client_errors.load(Ordering::Relaxed)),
            ("timed_out", s.timed_out.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(
                out,
                "bootfleet_tftp_transfers_total{{result=\"{result}\"}} {n}"
            );
        }
        out.push_str("# TYPE bootfleet_tftp_refused_total counter\n");
        let mut refused: Vec<_> = s.refused().into_iter().collect();
        refused.sort();
        for (reason, n) in refused {
            let _ = writeln!(
                out,
                "bootfleet_tftp_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# TYPE bootfleet_tftp_bytes_sent_total counter\nbootfleet_tftp_bytes_sent_total {}",
            s.bytes_sent.load(Ordering::Relaxed)
        );
        out.push_str("# HELP bootfleet_tftp_answers_total Clients' answers to a window, by whether the transfer polled for it or slept.\n# TYPE bootfleet_tftp_answers_total counter\n");
        let (all, polled) = (
            s.answers.load(Ordering::Relaxed),
            s.answers_polled.load(Ordering::Relaxed),
        );
        for (how, n) in [("polled", polled), ("slept", all.saturating_sub(polled))] {
            let _ = writeln!(out, "bootfleet_tftp_answers_total{{wait=\"{how}\"}} {n}");
        }
    }
}

/// The whole-file copies TFTP and HTTP share.
pub(super) struct FileGauges(pub(super) Arc<crate::tftp::files::Files>);

impl Gauges for FileGauges {
    fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP bootfleet_file_reads_total Files read from disk into memory (for TFTP and HTTP alike).\n# TYPE bootfleet_file_reads_total counter\nbootfleet_file_reads_total {}\n# HELP bootfleet_file_bytes_in_memory File data held in memory now.\n# TYPE bootfleet_file_bytes_in_memory gauge\nbootfleet_file_bytes_in_memory {}",
            self.0.disk_reads(),
            self.0.bytes_in_use()
        );
    }
}
