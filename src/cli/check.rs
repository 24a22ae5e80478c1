//! `bootfleet check SPEC`: validate a spec and render everything in memory.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::inventory::SiteKey;

/// Check a cluster spec: parse it, apply every rule, render every file in
/// memory and validate each cloud-config. Writes nothing.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet check examples/rack.toml\n  bootfleet check -q site.toml && echo ok\n\nExit status: 0 valid (warnings are printed), 2 invalid, 1 could not run."
)]
pub struct Args {
    /// The cluster spec (TOML).
    spec: PathBuf,
}

pub fn run(args: Args, state_dir: &Path) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    // Checked without the network and writing nothing: the site key is
    // read from the state directory if there is one, else made up (tokens
    // only shape URLs here), whatever the spec's [state] says.
    let spec = super::load_spec(&args.spec)?;
    let key = crate::store::embedded::peek_key(state_dir)?
        .map_or_else(SiteKey::generate, SiteKey::from_bytes);
    let p = crate::prepare::Prepared::with_key(spec, key)?;
    tracing::debug!(elapsed = ?started.elapsed(), "spec checked, inventory built, templates compiled");
    let files = p.all_files()?;
    tracing::debug!(elapsed = ?started.elapsed(), files = files.len(), "every file rendered and checked");
    let spec = &p.spec;
    let etcd = spec.etcd_members().count();
    let workers = spec.workers().count();
    let browsers = spec.load.as_ref().map_or(0, |l| l.browsers);
    println!(
        "{}: ok: {} nodes ({etcd} etcd, {workers} workers), {browsers} browsers, {} files",
        args.spec.display(),
        spec.nodes.len(),
        files.len()
    );
    Ok(())
}
