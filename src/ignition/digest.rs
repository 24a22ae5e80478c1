//! What a node looks like once Ignition applied a config, as lines a
//! test OS can print after looking at its own disk (see
//! `src/images/testos.sh`): a test compares the two.
//!
//! - `file PATH MODE SHA256`: every regular file Ignition wrote, units
//!   under `/etc/systemd/system/` and SSH keys under
//!   `/home/USER/.ssh/authorized_keys.d/ignition` included
//! - `enabled UNIT`: a unit Ignition enabled (its preset file)
//! - `user NAME`, `group NAME GROUP`, `password NAME SHA256`: logins
//!
//! Sorted bytewise, as `LC_ALL=C sort` does.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::Config;

/// The lines for `configs` applied in order (a later config's file, unit
/// or user replaces an earlier one of the same name, as merging does).
pub fn expected(configs: &[&Config]) -> Vec<String> {
    let mut files: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    let mut enabled: BTreeMap<String, bool> = BTreeMap::new();
    let mut users = BTreeMap::new();
    for config in configs {
        for f in config.storage.iter().flat_map(|s| s.files.iter().flatten()) {
            let bytes = f
                .contents
                .as_ref()
                .and_then(|r| r.source.as_deref())
                .and_then(super::decode_data_url)
                .unwrap_or_default();
            let mode = f.mode.map_or(0o644, |m| m as u32);
            files.insert(f.path.clone(), (mode, bytes));
        }
        for u in config.systemd.iter().flat_map(|s| s.units.iter().flatten()) {
            if let Some(text) = &u.contents {
                let path = format!("/etc/systemd/system/{}", u.name);
                files.insert(path, (0o644, text.clone().into_bytes()));
            }
            if let Some(on) = u.enabled {
                enabled.insert(u.name.clone(), on);
            }
        }
        for u in config.passwd.iter().flat_map(|p| p.users.iter().flatten()) {
            users.insert(u.name.clone(), u.clone());
        }
    }
    let mut out = Vec::new();
    for (name, u) in &users {
        out.push(format!("user {name}"));
        for g in u.groups.iter().flatten() {
            out.push(format!("group {name} {g}"));
        }
        if let Some(hash) = &u.password_hash {
            out.push(format!("password {name} {}", sha256(hash.as_bytes())));
        }
        let keys = u.ssh_authorized_keys.iter().flatten();
        let text: String = keys.map(|k| format!("{k}\n")).collect();
        if !text.is_empty() {
            let path = format!("/home/{name}/.ssh/authorized_keys.d/ignition");
            files.insert(path, (0o600, text.into_bytes()));
        }
    }
    for (path, (mode, bytes)) in &files {
        out.push(format!("file {path} {mode:o} {}", sha256(bytes)));
    }
    for (unit, on) in &enabled {
        if *on {
            out.push(format!("enabled {unit}"));
        }
    }
    out.sort();
    out
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
