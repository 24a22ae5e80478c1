//! The built-in templates (compiled into the binary from `templates/`) and
//! the user's override directory.

use std::path::{Path, PathBuf};

/// Every built-in template: its name and text. A file with the same
/// relative path in the user's template directory replaces it.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "cloud-config.yml",
        include_str!("../../templates/cloud-config.yml"),
    ),
    (
        "files/environment",
        include_str!("../../templates/files/environment"),
    ),
    (
        "files/browser-run",
        include_str!("../../templates/files/browser-run"),
    ),
    (
        "files/viewer-publish",
        include_str!("../../templates/files/viewer-publish"),
    ),
    (
        "units/phone-home.service",
        include_str!("../../templates/units/phone-home.service"),
    ),
    (
        "units/etcd-member.service",
        include_str!("../../templates/units/etcd-member.service"),
    ),
    (
        "units/fleet.socket",
        include_str!("../../templates/units/fleet.socket"),
    ),
    (
        "units/fleet.service",
        include_str!("../../templates/units/fleet.service"),
    ),
    (
        "units/browser@.service",
        include_str!("../../templates/units/browser@.service"),
    ),
    (
        "units/viewer@.service",
        include_str!("../../templates/units/viewer@.service"),
    ),
    (
        "units/bootfleet-load.target",
        include_str!("../../templates/units/bootfleet-load.target"),
    ),
    (
        "units/browser-image.service",
        include_str!("../../templates/units/browser-image.service"),
    ),
    ("boot/cmdline", include_str!("../../templates/boot/cmdline")),
    (
        "boot/pxelinux.cfg",
        include_str!("../../templates/boot/pxelinux.cfg"),
    ),
    (
        "boot/pxelinux-default.cfg",
        include_str!("../../templates/boot/pxelinux-default.cfg"),
    ),
    (
        "boot/node.ipxe",
        include_str!("../../templates/boot/node.ipxe"),
    ),
    (
        "boot/boot.ipxe",
        include_str!("../../templates/boot/boot.ipxe"),
    ),
];

/// A template override read from the user's directory.
#[derive(Debug, Clone)]
pub struct Override {
    /// The built-in name it replaces (`units/fleet.service`).
    pub name: String,
    /// Where it was read from, for error messages.
    pub path: PathBuf,
    pub source: String,
}

/// Reads every file under `dir` as an override. Returns the overrides, or
/// the relative path of a file that matches no built-in template (a typo
/// that would otherwise be silently ignored).
pub fn read_overrides(dir: &Path) -> Result<Vec<Override>, ReadOverrideError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| ReadOverrideError::Io(d.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ReadOverrideError::Io(d.clone(), e))?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            if !BUILTIN.iter().any(|(n, _)| *n == name) {
                return Err(ReadOverrideError::Unknown(path));
            }
            let source = std::fs::read_to_string(&path)
                .map_err(|e| ReadOverrideError::Io(path.clone(), e))?;
            out.push(Override { name, path, source });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Why the override directory could not be read.
#[derive(Debug)]
pub enum ReadOverrideError {
    /// A file or directory could not be read.
    Io(PathBuf, std::io::Error),
    /// A file whose name is not a built-in template.
    Unknown(PathBuf),
}

/// The names of all built-in templates, for help texts.
pub fn builtin_names() -> String {
    BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}
