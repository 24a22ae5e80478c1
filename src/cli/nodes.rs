//! `bootfleet nodes SPEC`: the status page's table, from a running server.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context as _;

use super::CliError;
use crate::boot::{NodeStatus, State};

/// Print every machine's boot state as the running `bootfleet serve` for
/// SPEC sees it: name, MAC, IP, role, state, stage, time in each stage,
/// last event. Asks http://SERVER:HTTP_PORT/api/v1/nodes of the spec.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet nodes examples/rack.toml\n  bootfleet nodes site.toml --json | jq '.[] | select(.state == \"stalled\")'\n  bootfleet nodes site.toml --server 127.0.0.1:8080"
)]
pub struct Args {
    /// The cluster spec (TOML) the server runs.
    spec: std::path::PathBuf,
    /// Print the JSON the API returns, for scripts.
    #[arg(long)]
    json: bool,
    /// Ask this HOST:PORT instead of the spec's server address and port.
    #[arg(long, value_name = "HOST:PORT")]
    server: Option<String>,
}

/// A plain HTTP/1.1 GET; the API answers with Content-Length and closes.
fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    let target = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} has no address"))?;
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}: is `bootfleet serve` running?"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("not an HTTP answer")?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    anyhow::ensure!(status == "200", "{addr}{path} answered {status}");
    Ok(body.to_owned())
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

pub fn run(args: Args) -> Result<(), CliError> {
    let spec = super::prepare::load_spec(&args.spec)?;
    let addr = args
        .server
        .unwrap_or_else(|| format!("{}:{}", spec.network.server, spec.network.http_port));
    let body = get(&addr, "/api/v1/nodes")?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let rows: Vec<NodeStatus> = serde_json::from_str(&body).context("reading the API's answer")?;
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|n| {
            let stage = n.stage.map(|s| s.name()).unwrap_or("-");
            let state = match n.state {
                State::Stalled => format!("stalled at {stage}"),
                other => other.name().to_owned(),
            };
            let times: Vec<String> = n
                .stages
                .iter()
                .map(|t| format!("{} {}", t.stage.name(), secs(t.ms)))
                .collect();
            [
                if n.name.is_empty() {
                    "(unknown)".into()
                } else {
                    n.name.clone()
                },
                n.mac.clone(),
                n.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                if n.roles.is_empty() {
                    "-".into()
                } else {
                    n.roles.join(",")
                },
                state,
                if times.is_empty() {
                    "-".into()
                } else {
                    times.join(" ")
                },
                n.failure.clone().unwrap_or_else(|| n.last_event.clone()),
            ]
        })
        .collect();
    let header = ["NAME", "MAC", "IP", "ROLE", "STATE", "STAGES", "LAST EVENT"].map(str::to_owned);
    let mut width = [0usize; 6];
    for row in std::iter::once(&header).chain(&table) {
        for (w, cell) in width.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            match width.get(i) {
                Some(w) => line.push_str(&format!("{cell:<w$}  ")),
                None => line.push_str(cell),
            }
        }
        println!("{}", line.trim_end());
    }
    Ok(())
}
