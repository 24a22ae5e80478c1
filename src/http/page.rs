//! The status page (`/`) and the JSON API (`/api/v1/nodes`): the same
//! rows, one per machine, known or not.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::value::{Serde, Value};
use minijinja::{Environment, context};
use serde::Serialize;

use super::AppState;
use crate::boot::{NodeStatus, State as BootState};
use crate::clock::now_ms;

const PAGE: &str = include_str!("../../templates/web/status.html");

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        // HTML-escaped: MACs and events come from the network.
        e.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        e.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        e.add_template("status.html", PAGE)
            .expect("the status page template parses");
        e
    })
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    node: &'a NodeStatus,
    stages: Vec<StageSecs<'a>>,
    ago: String,
    /// The first line of why its BMC could not be asked, and all of it.
    power_error: Option<&'a str>,
    power_error_full: Option<&'a str>,
}

#[derive(Serialize)]
struct StageSecs<'a> {
    stage: &'static str,
    secs: String,
    /// Still going on.
    open: bool,
    /// The server that saw it (a site of several servers).
    seen_by: &'a str,
}

fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// `/`.
pub async fn status(State(s): State<AppState>) -> Response {
    let now = now_ms();
    let nodes = s.registry.snapshot(now);
    let rows: Vec<Row> = nodes
        .iter()
        .map(|n| Row {
            node: n,
            stages: n
                .stages
                .iter()
                .map(|t| StageSecs {
                    stage: t.stage.name(),
                    secs: format!("{:.1}", t.ms as f64 / 1000.0),
                    open: !t.done,
                    seen_by: &t.seen_by,
                })
                .collect(),
            power_error: n
                .power
                .as_ref()
                .and_then(|p| p.error.as_deref())
                .and_then(|e| e.lines().next()),
            power_error_full: n.power.as_ref().and_then(|p| p.error.as_deref()),
            ago: if n.last_event_at == 0 {
                String::new()
            } else {
                ago(now.saturating_sub(n.last_event_at))
            },
        })
        .collect();
    let mut counts = Vec::new();
    for st in [
        BootState::Booted,
        BootState::Booting,
        BootState::Stalled,
        BootState::Failed,
        BootState::Waiting,
    ] {
        let n = nodes.iter().filter(|r| r.state == st).count();
        counts.push(context! { state => Value::from(Serde(&st)), n => n });
    }
    let site = s.site();
    let page = env().get_template("status.html").and_then(|t| {
        t.render(context! {
            cluster => site.cluster.clone(),
            nodes => Value::from(Serde(&rows)),
            counts => counts,
            refresh_secs => 3,
            store_away => s.leases.as_ref().is_some_and(|l| !l.reachable()),
            stall_secs => s.registry.stall_after_ms() / 1000,
            several_segments => site.segments.len() > 1,
        })
    });
    match page {
        Ok(html) => Html(html).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("status page: {e}\n"),
        )
            .into_response(),
    }
}

/// `/api/v1/nodes`.
pub async fn nodes_json(State(s): State<AppState>) -> Json<Vec<NodeStatus>> {
    Json(s.registry.snapshot(now_ms()))
}

/// `/api/v1/nodes/<name or MAC>`.
pub async fn node_json(State(s): State<AppState>, Path(key): Path<String>) -> Response {
    let wanted = key.to_ascii_lowercase().replace('-', ":");
    match s
        .registry
        .snapshot(now_ms())
        .into_iter()
        .find(|n| n.name == key || n.mac == wanted)
    {
        Some(n) => Json(n).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no machine `{key}`\n")).into_response(),
    }
}
