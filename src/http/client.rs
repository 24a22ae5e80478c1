//! The client of bootfleet's own JSON API (`nodes`, `leases`, `cluster`,
//! and the power reports of `power` and `reprovision`), on ureq: requests
//! that want an answer from bootfleet (its `Server` header), not from
//! whatever else listens at the address.

use std::time::Duration;

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {addr}: {source} (is `bootfleet serve` running there?)")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}{path}: {source}")]
    Io {
        addr: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{addr}{path} did not answer with HTTP")]
    NotHttp { addr: String, path: String },
    #[error(
        "{addr} answered HTTP {status}, but it is not bootfleet: is `bootfleet serve` running for this spec? (it listens on the spec's [network] server address and http_port; --server HOST:PORT asks another)"
    )]
    NotBootfleet { addr: String, status: String },
    #[error("{addr}{path} answered {status}")]
    Status {
        addr: String,
        path: String,
        status: String,
    },
}

/// GETs `path` from `addr` (HOST:PORT); the body when the answer is 200.
pub fn get(addr: &str, path: &str) -> Result<String, ClientError> {
    call(addr, path, None)
}

/// POSTs `body` (JSON) to `path` at `addr` with `Authorization: Bearer
/// key`; Ok when the answer is 2xx, else the status and what the server
/// said.
pub fn post_json(addr: &str, path: &str, key: &str, body: &str) -> Result<String, ClientError> {
    call(addr, path, Some((key, body)))
}

fn call(addr: &str, path: &str, post: Option<(&str, &str)>) -> Result<String, ClientError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let sent = match post {
        None => agent.get(&url).call(),
        Some((key, body)) => agent
            .post(&url)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .send(body),
    };
    let mut res = sent.map_err(|e| match e {
        ureq::Error::Protocol(_) => ClientError::NotHttp {
            addr: addr.to_owned(),
            path: path.to_owned(),
        },
        ureq::Error::Io(source) => ClientError::Connect {
            addr: addr.to_owned(),
            source,
        },
        other => ClientError::Connect {
            addr: addr.to_owned(),
            source: std::io::Error::other(other),
        },
    })?;
    let status = res.status().as_u16();
    let ours = res
        .headers()
        .get("server")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("bootfleet/"));
    if !ours {
        return Err(ClientError::NotBootfleet {
            addr: addr.to_owned(),
            status: status.to_string(),
        });
    }
    let body = res
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| ClientError::Io {
            addr: addr.to_owned(),
            path: path.to_owned(),
            source: e.into_io(),
        })?;
    let ok = match post {
        None => status == 200,
        Some(_) => (200..300).contains(&status),
    };
    if !ok {
        let said = body.trim();
        return Err(ClientError::Status {
            addr: addr.to_owned(),
            path: path.to_owned(),
            status: if said.is_empty() || said.len() > 300 {
                status.to_string()
            } else {
                format!("{status}: {said}")
            },
        });
    }
    Ok(body)
}
