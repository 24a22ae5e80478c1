//! `bootfleet render SPEC --out DIR | --node NAME`: write generated files.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::CliError;
use crate::inventory::{Inventory, SiteKey};
use crate::render::{RenderError, Renderer};

/// Render every node's boot files and cloud-config, and the cluster's fleet
/// units, for review or for another DHCP/TFTP server. Everything is rendered
/// and checked before the first file is written.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet render examples/rack.toml --out out/\n  bootfleet render examples/rack.toml --node etcd0 > etcd0.yml\n\nWritten under DIR: cloud-config/<node>.yml, pxelinux.cfg/01-<mac>, ipxe/<node>.ipxe,\nboot.ipxe, pxelinux.cfg/default, units/ (with a [load]). Files an earlier render\nwrote that the spec no longer produces are removed."
)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["out", "node"])))]
pub struct Args {
    /// The cluster spec (TOML).
    spec: PathBuf,
    /// Write every file under this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print this node's cloud-config to standard output instead.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
}

pub fn run(args: Args, state_dir: &Path) -> Result<(), CliError> {
    let loaded = crate::spec::load(&args.spec)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let spec = loaded.spec;
    let existing = SiteKey::load(state_dir).context("reading the site key")?;
    let key = existing.clone().unwrap_or_else(SiteKey::generate);
    let inv = Inventory::build(&spec, &key);
    let renderer = Renderer::new(spec.templates_dir.as_deref())?;
    let output = match &args.node {
        Some(name) => {
            let node = inv
                .get(name)
                .ok_or_else(|| RenderError::UnknownNode(name.clone()))?;
            Output::Stdout(renderer.cloud_config(&spec, &inv, node)?)
        }
        None => Output::Files(renderer.all_files(&spec, &inv)?),
    };
    if existing.is_none() {
        let path = key.save(state_dir).context("saving the new site key")?;
        tracing::info!(path = %path.display(), "created the site key that node tokens derive from");
    }
    match output {
        Output::Stdout(text) => print!("{text}"),
        Output::Files(files) => {
            let out = args.out.as_deref().expect("clap requires --out or --node");
            let removed = crate::render::write(out, &files)?;
            eprintln!(
                "wrote {} files to {} ({removed} stale files removed)",
                files.len(),
                out.display()
            );
        }
    }
    Ok(())
}

enum Output {
    Stdout(String),
    Files(Vec<crate::render::File>),
}
