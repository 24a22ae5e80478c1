//! `bootfleet images stage`: boot loaders from the system's packages.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::images::{ImagesError, Staged, stage};

/// Boot loaders and images for the images directory.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet images stage\n  bootfleet images stage --images /var/lib/bootfleet/images"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Copy iPXE (undionly.kpxe, ipxe.efi, snponly.efi) and pxelinux
    /// (pxelinux.0, lpxelinux.0, ldlinux.c32) from the system's packages
    /// into the images directory.
    Stage {
        /// The images directory `serve` uses.
        #[arg(long, default_value = "images", value_name = "DIR")]
        images: PathBuf,
    },
}

pub fn run(args: Args) -> Result<(), CliError> {
    match args.command {
        Command::Stage { images } => stage_into(&images),
    }
}

fn stage_into(images: &Path) -> Result<(), CliError> {
    let staged = stage(Path::new("/"), images).map_err(|e| match e {
        e @ ImagesError::NothingFound => CliError::BadInput(e.to_string()),
        e => CliError::Runtime(e.into()),
    })?;
    for s in staged {
        match s {
            Staged::Copied { name, bytes } => {
                println!("{name}: {bytes} bytes -> {}", images.join(name).display())
            }
            Staged::Missing { name, package } => {
                println!("{name}: not on this system (package {package})")
            }
        }
    }
    Ok(())
}
