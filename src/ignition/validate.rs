//! The rules `ignition-validate` applies to a 3.3.0 config, checked in
//! memory: clean absolute paths, no path or unit or user given twice,
//! modes that are permission bits, sources that Ignition can fetch (and
//! that the caller allows), well-formed hashes, unit files that parse,
//! and no enabled unit without an `[Install]` section (Ignition warns:
//! enabling it would do nothing).

use std::collections::HashSet;
use std::fmt;

use ignition_config::v3_3::{Config, Resource, Unit};

/// One broken rule, located by its JSON path (`storage.files[2].path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// A warning in `ignition-validate`'s terms (it still fails the
    /// config for bootfleet: a node's config must be clean).
    pub warning: bool,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = if self.warning { "warning" } else { "error" };
        write!(f, "{level}: {}: {}", self.path, self.message)
    }
}

/// Every finding for `config`; `allowed` says whether a non-data URL may
/// be fetched (bootfleet's own configs may name only what it serves).
pub fn validate(config: &Config, allowed: &dyn Fn(&str) -> bool) -> Vec<Finding> {
    let mut v = Rules {
        out: Vec::new(),
        allowed,
    };
    if config.ignition.version.as_deref() != Some(super::VERSION) {
        v.error("ignition.version", format!("must be {}", super::VERSION));
    }
    if let Some(c) = &config.ignition.config {
        for (i, r) in c.merge.iter().flatten().enumerate() {
            v.resource(&format!("ignition.config.merge[{i}]"), r);
        }
        if let Some(r) = &c.replace {
            v.resource("ignition.config.replace", r);
        }
    }
    v.storage(config);
    v.units(config);
    let mut users = HashSet::new();
    for (i, u) in config
        .passwd
        .iter()
        .flat_map(|p| p.users.iter().flatten())
        .enumerate()
    {
        if !users.insert(u.name.as_str()) {
            v.error(
                &format!("passwd.users[{i}].name"),
                format!("user {} is given twice", u.name),
            );
        }
    }
    v.out
}

struct Rules<'a> {
    out: Vec<Finding>,
    allowed: &'a dyn Fn(&str) -> bool,
}

