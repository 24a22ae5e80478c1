//! `bootfleet nodes SPEC`: the status page's table, from a running server.

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

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// The power its BMC reported (`-`: not asked).
fn power(n: &NodeStatus) -> String {
    n.power
        .as_ref()
        .map_or_else(|| "-".into(), |p| p.state.clone())
}

/// Which boot, and the power action that started it: `2 by reprovision`.
fn boot(n: &NodeStatus) -> String {
    if n.boots == 0 {
        return "-".into();
    }
    match &n.boot_cause {
        Some(c) => format!("{} by {}", n.boots, c.action.by),
        None => n.boots.to_string(),
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    let spec = super::load_spec(&args.spec)?;
    let addr = args.server.unwrap_or_else(|| spec.api_address());
    let body = crate::http::client::get(&addr, "/api/v1/nodes").map_err(anyhow::Error::from)?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let rows: Vec<NodeStatus> = serde_json::from_str(&body).context("reading the API's answer")?;
    let several = spec.segments.len() > 1;
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|n| {
            let stage = n.stage.map(|s| s.name()).unwrap_or("-");
            let mut state = match n.state {
                State::Stalled => format!("stalled at {stage}"),
                other => other.name().to_owned(),
            };
            if n.tries > 1 && n.state != State::Booted {
                state.push_str(&format!(" (try {})", n.tries));
            }
            let times: Vec<String> = n
                .stages
                .iter()
                .map(|t| {
                    let more = if t.done { "" } else { "+" };
                    format!("{} {}{more}", t.stage.name(), secs(t.ms))
                })
                .collect();
            let mut row = vec![
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
                power(n),
                boot(n),
                if times.is_empty() {
                    "-".into()
                } else {
                    times.join(" ")
                },
                n.failure
                    .as_ref()
                    .map_or_else(|| n.last_event.clone(), |f| f.message.clone()),
            ];
            if several {
                row.insert(3, n.segment.clone().unwrap_or_else(|| "-".into()));
            }
            row
        })
        .collect();
    let mut header = vec![
        "NAME",
        "MAC",
        "IP",
        "ROLE",
        "STATE",
        "POWER",
        "BOOT",
        "STAGES",
        "LAST EVENT",
    ];
    if several {
        header.insert(3, "SEGMENT");
    }
    super::print_rows(&header, &table);
    // What to do about each failure and each BMC that did not answer,
    // under the table.
    for n in &rows {
        let who = if n.name.is_empty() { &n.mac } else { &n.name };
        if let Some(fix) = n.failure.as_ref().and_then(|f| f.failure.fix.as_ref()) {
            println!("{who}: {fix}");
        }
        if let Some(e) = n.power.as_ref().and_then(|p| p.error.as_ref()) {
            println!("{who}: power unknown: {}", e.replace('\n', "\n  "));
        }
    }
    Ok(())
}
