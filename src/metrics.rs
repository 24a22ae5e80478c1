//! What `/metrics` says, encoded by the `prometheus-client` crate in the
//! OpenMetrics text format Prometheus scrapes.
//!
//! Two kinds of metric: histograms observed where the work happens (a
//! DHCP reply, a lease commit, a TFTP transfer, an HTTP request, a boot
//! stage), each part owning its own and `serve` registering them here;
//! and the counters and gauges the servers already keep (atomics), read
//! at scrape time by collectors (`server::gauges`). Names follow
//! Prometheus' conventions: a `bootfleet_` prefix, the unit in the name,
//! counters ending in `_total` (the encoder adds it), and labels of
//! bounded cardinality only (a route, a stage, a message type; never a
//! MAC or an address).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// The content type of the page in OpenMetrics, for a scraper that asks
/// for it (Prometheus does).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format, for everything else (`curl`,
/// `promtool check metrics`, older scrapers).
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One label: its name and (bounded) value.
pub type Label = [(&'static str, &'static str); 1];

/// A histogram per value of one label (a route, a stage, a kind of file).
pub type Histograms = Family<Label, Histogram, fn() -> Histogram>;

/// Seconds from 50 µs to about 1.6 s: a DHCP reply, a lease commit.
pub fn fast() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Seconds from 1 ms to about 18 min: an HTTP request, a transfer, a boot
/// stage.
pub fn slow() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 21))
}

/// Bytes from 1 KiB to 1 GiB: a file transferred.
pub fn bytes() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 4.0, 11))
}

/// Histograms by one label, each made by `make`.
pub fn histograms(make: fn() -> Histogram) -> Histograms {
    Family::new_with_constructor(make)
}

/// The registry behind the page.
#[derive(Debug, Default)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Adds a metric observed elsewhere (a histogram or a family of
    /// them; the registry keeps a handle on the same values).
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// Adds a collector, asked for its values at every scrape.
    pub fn collect(&mut self, collector: impl Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// The page.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %crate::error_chain(&e), "metrics could not be encoded");
        }
        out
    }
}

/// The page in the classic text format (0.0.4): the same samples; a
/// counter's `# HELP` and `# TYPE` name its sample (`foo_total`, where
/// OpenMetrics names the family `foo`); no `# UNIT` or `# EOF`.
pub fn classic(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|r| r.strip_suffix(" counter"))
        {
            counters.insert(name);
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match header {
            Some((p, rest)) => {
                let name = rest.split(' ').next().unwrap_or_default();
                if counters.contains(name) {
                    out.push_str(p);
                    out.push_str(name);
                    out.push_str("_total");
                    out.push_str(&rest[name.len()..]);
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A collector's values, written at scrape time.
pub struct Out<'a>(pub DescriptorEncoder<'a>);

impl Out<'_> {
    /// A counter (`name` without `_total`; the encoder adds it).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let m = self.describe(name, help, MetricType::Counter)?;
        ConstCounter::new(value).encode(m)
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) -> fmt::Result {
        let m = self.describe(name, help, MetricType::Gauge)?;
        ConstGauge::new(value).encode(m)
    }

    /// A counter per label set.
    pub fn counters<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (L, u64)>,
    ) -> fmt::Result {
        let rows = rows.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
        self.family(name, help, MetricType::Counter, rows)
    }

    /// A gauge per label set.
    pub fn gauges<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (L, i64)>,
    ) -> fmt::Result {
        let rows = rows.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
        self.family(name, help, MetricType::Gauge, rows)
    }

    fn describe<'s>(
        &'s mut self,
        name: &'s str,
        help: &str,
        kind: MetricType,
    ) -> Result<prometheus_client::encoding::MetricEncoder<'s>, fmt::Error> {
        self.0.encode_descriptor(name, &sentence(help), None, kind)
    }

    /// One metric per label set, all of `kind`.
    fn family<L: EncodeLabelSet, M: EncodeMetric>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        rows: impl IntoIterator<Item = (L, M)>,
    ) -> fmt::Result {
        let mut family = self.describe(name, help, kind)?;
        for (labels, metric) in rows {
            metric.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A help text ending in a full stop, as the registry writes the help of
/// what is registered on it (a collector's is written as given).
fn sentence(help: &str) -> String {
    format!("{help}.")
}

/// A `u64` counter read as a gauge value, saturating.
pub fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
            let mut out = Out(encoder);
            out.counter("bootfleet_test_things", "Things", 2)?;
            out.gauges(
                "bootfleet_test_machines",
                "Machines by state",
                [([("state", "booted")], 3), ([("state", "failed")], 1)],
            )
        }
    }

    #[test]
    fn collected_and_observed_values_are_on_the_page_with_their_types() {
        let mut m = Metrics::default();
        let h = histograms(fast);
        h.get_or_create(&[("route", "/assets/")]).observe(0.003);
        m.register("bootfleet_test_seconds", "Time.", h.clone());
        m.collect(Two);
        let page = m.encode();
        for line in [
            "# TYPE bootfleet_test_seconds histogram",
            "bootfleet_test_seconds_count{route=\"/assets/\"} 1",
            "# TYPE bootfleet_test_things counter",
            "bootfleet_test_things_total 2",
            "bootfleet_test_machines{state=\"booted\"} 3",
            "# EOF",
        ] {
            assert!(page.contains(line), "{line} not in\n{page}");
        }
        let text = classic(&page);
        for line in [
            "# HELP bootfleet_test_things_total Things.",
            "# TYPE bootfleet_test_things_total counter",
            "bootfleet_test_things_total 2",
            "# TYPE bootfleet_test_seconds histogram",
            "bootfleet_test_machines{state=\"booted\"} 3",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(!text.contains("# EOF"));
    }
}
