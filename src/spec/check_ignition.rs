//! `[boot] config` (cloud-config or Ignition) and `[ignition] merge`, the
//! user's own Ignition configs: each is read, parsed and hashed here, so a
//! file that Ignition would refuse stops the spec with the line naming it.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha512};
use toml::Spanned;

use super::check::Checker;
use super::{ConfigFormat, MergeFile, wire};

/// `[boot] config`: `None` (and an error) for an unknown value.
pub(super) fn format(c: &mut Checker, value: Option<&Spanned<String>>) -> Option<ConfigFormat> {
    match value.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "cloud-config")) => Some(ConfigFormat::CloudConfig),
        Some((_, "ignition")) => Some(ConfigFormat::Ignition),
        Some((v, other)) => {
            c.error(
                v.span(),
                format!("unknown config format `{other}`"),
                "use \"cloud-config\" (coreos-cloudinit, the default) or \"ignition\" (Ignition spec 3.3.0, what Flatcar provisions with)",
            );
            None
        }
    }
}

/// `[ignition] merge`: every file read, parsed and hashed, or `None` after
/// an error. `templates` is the `[templates] dir` line, if any: its
/// `cloud-config.yml` override means nothing to an Ignition config.
pub(super) fn merge(
    c: &mut Checker,
    w: Option<&wire::Ignition>,
    format: Option<ConfigFormat>,
    templates: Option<(&Path, Range<usize>)>,
) -> Option<Vec<MergeFile>> {
    let format = format?;
    if format == ConfigFormat::Ignition {
        if let Some((dir, span)) = templates.filter(|(d, _)| d.join("cloud-config.yml").exists()) {
            c.error(
                span,
                format!(
                    "{} overrides cloud-config.yml, which Ignition configs do not use",
                    dir.display()
                ),
                "put those additions in an Ignition config listed in `[ignition] merge`, or use `config = \"cloud-config\"` under [boot]",
            );
            return None;
        }
    }
    let Some(w) = w else {
        return Some(Vec::new());
    };
    if format != ConfigFormat::Ignition && !w.merge.is_empty() {
        c.error(
            w.merge[0].span(),
            "`[ignition] merge` applies to Ignition configs, and this spec renders cloud-configs",
            "add `config = \"ignition\"` under [boot], or remove [ignition]",
        );
        return None;
    }
    let base = c.path.parent().unwrap_or(Path::new(".")).to_owned();
    let mut out: Vec<MergeFile> = Vec::new();
    let mut ok = true;
    for entry in &w.merge {
        let path = base.join(entry.get_ref());
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                c.error(
                    entry.span(),
                    format!("cannot read {}: {e}", path.display()),
                    "fix the path (relative paths start at the spec file's directory)",
                );
                ok = false;
                continue;
            }
        };
        if let Err(e) = crate::ignition::check_merge(&bytes) {
            c.error(
                entry.span(),
                format!("{} is not an Ignition config nodes can merge: {e}", path.display()),
                "write an Ignition config (JSON) of spec version 3.0.0 to 3.3.0, and check it with `ignition-validate FILE`",
            );
            ok = false;
            continue;
        }
        let hash = format!("sha512-{}", hex::encode(Sha512::digest(&bytes)));
        if out.iter().any(|m| m.hash == hash) {
            c.error(
                entry.span(),
                format!("{} is merged twice", path.display()),
                "list each file once",
            );
            ok = false;
            continue;
        }
        out.push(MergeFile {
            path,
            bytes: Arc::from(bytes),
            hash,
        });
    }
    ok.then_some(out)
}
