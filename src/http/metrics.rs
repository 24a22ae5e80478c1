//! `/metrics`: the page, and what the HTTP side counts for it (requests
//! by route and status, their durations by route).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::AppState;
use crate::metrics::{Histograms, Metrics, OPENMETRICS, Out, TEXT, classic, histograms, slow};

/// HTTP requests by route family and status, and their durations.
#[derive(Debug)]
pub struct HttpMetrics {
    counts: Mutex<BTreeMap<(&'static str, u16), u64>>,
    seconds: Histograms,
}

impl Default for HttpMetrics {
    fn default() -> HttpMetrics {
        HttpMetrics {
            counts: Mutex::default(),
            seconds: histograms(slow),
        }
    }
}

/// The route family of a path: a fixed label, so that paths with node
/// names or files do not make a label per value.
pub fn family(path: &str) -> &'static str {
    const FAMILIES: [&str; 9] = [
        "/assets/",
        "/cloud-config/",
        "/ignition/",
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

impl HttpMetrics {
    /// One request to `path`, answered `status` after `secs`.
    pub fn count(&self, path: &str, status: u16, secs: f64) {
        let route = family(path);
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route, status)).or_default() += 1;
        drop(m);
        self.seconds
            .get_or_create(&[("route", route)])
            .observe(secs);
    }

    /// Registers the histogram, and these counters as a collector.
    pub fn register(self: &std::sync::Arc<Self>, m: &mut Metrics) {
        m.register(
            "bootfleet_http_request_duration_seconds",
            "HTTP requests from arrival to answer, by route",
            self.seconds.clone(),
        );
        m.collect(self.clone());
    }
}

impl Collector for HttpMetrics {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let counts: Vec<((&'static str, u16), u64)> = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        Out(encoder).counters(
            "bootfleet_http_requests",
            "HTTP requests by route and status",
            counts.into_iter().map(|((route, status), v)| {
                (
                    [("route", route.to_owned()), ("status", status.to_string())],
                    v,
                )
            }),
        )
    }
}

/// The page: OpenMetrics for a scraper that accepts it, else the classic
/// text format.
pub async fn render(State(s): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let page = s.metrics.encode();
    let accepts = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if accepts {
        ([(header::CONTENT_TYPE, OPENMETRICS)], page)
    } else {
        ([(header::CONTENT_TYPE, TEXT)], classic(&page))
    }
}
