//! The client of bootfleet's own JSON API (`nodes`, `leases`,
//! `cluster`), on ureq: a GET that wants an answer from bootfleet (its
//! `Server` header), not from whatever else listens at the address.

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
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut res = agent
        .get(format!("http://{addr}{path}"))
        .call()
        .map_err(|e| match e {
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
    let status = res.status().as_u16().to_string();
    let ours = res
        .headers()
        .get("server")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("bootfleet/"));
    if !ours {
        return Err(ClientError::NotBootfleet {
            addr: addr.to_owned(),
            status,
        });
    }
    if status != "200" {
        return Err(ClientError::Status {
            addr: addr.to_owned(),
            path: path.to_owned(),
            status,
        });
    }
    res.body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| ClientError::Io {
            addr: addr.to_owned(),
            path: path.to_owned(),
            source: e.into_io(),
        })
}
