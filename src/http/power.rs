//! `POST /api/v1/nodes/<name>/power`: `bootfleet power` and `reprovision`
//! report a power action they took through a machine's BMC, so the
//! timeline shows it and attributes the boot that follows. Recording only:
//! no endpoint changes a machine's power. The caller presents the site's
//! API key (`Authorization: Bearer <key>`, the key `serve` writes to
//! `api.key` in its state directory), compared in constant time.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::boot::PowerAction;
use crate::clock::now_ms;

/// How far ahead of this server's clock a report may be dated.
const SKEW_MS: u64 = 5 * 60 * 1000;

fn refuse(status: StatusCode, why: String) -> Response {
    (status, format!("{why}\n")).into_response()
}

/// Whether `headers` carry the API key.
fn authorised(s: &AppState, headers: &HeaderMap) -> bool {
    let Some(key) = &s.api_key else { return false };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == key.len() && bool::from(given.as_bytes().ct_eq(key.as_bytes()))
}

/// `POST /api/v1/nodes/<name>/power` with a [`PowerAction`] as JSON.
pub async fn report(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorised(&s, &headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "power reports need the site's API key (`Authorization: Bearer <key>`, from api.key in the server's state directory)".into(),
        );
    }
    let action: PowerAction = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return refuse(StatusCode::BAD_REQUEST, format!("not a power action: {e}"));
        }
    };
    let short = |v: &str| v.len() <= 32 && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if !short(&action.by) || !action.boot.as_deref().is_none_or(short) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "`by` and `boot` are short printable words".into(),
        );
    }
    if action.at > now_ms().saturating_add(SKEW_MS) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the action is dated more than 5 minutes ahead of this server's clock".into(),
        );
    }
    if !s.registry.record_power(&name, &action) {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no node `{name}` in the spec this server runs"),
        );
    }
    if let Some(poke) = &s.on_power {
        poke();
    }
    StatusCode::NO_CONTENT.into_response()
}
