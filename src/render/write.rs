//! Writing rendered files to an output directory, safely: each file is
//! written to a temporary name and renamed into place, and files that an
//! earlier render wrote but this one no longer produces are removed (a
//! stale `pxelinux.cfg/01-<mac>` would keep booting a machine that left the
//! spec). Only files listed in the previous manifest are ever removed.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::{File, RenderError};

/// The list of files the last render wrote, inside the output directory.
pub const MANIFEST: &str = ".bootfleet-manifest";

/// Writes `files` under `out`; returns how many stale files were removed.
pub fn write(out: &Path, files: &[File]) -> Result<usize, RenderError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RenderError::Io { path, source }
    };
    fs::create_dir_all(out).map_err(io(out))?;
    let manifest_path = out.join(MANIFEST);
    let previous: BTreeSet<String> = match fs::read_to_string(&manifest_path) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(io(&manifest_path)(e)),
    };
    let mut dirs = BTreeSet::new();
    for f in files {
        if let Some(parent) = Path::new(&f.path).parent() {
            dirs.insert(out.join(parent));
        }
    }
    for d in &dirs {
        fs::create_dir_all(d).map_err(io(d))?;
    }
    // Many small files: spread the writes over the cores.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = files.len().div_ceil(threads).max(256);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    for f in part {
                        let path = out.join(&f.path);
                        crate::durable::write(&path, f.content.as_bytes())
                            .map_err(|source| RenderError::Io { path, source })?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("write thread panicked"))
    })?;
    let current: BTreeSet<String> = files.iter().map(|f| f.path.clone()).collect();
    let mut removed = 0;
    for stale in previous.difference(&current) {
        // The manifest is ours, but never follow a path out of `out`.
        if stale.split('/').any(|p| p == ".." || p.is_empty()) {
            continue;
        }
        match fs::remove_file(out.join(stale)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&out.join(stale))(e)),
        }
    }
    let listing: String = current.iter().map(|p| format!("{p}\n")).collect();
    crate::durable::write(&manifest_path, listing.as_bytes()).map_err(io(&manifest_path))?;
    Ok(removed)
}
