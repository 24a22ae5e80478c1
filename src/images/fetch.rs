//! Downloading a Flatcar release's PXE kernel and initrd, verified against
//! the release's signed digests before anything is kept: both files go to
//! temporary names beside their final place, are hashed (SHA512) as they
//! arrive, and are renamed into `images/flatcar/<version>/` only when both
//! match the sums the trusted key signed.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha512};

use super::ImagesError;
use super::verify::{TrustedKey, sha512_for, signed_digests};

/// The PXE kernel and initrd of a Flatcar release.
pub const PXE_FILES: [&str; 2] = [
    "flatcar_production_pxe.vmlinuz",
    "flatcar_production_pxe_image.cpio.gz",
];

/// Where Flatcar publishes a channel's releases for amd64.
pub fn default_mirror(channel: &str) -> String {
    format!("https://{channel}.release.flatcar-linux.net/amd64-usr")
}

/// What was kept.
#[derive(Debug)]
pub struct Fetched {
    pub version: String,
    pub dir: PathBuf,
    /// Name and size of each file.
    pub files: Vec<(String, u64)>,
}

/// Small files (version, digests, keys) are read whole, up to this size.
const SMALL: u64 = 1 << 20;

/// A GET, with errors that name the URL.
fn get(url: &str) -> Result<ureq::http::Response<ureq::Body>, ImagesError> {
    ureq::get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(404) => ImagesError::NotFound {
            url: url.to_owned(),
        },
        e => ImagesError::Http {
            url: url.to_owned(),
            source: Box::new(e),
        },
    })
}

/// A small text file.
pub fn get_text(url: &str) -> Result<String, ImagesError> {
    let mut r = get(url)?;
    r.body_mut()
        .with_config()
        .limit(SMALL)
        .read_to_string()
        .map_err(|e| ImagesError::Http {
            url: url.to_owned(),
            source: Box::new(e),
        })
}

/// The version a `version.txt` names (`FLATCAR_VERSION=...`).
pub fn version_in(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("FLATCAR_VERSION="))
        .map(|v| v.trim().to_owned())
        .filter(|v| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        })
}

/// Removes the temporary files unless they were kept.
struct Parts(Vec<PathBuf>);

impl Drop for Parts {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// Fetches `version` (`current` asks the mirror which one that is) from
/// `mirror` into `images/flatcar/<version>/`, trusting only `key`.
pub fn fetch_flatcar(
    mirror: &str,
    version: &str,
    key: &TrustedKey,
    images: &Path,
) -> Result<Fetched, ImagesError> {
    let mirror = mirror.trim_end_matches('/');
    let version = if version == "current" {
        let url = format!("{mirror}/current/version.txt");
        version_in(&get_text(&url)?).ok_or(ImagesError::NoVersion { url })?
    } else {
        version.to_owned()
    };
    let base = format!("{mirror}/{version}");
    let dir = images.join("flatcar").join(&version);
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ImagesError::Write { path, source }
    };
    fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let mut parts = Parts(Vec::new());
    let mut files = Vec::new();
    for name in PXE_FILES {
        let asc = get_text(&format!("{base}/{name}.DIGESTS.asc"))?;
        let detached = if asc.contains("-----BEGIN PGP SIGNED MESSAGE-----") {
            None
        } else {
            Some(get_text(&format!("{base}/{name}.DIGESTS"))?)
        };
        let digests = signed_digests(key, &asc, detached.as_deref(), name)?;
        let want = sha512_for(&digests, name).ok_or_else(|| ImagesError::NoDigest {
            file: name.to_owned(),
        })?;
        let part = dir.join(format!(".{name}.part"));
        parts.0.push(part.clone());
        let (got, bytes) = download(&format!("{base}/{name}"), &part, name)?;
        if got != want {
            return Err(ImagesError::DigestMismatch {
                file: name.to_owned(),
                want: hex::encode(want),
                got: hex::encode(got),
            });
        }
        files.push((name.to_owned(), bytes));
    }
    for (part, name) in parts.0.iter().zip(PXE_FILES) {
        let to = dir.join(name);
        crate::durable::rename(part, &to).map_err(write_err(&to))?;
    }
    parts.0.clear();
    Ok(Fetched {
        version,
        dir,
        files,
    })
}

/// Streams `url` into `to` (synced), hashing as it goes, with a progress
/// bar on a terminal; returns the SHA512 and the size.
fn download(url: &str, to: &Path, name: &str) -> Result<([u8; 64], u64), ImagesError> {
    let mut r = get(url)?;
    let len = r.body().content_length();
    let bar =
        indicatif::ProgressBar::with_draw_target(len, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_owned());
    let mut body = r.body_mut().as_reader();
    let write_err = |source| ImagesError::Write {
        path: to.to_owned(),
        source,
    };
    let mut out = fs::File::create(to).map_err(write_err)?;
    let mut hash = Sha512::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|source| ImagesError::HttpRead {
                url: url.to_owned(),
                source,
            })?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(write_err)?;
        total += n as u64;
        bar.inc(n as u64);
    }
    out.sync_all().map_err(write_err)?;
    bar.finish_and_clear();
    Ok((hash.finalize().into(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_comes_from_version_txt_and_must_be_a_plain_word() {
        let txt = "FLATCAR_BUILD=4081\nFLATCAR_VERSION=4081.2.0\nFLATCAR_VERSION_ID=4081.2.0\n";
        assert_eq!(version_in(txt).as_deref(), Some("4081.2.0"));
        assert_eq!(version_in("FLATCAR_VERSION=../../etc\n"), None);
        assert_eq!(version_in("nothing\n"), None);
    }
}