impl Rules<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.out.push(Finding {
            warning: false,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.out.push(Finding {
            warning: true,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn storage(&mut self, config: &Config) {
        let Some(storage) = &config.storage else {
            return;
        };
        let mut seen = HashSet::new();
        let mut node = |rules: &mut Self, at: String, path: &str, mode: Option<i64>| {
            if !clean_absolute(path) {
                rules.error(
                    &format!("{at}.path"),
                    format!("{path:?} is not a clean absolute path"),
                );
            }
            if !seen.insert(path.to_owned()) {
                rules.error(&format!("{at}.path"), format!("{path} is given twice"));
            }
            if let Some(m) = mode.filter(|m| !(0..=0o7777).contains(m)) {
                rules.error(
                    &format!("{at}.mode"),
                    format!("{m} is not a file mode (0 to 4095, 0o7777)"),
                );
            }
        };
        for (i, f) in storage.files.iter().flatten().enumerate() {
            let at = format!("storage.files[{i}]");
            node(self, at.clone(), &f.path, f.mode);
            if let Some(r) = &f.contents {
                self.resource(&format!("{at}.contents"), r);
            }
            for (j, r) in f.append.iter().flatten().enumerate() {
                self.resource(&format!("{at}.append[{j}]"), r);
            }
        }
        for (i, d) in storage.directories.iter().flatten().enumerate() {
            node(self, format!("storage.directories[{i}]"), &d.path, d.mode);
        }
        for (i, l) in storage.links.iter().flatten().enumerate() {
            node(self, format!("storage.links[{i}]"), &l.path, None);
        }
    }

    fn resource(&mut self, at: &str, r: &Resource) {
        let Some(source) = r.source.as_deref() else {
            return;
        };
        let at = format!("{at}.source");
        match source.split_once(':').map(|(scheme, _)| scheme) {
            Some("data") => {
                if super::decode_data_url(source).is_none() {
                    self.error(&at, "not a valid data URL");
                }
            }
            Some("http" | "https" | "tftp" | "s3" | "gs" | "arn") => {
                if !(self.allowed)(source) {
                    self.error(&at, format!("{source} is not served by bootfleet"));
                }
            }
            _ => self.error(&at, format!("{source:?}: unsupported URL scheme")),
        }
        if let Some(hash) = r.verification.as_ref().and_then(|v| v.hash.as_deref()) {
            let ok = match hash.split_once('-') {
                Some(("sha512", hex)) => hex.len() == 128,
                Some(("sha256", hex)) => hex.len() == 64,
                _ => false,
            } && hash
                .split_once('-')
                .is_some_and(|(_, h)| h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                self.error(
                    &at.replace(".source", ".verification.hash"),
                    format!("{hash:?} is not sha512-<128 hex digits> or sha256-<64>"),
                );
            }
        }
    }

    fn units(&mut self, config: &Config) {
        let mut seen = HashSet::new();
        for (i, u) in config
            .systemd
            .iter()
            .flat_map(|s| s.units.iter().flatten())
            .enumerate()
        {
            let at = format!("systemd.units[{i}]");
            if !seen.insert(u.name.as_str()) {
                self.error(
                    &format!("{at}.name"),
                    format!("unit {} is given twice", u.name),
                );
            }
            self.unit(&at, u);
        }
    }

    fn unit(&mut self, at: &str, u: &Unit) {
        const KINDS: [&str; 11] = [
            "service",
            "socket",
            "device",
            "mount",
            "automount",
            "swap",
            "target",
            "path",
            "timer",
            "slice",
            "scope",
        ];
        let suffix_ok = u
            .name
            .rsplit_once('.')
            .is_some_and(|(stem, kind)| !stem.is_empty() && KINDS.contains(&kind));
        if !suffix_ok || u.name.contains('/') {
            self.error(
                &format!("{at}.name"),
                format!(
                    "{:?} is not a unit name (name.service, .socket, .target, ...)",
                    u.name
                ),
            );
        }
        let Some(contents) = &u.contents else {
            return;
        };
        match sections(contents) {
            Err(line) => self.error(
                &format!("{at}.contents"),
                format!(
                    "line {line} of {} is not a section, a key=value or a comment",
                    u.name
                ),
            ),
            Ok(found) => {
                if u.enabled == Some(true) && !found.iter().any(|s| s == "Install") {
                    self.warn(
                        &format!("{at}.contents"),
                        format!(
                            "{} is enabled but has no [Install] section, so enabling it does nothing",
                            u.name
                        ),
                    );
                }
            }
        }
        let mut dropins = HashSet::new();
        for (j, d) in u.dropins.iter().flatten().enumerate() {
            let at = format!("{at}.dropins[{j}].name");
            if !d.name.ends_with(".conf") || d.name.contains('/') {
                self.error(
                    &at,
                    format!("{:?} must be a file name ending in .conf", d.name),
                );
            }
            if !dropins.insert(d.name.as_str()) {
                self.error(&at, format!("drop-in {} is given twice", d.name));
            }
        }
    }
}

/// `/a/b`, not `a/b`, `/a//b`, `/a/../b`, `/a/./b` or `/a/`.
fn clean_absolute(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && rest
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

/// The section names of a unit file, or the 1-based number of the first
/// line that is none of: blank, comment, `[Section]`, `Key=value`, or the
/// continuation of a line ending in a backslash.
fn sections(text: &str) -> Result<Vec<String>, usize> {
    let mut out = Vec::new();
    let mut continued = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        let was_continued = continued;
        continued = t.ends_with('\\');
        if was_continued || t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            out.push(name.to_owned());
        } else if out.is_empty() || t.split_once('=').is_none_or(|(k, _)| k.trim().is_empty()) {
            return Err(i + 1);
        }
    }
    Ok(out)
}
