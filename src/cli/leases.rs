//! `bootfleet leases SPEC`: every lease of the site, as `dhcp-lease-list`
//! or `kea-admin lease-dump` print them.

use anyhow::Context as _;

use super::CliError;
use crate::http::client::ClientError;
use crate::http::leases::{LeaseRow, rows};

/// Print every lease: address, MAC, the node that holds it, expiry, and
/// the server that granted it (with the etcd store). Asks
/// the running `bootfleet serve` for SPEC (its /api/v1/leases, which reads
/// the store); when no server answers there, reads the spec's store
/// itself (the embedded one, or etcd).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet leases examples/rack.toml\n  bootfleet leases site.toml --json | jq '.[] | select(.node == null)'\n  bootfleet leases site.toml --server 127.0.0.1:8080"
)]
pub struct Args {
    /// The cluster spec (TOML).
    spec: std::path::PathBuf,
    /// Print JSON, for scripts.
    #[arg(long)]
    json: bool,
    /// Ask this HOST:PORT instead of the spec's server address and port.
    #[arg(long, value_name = "HOST:PORT")]
    server: Option<String>,
}

pub fn run(args: Args, state_dir: &std::path::Path) -> Result<(), CliError> {
    let spec = super::load_spec(&args.spec)?;
    let addr = args.server.clone().unwrap_or_else(|| spec.api_address());
    let rows: Vec<LeaseRow> = match crate::http::client::get(&addr, "/api/v1/leases") {
        Ok(body) => serde_json::from_str(&body).context("reading the API's answer")?,
        // No server there: the store itself.
        Err(ClientError::Connect { .. }) if args.server.is_none() => {
            let store = crate::store::open(&spec.state, state_dir)?;
            // By MAC, looked up once per lease (a site may hold a million).
            let mut names: std::collections::HashMap<_, String> = store
                .machines
                .list()?
                .into_iter()
                .map(|e| (e.mac, e.name))
                .collect();
            names.extend(spec.nodes.iter().map(|n| (n.mac, n.name.clone())));
            let name = |mac| names.get(&mac).cloned();
            let segment = |ip| spec.segment_of(ip).map(|s| s.name.clone());
            rows(store.leases.listing()?, name, segment)
        }
        Err(e) => return Err(anyhow::Error::from(e).into()),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&rows).expect("plain data serialises")
        );
        return Ok(());
    }
    let now = crate::clock::now_ms() / 1000;
    // The segment column on a site of several.
    let several = spec.segments.len() > 1;
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                r.ip.to_string(),
                r.mac.clone(),
                r.node.clone().unwrap_or_else(|| "-".into()),
                expiry(r.expires, now),
                r.server.clone().unwrap_or_else(|| "-".into()),
            ];
            if several {
                row.insert(1, r.segment.clone().unwrap_or_else(|| "-".into()));
            }
            row
        })
        .collect();
    if several {
        super::print_rows(
            &["ADDRESS", "SEGMENT", "MAC", "NODE", "EXPIRES", "SERVER"],
            &table,
        );
    } else {
        super::print_rows(&["ADDRESS", "MAC", "NODE", "EXPIRES", "SERVER"], &table);
    }
    Ok(())
}

/// `in 3h 12m`, `in 40 s`, `expired 5 min ago`.
fn expiry(at: u64, now: u64) -> String {
    let span = |s: u64| match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    };
    if at >= now {
        format!("in {}", span(at - now))
    } else {
        format!("expired {} ago", span(now - at))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn expiry_reads_as_time_left_or_gone() {
        assert_eq!(super::expiry(100, 60), "in 40 s");
        assert_eq!(super::expiry(100 + 3 * 3600 + 720, 100), "in 3h 12m");
        assert_eq!(super::expiry(100, 400), "expired 5 min ago");
    }
}
