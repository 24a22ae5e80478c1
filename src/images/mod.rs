//! What goes into the images directory, where TFTP and `/assets/` serve
//! it: boot loaders staged from the system's packages, and Flatcar's PXE
//! kernel and initrd fetched and verified ([`fetch`], [`verify`]).

pub mod fetch;
pub mod testos;
pub mod verify;

use std::path::{Path, PathBuf};

/// Why staging failed.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error(
        "the test OS could not be built: {0}\n  help: it needs apt-get with Debian's package lists (apt-get update), dpkg, gzip, xz-utils and zstd"
    )]
    Testos(String),
    #[error("the test OS could not be built: bash could not be started")]
    TestosSpawn(#[source] std::io::Error),
    #[error(
        "no boot loader found on this system\n  help: install them first (Debian: apt-get install ipxe pxelinux syslinux-common)"
    )]
    NothingFound,
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{url}: 404 not found: check the channel and version (or --mirror)")]
    NotFound { url: String },
    #[error("{url}")]
    Http {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{url}: reading the answer")]
    HttpRead {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: no FLATCAR_VERSION= line")]
    NoVersion { url: String },
    #[error(
        "the signing key cannot be read\n  help: pass the release's public key (armored) with --key"
    )]
    KeyUnreadable(#[source] pgp::errors::Error),
    #[error(
        "the signing key's self-signatures do not hold\n  help: pass the release's public key (armored) with --key"
    )]
    KeySelfSignatures(#[source] pgp::errors::Error),
    #[error(
        "the key's fingerprint is {got}, not the pinned {want}\n  help: the key was not the release signing key; pass a key you trust with --key"
    )]
    KeyNotPinned { got: String, want: String },
    #[error(
        "the signed digests of {file} do not verify: the signature cannot be read\n  help: nothing was kept; check the mirror and the key"
    )]
    SignatureUnreadable {
        file: String,
        #[source]
        source: pgp::errors::Error,
    },
    #[error(
        "the signed digests of {file} do not verify: {why}\n  help: nothing was kept; check the mirror and the key"
    )]
    BadSignature { file: String, why: &'static str },
    #[error("the signed digests have no SHA512 sum for {file}; nothing was kept")]
    NoDigest { file: String },
    #[error(
        "{file} does not match its signed SHA512 sum (expected {want}, got {got}); nothing was kept\n  help: the download was damaged or tampered with; try again or another mirror"
    )]
    DigestMismatch {
        file: String,
        want: String,
        got: String,
    },
}

/// A loader: the name served, where Debian's packages put it, and which
/// package that is.
pub const LOADERS: &[(&str, &str, &str)] = &[
    ("undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe", "ipxe"),
    ("ipxe.efi", "/usr/lib/ipxe/ipxe.efi", "ipxe"),
    ("snponly.efi", "/usr/lib/ipxe/snponly.efi", "ipxe"),
    ("pxelinux.0", "/usr/lib/PXELINUX/pxelinux.0", "pxelinux"),
    ("lpxelinux.0", "/usr/lib/PXELINUX/lpxelinux.0", "pxelinux"),
    (
        "ldlinux.c32",
        "/usr/lib/syslinux/modules/bios/ldlinux.c32",
        "syslinux-common",
    ),
];

/// What happened to one loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    Copied {
        name: &'static str,
        bytes: u64,
    },
    Missing {
        name: &'static str,
        package: &'static str,
    },
}

/// Copies every loader found under `system_root` (`/` normally) into
/// `images`, replacing older copies atomically. Missing ones are reported,
/// not fatal, unless none is found.
pub fn stage(system_root: &Path, images: &Path) -> Result<Vec<Staged>, ImagesError> {
    let write_err = |path: &Path, source| ImagesError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(images).map_err(|e| write_err(images, e))?;
    let mut out = Vec::new();
    for (name, from, package) in LOADERS {
        let src = system_root.join(from.trim_start_matches('/'));
        let Ok(data) = std::fs::read(&src) else {
            out.push(Staged::Missing { name, package });
            continue;
        };
        let dest = images.join(name);
        crate::durable::write(&dest, &data).map_err(|e| write_err(&dest, e))?;
        out.push(Staged::Copied {
            name,
            bytes: data.len() as u64,
        });
    }
    if out.iter().all(|s| matches!(s, Staged::Missing { .. })) {
        return Err(ImagesError::NothingFound);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_loaders_are_copied_and_missing_ones_reported() {
        let sys = tempfile::tempdir().unwrap();
        let ipxe = sys.path().join("usr/lib/ipxe");
        std::fs::create_dir_all(&ipxe).unwrap();
        std::fs::write(ipxe.join("undionly.kpxe"), b"kpxe").unwrap();
        std::fs::write(ipxe.join("ipxe.efi"), b"efi!").unwrap();
        let images = sys.path().join("images");
        let r = stage(sys.path(), &images).unwrap();
        assert!(r.contains(&Staged::Copied {
            name: "undionly.kpxe",
            bytes: 4
        }));
        assert!(r.contains(&Staged::Missing {
            name: "pxelinux.0",
            package: "pxelinux"
        }));
        assert_eq!(std::fs::read(images.join("ipxe.efi")).unwrap(), b"efi!");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            stage(empty.path(), &images),
            Err(ImagesError::NothingFound)
        ));
    }
}
