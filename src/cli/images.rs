//! `bootfleet images stage`: boot loaders from the system's packages.
//! `bootfleet images fetch flatcar`: a Flatcar release's PXE kernel and
//! initrd, verified against its signed digests.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::images::fetch::{default_mirror, fetch_flatcar, get_text};
use crate::images::verify::{FLATCAR_KEY_FINGERPRINT, TrustedKey};
use crate::images::{ImagesError, Staged, stage};

/// Boot loaders and images for the images directory.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet images stage\n  bootfleet images stage --images /var/lib/bootfleet/images\n  bootfleet images fetch flatcar --channel stable\n  bootfleet images testos\n  bootfleet images testos --systemd\n  bootfleet images fetch flatcar --version 4081.2.0 --key Flatcar_Image_Signing_Key.asc"
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
    /// Download an OS's PXE kernel and initrd into
    /// images/flatcar/<version>/, verified against the release's signed
    /// SHA512 digests before anything is kept.
    Fetch(FetchArgs),
    /// Build the test OS into images/testos/ (`[boot] testos = true`):
    /// Debian's kernel and a busybox initramfs that fetches its
    /// cloud-config (or runs Debian's Ignition on its Ignition config),
    /// prints it on the serial console, phones home and powers off.
    /// Proves a PXE path before Flatcar is fetched.
    Testos {
        /// The images directory `serve` uses.
        #[arg(long, default_value = "images", value_name = "DIR")]
        images: PathBuf,
        /// Build the flavour that boots Debian's systemd after Ignition,
        /// so the units Ignition enabled run, into images/testos-systemd/
        /// (`kernel = "testos-systemd/vmlinuz"`, `initrd =
        /// "testos-systemd/initrd.img"`, with `config = "ignition"`).
        #[arg(long)]
        systemd: bool,
    },
}

/// Which OS `fetch` knows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Os {
    Flatcar,
}

#[derive(Debug, clap::Args)]
#[command(disable_version_flag = true)]
struct FetchArgs {
    /// The OS (only Flatcar Container Linux today).
    os: Os,
    /// Release channel: stable, beta, alpha or lts.
    #[arg(long, default_value = "stable")]
    channel: String,
    /// Release version, or `current` for the channel's newest.
    #[arg(
        long = "version",
        id = "release",
        default_value = "current",
        value_name = "VERSION"
    )]
    release: String,
    /// The images directory `serve` uses.
    #[arg(long, default_value = "images", value_name = "DIR")]
    images: PathBuf,
    /// Where releases are published (default: the channel's Flatcar
    /// release server); VERSION/FILE is appended.
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// An armored public key to trust instead of Flatcar's image signing
    /// key (fetched from --key-url and checked against its pinned
    /// fingerprint).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Where Flatcar's image signing key is published.
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://www.flatcar.org/security/image-signing-key/Flatcar_Image_Signing_Key.asc"
    )]
    key_url: String,
}

pub fn run(args: Args) -> Result<(), CliError> {
    match args.command {
        Command::Stage { images } => stage_into(&images),
        Command::Fetch(a) => fetch(&a),
        Command::Testos { images, systemd } => {
            use crate::images::testos::{Flavour, build};
            let flavour = if systemd {
                Flavour::Systemd
            } else {
                Flavour::Busybox
            };
            let dir = build(&images, flavour).map_err(anyhow::Error::from)?;
            let how = match flavour {
                Flavour::Busybox => "`testos = true`".to_owned(),
                Flavour::Systemd => format!(
                    "`kernel = \"{0}/vmlinuz\"`, `initrd = \"{0}/initrd.img\"` and `config = \"ignition\"`",
                    dir.file_name().unwrap_or_default().to_string_lossy()
                ),
            };
            println!(
                "test OS in {} (boot it with {how} under [boot])",
                dir.display()
            );
            Ok(())
        }
    }
}

fn fetch(a: &FetchArgs) -> Result<(), CliError> {
    let Os::Flatcar = a.os;
    let bad = |e: ImagesError| match e {
        e @ (ImagesError::Write { .. }
        | ImagesError::Http { .. }
        | ImagesError::HttpRead { .. }
        | ImagesError::NotFound { .. }
        | ImagesError::NoVersion { .. }) => CliError::Runtime(e.into()),
        e => CliError::BadInput(crate::error_chain(&e)),
    };
    let key = match &a.key {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::BadInput(format!("cannot read the key {}: {e}", path.display()))
            })?;
            TrustedKey::parse(&text, None).map_err(bad)?
        }
        None => {
            let text = get_text(&a.key_url).map_err(bad)?;
            TrustedKey::parse(&text, Some(FLATCAR_KEY_FINGERPRINT)).map_err(bad)?
        }
    };
    let mirror = a
        .mirror
        .clone()
        .unwrap_or_else(|| default_mirror(&a.channel));
    eprintln!("trusting key {}", key.fingerprint());
    let got = fetch_flatcar(&mirror, &a.release, &key, &a.images).map_err(bad)?;
    for (name, bytes) in &got.files {
        println!(
            "{name}: {bytes} bytes, SHA512 matches the signed digests -> {}",
            got.dir.join(name).display()
        );
    }
    println!(
        "Flatcar {} is ready; in the spec's [boot]: flatcar = \"{}\"",
        got.version, got.version
    );
    Ok(())
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
