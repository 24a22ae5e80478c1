//! `/metrics` in Prometheus text format: HTTP requests by route and
//! status, machines by boot state, and the other servers' counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::boot::now_ms;

/// HTTP requests by route family and status.
#[derive(Debug, Default)]
pub struct HttpCounters {
    counts: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

/// The route family of a path: a fixed label, so that paths with node
/// names or files do not make a label per value.
fn family(path: &str) -> &'static str {
    const FAMILIES: [&str; 8] = [
        "/assets/",
        "/cloud-config/",
        "/phone-home/",
        "/ipxe/",
        "/api/",
        "/boot.ipxe",
        "/metrics",
        "/healthz",
    ];
    if path == "/" {
        return "/";
    }
    FAMILIES
        .iter()
        .find(|f| path.starts_with(**f))
        .copied()
        .unwrap_or("other")
}

impl HttpCounters {
    pub fn count(&self, path: &str, status: u16) {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((family(path), status)).or_default() += 1;
    }
}

/// The Prometheus page.
pub async fn render(State(s): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    out.push_str("# HELP bootfleet_http_requests_total HTTP requests by route and status.\n# TYPE bootfleet_http_requests_total counter\n");
    for ((route, status), n) in s
        .http
        .counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(
            out,
            "bootfleet_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
        );
    }
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    for row in s.registry.snapshot(now_ms()) {
        *states.entry(row.state.name()).or_default() += 1;
    }
    out.push_str("# HELP bootfleet_nodes Machines by boot state.\n# TYPE bootfleet_nodes gauge\n");
    for (state, n) in states {
        let _ = writeln!(out, "bootfleet_nodes{{state=\"{state}\"}} {n}");
    }
    for g in &s.gauges {
        g.write_metrics(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
