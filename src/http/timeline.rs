//! The middleware that reports every boot-related request to the boot
//! timeline: which machine (by the MAC in the query, the node named in the
//! path, or else the client's address from DHCP), which stage, and whether
//! it failed.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::recorded::{End, Recorded};
use crate::boot::{Event, Step, classify};
use crate::clock::now_ms;
use crate::spec::Mac;

/// Why a handler refused a boot request, for the timeline: put on the
/// response's extensions by the handler that knows.
#[derive(Debug, Clone)]
pub struct Refused {
    /// What the machine was told: `refused: wrong token (403)`.
    pub answer: String,
    pub fix: Option<String>,
}

/// Records the request's arrival, runs it, then records its answer.
pub async fn record(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let arrived = std::time::Instant::now();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let method = req.method().clone();
    let stage = classify::http(&path, &s.site().names);
    let event = |mac, step, detail: String| Event {
        mac,
        at: now_ms(),
        stage: stage.unwrap_or(crate::boot::Stage::Script),
        step,
        asked: path.clone(),
        detail,
        ip: None,
        arch: None,
    };
    let asker = stage.and_then(|_| machine(&s, &path, &query, from));
    if let Some(mac) = asker {
        s.registry.record(event(
            mac,
            Step::Asked,
            format!("http {method} {path} asked"),
        ));
    }
    let res = next.run(req).await;
    let status = res.status();
    s.http
        .count(&path, status.as_u16(), arrived.elapsed().as_secs_f64());
    if stage.is_none() {
        return res;
    }
    // A machine enrolled by this very request is known only now.
    let Some(mac) = asker.or_else(|| machine(&s, &path, &query, from)) else {
        return res;
    };
    let detail = format!("http {method} {path} {}", status.as_u16());
    if status.is_client_error() || status.is_server_error() {
        let refused = res.extensions().get::<Refused>();
        let step = Step::Failed {
            answer: refused.map_or_else(
                || format!("answered {}", status.as_u16()),
                |r| r.answer.clone(),
            ),
            fix: refused.and_then(|r| r.fix.clone()),
        };
        s.registry.record(event(mac, step, detail));
        return res;
    }
    // An answer without a body is served as it leaves.
    if method == axum::http::Method::HEAD
        || status == axum::http::StatusCode::NOT_MODIFIED
        || status == axum::http::StatusCode::NO_CONTENT
    {
        s.registry.record(event(mac, Step::Served, detail));
        return res;
    }
    // Served once its last byte is handed to the connection: a kernel's
    // stage is its transfer. A transfer cut short is the machine's failure
    // to fetch the file (its firmware tries again).
    let registry = s.registry.clone();
    let (stage, asked) = (stage.unwrap_or(crate::boot::Stage::Script), path.clone());
    let length = res
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    res.map(move |body| {
        axum::body::Body::new(Recorded::new(body, length, move |end| {
            let step = match end {
                End::Done { .. } => Step::Served,
                End::Cut { sent, total } => Step::Failed {
                    answer: match total {
                        Some(total) => format!("transfer cut off after {sent} of {total} bytes"),
                        None => format!("transfer cut off after {sent} bytes"),
                    },
                    fix: None,
                },
            };
            registry.record(Event {
                mac,
                at: now_ms(),
                stage,
                step,
                asked,
                detail,
                ip: None,
                arch: None,
            });
        }))
    })
}

fn machine(s: &AppState, path: &str, query: &str, from: Option<IpAddr>) -> Option<Mac> {
    if path == "/ipxe/boot" {
        let mac = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("mac="))
            .and_then(|m| m.replace('-', ":").parse().ok());
        if mac.is_some() {
            return mac;
        }
    }
    for prefix in ["/cloud-config/", "/ignition/", "/phone-home/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            // `/ignition/<node>/merge/<i>` names the node first.
            let name = rest.split('/').next().unwrap_or(rest);
            if let Some(mac) = s.registry.mac_of_name(name) {
                return Some(mac);
            }
        }
    }
    match from? {
        IpAddr::V4(ip) => s.registry.mac_of_ip(ip),
        IpAddr::V6(ip) => s.registry.mac_of_ip(ip.to_ipv4_mapped()?),
    }
}
