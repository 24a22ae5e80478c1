//! A minimal HTTP/1.1 client for bootfleet's own JSON API (`nodes`,
//! `cluster`): a GET that expects Content-Length and a closed connection,
//! and an answer from bootfleet (its `Server` header), not whatever else
//! listens at the address.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
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
    let connect = |source| ClientError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let target = addr
        .to_socket_addrs()
        .map_err(connect)?
        .next()
        .ok_or_else(|| {
            connect(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address",
            ))
        })?;
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5)).map_err(connect)?;
    let io = |source| ClientError::Io {
        addr: addr.to_owned(),
        path: path.to_owned(),
        source,
    };
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let not_http = || ClientError::NotHttp {
        addr: addr.to_owned(),
        path: path.to_owned(),
    };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(not_http)?;
    let status = head.split_whitespace().nth(1).ok_or_else(not_http)?;
    let ours = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("server") && v.trim().starts_with("bootfleet/")
        })
    });
    if !ours {
        return Err(ClientError::NotBootfleet {
            addr: addr.to_owned(),
            status: status.to_owned(),
        });
    }
    if status != "200" {
        return Err(ClientError::Status {
            addr: addr.to_owned(),
            path: path.to_owned(),
            status: status.to_owned(),
        });
    }
    Ok(body.to_owned())
}
