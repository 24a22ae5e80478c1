//! The middleware that reports every boot-related request to the boot
//! timeline: which machine (by the MAC in the query, the node named in the
//! path, or else the client's address from DHCP), which stage, and whether
//! it failed.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::boot::{Event, classify, now_ms};
use crate::spec::Mac;

/// Runs the request, then records it.
pub async fn record(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let method = req.method().clone();
    let res = next.run(req).await;
    s.http.count(&path, res.status().as_u16());
    let site = s.site();
    let Some(stage) = classify::http(&path, &site.names) else {
        return res;
    };
    if let Some(mac) = machine(&s, &path, &query, from) {
        let status = res.status();
        s.registry.record(Event {
            mac,
            at: now_ms(),
            stage,
            detail: format!("http {method} {path} {}", status.as_u16()),
            failed: status.is_client_error() || status.is_server_error(),
            ip: None,
            arch: None,
        });
    }
    res
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
    for prefix in ["/cloud-config/", "/phone-home/"] {
        if let Some(name) = path.strip_prefix(prefix) {
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
