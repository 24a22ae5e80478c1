//! `bootfleet render SPEC --out DIR | --node NAME`: write generated files.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::render::RenderError;

/// Render every node's boot files and config (cloud-config or Ignition), and the cluster's fleet
/// units, for review or for another DHCP/TFTP server. Everything is rendered
/// and checked before the first file is written.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet render examples/rack.toml --out out/\n  bootfleet render examples/rack.toml --node etcd0 > etcd0.yml\n\nWritten under DIR: cloud-config/<node>.yml (ignition/<node>.ign with [boot] config =\n\"ignition\"), pxelinux.cfg/01-<mac>, ipxe/<node>.ipxe,\nboot.ipxe, pxelinux.cfg/default, units/ (with a [load]). Files an earlier render\nwrote that the spec no longer produces are removed."
)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["out", "node"])))]
pub struct Args {
    /// The cluster spec (TOML).
    spec: PathBuf,
    /// Write every file under this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print this node's cloud-config (or Ignition config) to standard output instead.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
}

pub fn run(args: Args, state_dir: &Path) -> Result<(), CliError> {
    let (p, store) = super::prepare(&args.spec, state_dir)?;
    let (_, output) = p.rendered_keeping_key::<_, CliError>(&*store.keys, |p| {
        Ok(match &args.node {
            Some(name) => {
                let node = p
                    .inventory
                    .get(name)
                    .ok_or_else(|| RenderError::UnknownNode(name.clone()))?;
                Output::Stdout(p.renderer.node_config(&p.spec, &p.inventory, node)?)
            }
            None => Output::Files(p.all_files()?),
        })
    })?;
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
