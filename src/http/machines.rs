//! What booting machines fetch: the iPXE scripts, their cloud-config or
//! Ignition config (token required), and the phone-home call.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::render::Generated;

use super::timeline::Refused;
use super::{AppState, EnrolRequest};
use crate::boot::fixes;
use crate::spec::Mac;

fn text(body: String, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn ipxe(body: String) -> Response {
    text(body, "text/plain; charset=utf-8")
}

/// A script for a machine bootfleet does not know: says so on its console
/// and retries later, so the machine shows up on the status page and boots
/// once it is added to the spec.
fn unknown_machine(mac: &str) -> Response {
    let script = format!(
        "#!ipxe\necho bootfleet: this machine ({mac}) is not in the cluster spec; add it and it boots on the next try\nsleep 30\nreboot\n"
    );
    let mut res = (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        script,
    )
        .into_response();
    let fix = mac.parse().ok().map(fixes::unknown_machine);
    res.extensions_mut().insert(Refused {
        answer: "refused: not in the spec, and no [enrolment] (404)".into(),
        fix,
    });
    res
}

/// A refusal the machine is told and the timeline records.
fn refuse(status: StatusCode, body: String, answer: &str, fix: Option<String>) -> Response {
    let mut res = (status, body).into_response();
    res.extensions_mut().insert(Refused {
        answer: format!("refused: {answer} ({})", status.as_u16()),
        fix,
    });
    res
}

/// `/boot.ipxe`: hands over to the machine's own script.
pub async fn boot_ipxe(State(s): State<AppState>) -> Response {
    match s.site().files.get(&Generated::BootScript.path()) {
        Some(f) => ipxe(f.clone()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `/ipxe/boot?mac=52-54-00-..`: the script of the machine with that MAC.
/// A machine the spec does not list is enrolled first when the spec says
/// so (the request waits for its files), with the address it asks from.
pub async fn ipxe_by_mac(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Response {
    let raw = q.get("mac").map(String::as_str).unwrap_or_default();
    let Ok(mac) = raw.replace('-', ":").parse::<Mac>() else {
        return (
            StatusCode::BAD_REQUEST,
            "mac= is missing or not a MAC address\n",
        )
            .into_response();
    };
    let known = |s: &AppState| {
        let site = s.site();
        let name = site
            .inventory
            .nodes
            .iter()
            .find(|n| n.mac == mac)?
            .name
            .clone();
        site.files.get(&Generated::NodeScript(name).path()).cloned()
    };
    if let Some(script) = known(&s) {
        return ipxe(script);
    }
    if let (Some(tx), IpAddr::V4(ip)) = (&s.enrol, from.ip()) {
        let (done, wait) = tokio::sync::oneshot::channel();
        let asked = tx.send(EnrolRequest {
            mac,
            ip,
            done: Some(done),
        });
        if asked.await.is_ok() {
            let _ = tokio::time::timeout(ENROL_WAIT, wait).await;
        }
        if let Some(script) = known(&s) {
            return ipxe(script);
        }
    }
    unknown_machine(&mac.to_string())
}

/// How long a script request waits for its machine to be enrolled.
const ENROL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `/ipxe/<node>.ipxe`.
pub async fn ipxe_by_name(State(s): State<AppState>, Path(file): Path<String>) -> Response {
    let script = match Generated::parse(&format!("ipxe/{file}")) {
        Some(g @ Generated::NodeScript(_)) => s.site().files.get(&g.path()).cloned(),
        _ => None,
    };
    match script {
        Some(f) => ipxe(f),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Compares without stopping at the first difference.
/// Tokens compared in constant time (no early exit on the first
/// differing byte).
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Checks `?token=` against the node's own: the refusal, or `None` when
/// the request may be answered.
fn refusal(
    s: &AppState,
    name: &str,
    q: &HashMap<String, String>,
    from: SocketAddr,
) -> Option<Response> {
    let site = s.site();
    let Some(node) = site.inventory.get(name) else {
        return Some(refuse(
            StatusCode::NOT_FOUND,
            format!("no node `{name}` in the spec\n"),
            "no such node",
            Some(format!(
                "add a node named `{name}` to the spec, or boot the machine again so it fetches its own script"
            )),
        ));
    };
    let token = q.get("token").map(String::as_str).unwrap_or_default();
    if !same(token, &node.token) {
        let answer = if token.is_empty() {
            "no token"
        } else {
            "wrong token"
        };
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "token missing or not this node's\n".into(),
            answer,
            Some(fixes::WRONG_TOKEN.into()),
        ));
    }
    if site.check_source {
        // Its address: the one DHCP leased it last, else the spec's.
        let own = match from.ip() {
            IpAddr::V4(ip) => s.registry.mac_of_ip(ip) == Some(node.mac),
            IpAddr::V6(_) => false,
        };
        if !own {
            let why = format!("request must come from {}'s own address\n", node.name);
            return Some(refuse(
                StatusCode::FORBIDDEN,
                why,
                &format!("wrong source address {}", from.ip()),
                Some(fixes::wrong_source(&node.name)),
            ));
        }
    }
    None
}

/// `/cloud-config/<node>?token=...`.
pub async fn cloud_config(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Response {
    match rendered(&s, Generated::CloudConfig(name.clone()), &name, &q, from) {
        Ok(Some(f)) => text(f, "text/yaml; charset=utf-8"),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(refused) => *refused,
    }
}

/// The rendered file `g` of node `name`, once the request passed
/// [`refusal`]; `None` when this spec renders no such file.
fn rendered(
    s: &AppState,
    g: Generated,
    name: &str,
    q: &HashMap<String, String>,
    from: SocketAddr,
) -> Result<Option<String>, Box<Response>> {
    match refusal(s, name, q, from) {
        Some(refused) => Err(Box::new(refused)),
        None => Ok(s.site().files.get(&g.path()).cloned()),
    }
}

/// `/ignition/<node>?token=...`: what Ignition fetches.
pub async fn ignition(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Response {
    match rendered(&s, Generated::Ignition(name.clone()), &name, &q, from) {
        Err(refused) => *refused,
        Ok(Some(f)) => text(f, crate::ignition::MEDIA_TYPE),
        Ok(None) => refuse(
            StatusCode::NOT_FOUND,
            "this spec renders cloud-configs, not Ignition configs\n".into(),
            "no Ignition config: the spec renders cloud-configs",
            Some(fixes::CONFIG_FORMAT.into()),
        ),
    }
}

/// `/ignition/<node>/merge/<i>?token=...`: the `i`th config of
/// `[ignition] merge`, as the user wrote it (Ignition checks its hash).
pub async fn ignition_merge(
    State(s): State<AppState>,
    Path((name, index)): Path<(String, usize)>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(refused) = refusal(&s, &name, &q, from) {
        return refused;
    }
    match s.site().merge.get(index) {
        Some(bytes) => (
            [(header::CONTENT_TYPE, crate::ignition::MEDIA_TYPE)],
            bytes.to_vec(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `POST /phone-home/<node>?token=...`: the node has booted.
pub async fn phone_home(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(refused) = refusal(&s, &name, &q, from) {
        return refused;
    }
    StatusCode::NO_CONTENT.into_response()
}
