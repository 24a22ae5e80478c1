//! `/api/v1/leases`: every stored lease, with the node that holds it, as
//! `bootfleet leases` prints them (read from the store, so a site of
//! several servers shows every server's leases).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;

/// One lease as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRow {
    pub ip: std::net::Ipv4Addr,
    pub mac: String,
    /// The spec's or the enrolled machine's name, if it is one.
    pub node: Option<String>,
    /// Unix seconds when it ends.
    pub expires: u64,
    /// The server that granted it (`host:pid/n`), where the store keeps it.
    pub server: Option<String>,
    /// The segment of the site its address lies in.
    #[serde(default)]
    pub segment: Option<String>,
}

/// The rows of `leases`, in address order, each named by `name`, in the
/// segment `segment` says.
pub fn rows(
    leases: Vec<(crate::store::Lease, Option<String>)>,
    name: impl Fn(crate::spec::Mac) -> Option<String>,
    segment: impl Fn(std::net::Ipv4Addr) -> Option<String>,
) -> Vec<LeaseRow> {
    let mut rows: Vec<LeaseRow> = leases
        .into_iter()
        .map(|(l, server)| LeaseRow {
            server,
            ip: l.ip,
            mac: l.mac.to_string(),
            node: if l.mac == crate::store::QUARANTINED {
                Some("(declined: in use by something else)".into())
            } else {
                name(l.mac)
            },
            expires: l.expires,
            segment: segment(l.ip),
        })
        .collect();
    rows.sort_by_key(|r| r.ip);
    rows
}

pub async fn list(State(s): State<AppState>) -> Response {
    let Some(store) = s.leases.clone() else {
        return (StatusCode::NOT_FOUND, "this server keeps no leases\n").into_response();
    };
    match tokio::task::spawn_blocking(move || store.listing()).await {
        Ok(Ok(leases)) => {
            let site = s.site();
            let name = |mac| {
                let n = site.inventory.nodes.iter().find(|n| n.mac == mac)?;
                Some(n.name.clone())
            };
            let segment = |ip| site.segments.name_of(ip).map(str::to_owned);
            Json(rows(leases, name, segment)).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reading the leases: {e}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
