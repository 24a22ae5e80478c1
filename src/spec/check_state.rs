//! Rules for `[state]`: the embedded store (the default) or an etcd of
//! bootfleet's own. The etcd the rendered units start on the cluster's
//! nodes is never it: it serves plain HTTP with the v2 API on for fleet,
//! and the site key would be readable by anything on the cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::check::Checker;
use super::{EtcdStore, NodeSpec, StateBackend, wire};

fn file(c: &mut Checker, v: Option<&Spanned<String>>) -> Option<PathBuf> {
    let v = v?;
    let base = c.path.parent().unwrap_or(Path::new("."));
    let p = base.join(v.get_ref());
    if !p.is_file() {
        c.error(
            v.span(),
            format!("{} does not exist", p.display()),
            "fix the path (relative paths start at the spec file's directory)",
        );
    }
    Some(p)
}

/// `[state] keep_expired`: how long a lease is kept after it expired
/// (so that a machine back within that time gets its old address); three
/// lease times unless set, at least a minute.
pub(super) fn keep_expired(
    c: &mut Checker,
    w: Option<&wire::State>,
    lease_time: Option<Duration>,
) -> Option<Duration> {
    let Some(t) = w.and_then(|w| w.keep_expired.as_ref()) else {
        return Some(lease_time.unwrap_or(Duration::from_secs(12 * 3600)) * 3);
    };
    at_least_a_minute(c, "keep_expired", t, "90m, 36h or 7d")
}

/// `[state] keep_timelines`: how long the boot timeline of a machine not
/// in the spec is kept after its last event; 30 days unless set, at least
/// a minute.
pub(super) fn keep_timelines(c: &mut Checker, w: Option<&wire::State>) -> Option<Duration> {
    let Some(t) = w.and_then(|w| w.keep_timelines.as_ref()) else {
        return Some(Duration::from_secs(30 * 86_400));
    };
    at_least_a_minute(c, "keep_timelines", t, "12h, 7d or 30d")
}

/// The duration `key` gives, refused (with an error naming the key and
/// `examples` of good values) unless it is at least a minute.
fn at_least_a_minute(
    c: &mut Checker,
    key: &str,
    t: &Spanned<String>,
    examples: &str,
) -> Option<Duration> {
    let d = super::check::parse_duration(t.get_ref()).filter(|d| d.as_secs() >= 60);
    if d.is_none() {
        c.error(
            t.span(),
            format!(
                "{key} `{}` is not a duration of at least a minute",
                t.get_ref()
            ),
            format!("write a number with a unit: {examples}"),
        );
    }
    d
}

/// Checks `[state]` (embedded when it is absent).
pub(super) fn state(
    c: &mut Checker,
    w: Option<&wire::State>,
    cluster: &str,
    nodes: &[NodeSpec],
) -> Option<StateBackend> {
    let empty = wire::State::default();
    let w = w.unwrap_or(&empty);
    let backend = w
        .backend
        .as_ref()
        .map_or("embedded", |b| b.get_ref().as_str());
    match backend {
        "embedded" => {
            if let Some(e) = w.endpoints.first() {
                c.error(
                    e.span(),
                    "endpoints are for backend = \"etcd\"",
                    "add backend = \"etcd\" to [state], or remove endpoints",
                );
                return None;
            }
            Some(StateBackend::Embedded)
        }
        "etcd" => etcd(c, w, cluster, nodes).map(StateBackend::Etcd),
        other => {
            let span = w.backend.as_ref().map(|b| b.span()).unwrap_or_default();
            c.error(
                span,
                format!("unknown state backend `{other}`"),
                "use \"embedded\" (one file in the state directory) or \"etcd\" (several servers)",
            );
            None
        }
    }
}

fn etcd(c: &mut Checker, w: &wire::State, cluster: &str, nodes: &[NodeSpec]) -> Option<EtcdStore> {
    let before = c.diags.len();
    if w.endpoints.is_empty() {
        let span = w.backend.as_ref().map(|b| b.span()).unwrap_or_default();
        c.error(
            span,
            "backend = \"etcd\" needs endpoints",
            "add endpoints = [\"http://10.0.0.5:2379\"] (bootfleet's own etcd, not the cluster's)",
        );
    }
    let members: Vec<String> = nodes
        .iter()
        .filter(|n| n.roles.etcd)
        .map(|n| n.ip.to_string())
        .collect();
    for e in &w.endpoints {
        let Some(rest) = e
            .get_ref()
            .strip_prefix("http://")
            .or_else(|| e.get_ref().strip_prefix("https://"))
        else {
            c.error(
                e.span(),
                format!("`{}` is not an etcd endpoint URL", e.get_ref()),
                "write it as http://HOST:PORT or https://HOST:PORT",
            );
            continue;
        };
        let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
        if members.iter().any(|m| m == host) {
            c.error(
                e.span(),
                format!("{host} is an etcd member of this cluster"),
                "keep bootfleet's state in an etcd of its own: the cluster's etcd serves plain \
                 HTTP with the v2 API on for fleet, and every node could read the site key",
            );
        }
    }
    let prefix = w
        .prefix
        .as_ref()
        .map_or(format!("/bootfleet/{cluster}"), |p| p.get_ref().clone());
    if let Some(p) = &w.prefix {
        if !p.get_ref().starts_with('/') || p.get_ref().ends_with('/') {
            c.error(
                p.span(),
                "prefix must start with / and not end with one",
                format!("for example \"/bootfleet/{cluster}\" (the default)"),
            );
        }
    }
    let ca_file = file(c, w.ca_file.as_ref());
    let cert_file = file(c, w.cert_file.as_ref());
    let key_file = file(c, w.key_file.as_ref());
    if cert_file.is_some() != key_file.is_some() {
        let span = w
            .cert_file
            .as_ref()
            .or(w.key_file.as_ref())
            .map(|s| s.span())
            .unwrap_or_default();
        c.error(
            span,
            "cert_file and key_file go together",
            "give both (a client certificate and its key), or neither",
        );
    }
    (c.diags.len() == before).then(|| EtcdStore {
        endpoints: w.endpoints.iter().map(|e| e.get_ref().clone()).collect(),
        prefix,
        ca_file,
        cert_file,
        key_file,
    })
}
