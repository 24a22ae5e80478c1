//! `bootfleet check SPEC`: validate a spec and render everything in memory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::CliError;
use crate::inventory::{Inventory, SiteKey};
use crate::render::Renderer;

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
    let loaded = crate::spec::load(&args.spec)?;
    tracing::debug!(elapsed = ?started.elapsed(), "spec loaded and checked");
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let spec = loaded.spec;
    // Tokens only shape URLs here; a missing key is not created by a check.
    let key = SiteKey::load(state_dir)
        .context("reading the site key")?
        .unwrap_or_else(SiteKey::generate);
    let inv = Inventory::build(&spec, &key);
    let renderer = Renderer::new(spec.templates_dir.as_deref())?;
    tracing::debug!(elapsed = ?started.elapsed(), "inventory built, templates compiled");
    let files = renderer.all_files(&spec, &inv)?;
    tracing::debug!(elapsed = ?started.elapsed(), files = files.len(), "every file rendered and checked");
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
