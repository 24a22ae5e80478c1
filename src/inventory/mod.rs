//! The machines of a cluster as the servers and templates see them: each
//! node's identity, its secret token, and the browsers it runs.
//!
//! Built from a checked [`Spec`] and the site key; deterministic, so the same
//! spec and key always give the same inventory.

pub mod enrol;
mod load;
mod token;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use serde::Serialize;

use crate::spec::{Mac, Roles, Spec};
pub use load::assign_browsers;
pub use token::{KEY_FILE, SiteKey};

/// Why the inventory could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A state file (the site key, the enrolled machines) could not be
    /// read or written.
    #[error("{path}: {source}")]
    StateIo {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The site key file is not 64 hex digits.
    #[error(
        "site key {0} is damaged: it must hold 64 hex digits; move it away to make a new one (every node token changes)"
    )]
    KeyDamaged(std::path::PathBuf),
    /// The list of enrolled machines is not valid JSON.
    #[error(
        "{path} is damaged ({reason}); fix it, or move it away to enrol those machines afresh (they may get new names and addresses)"
    )]
    EnrolledDamaged {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// One machine with everything derived for it.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub name: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub roles: Roles,
    pub labels: BTreeMap<String, String>,
    /// Opens this node's cloud-config and phone-home URL, and no other's.
    pub token: String,
    /// Browser numbers this node runs (empty unless a worker with a load).
    pub browsers: Range<u32>,
}

/// Every known node, in spec order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    pub nodes: Vec<Node>,
}

impl Inventory {
    /// Derives every node's token and browser share.
    pub fn build(spec: &Spec, key: &SiteKey) -> Inventory {
        let shares = assign_browsers(spec);
        let nodes = spec
            .nodes
            .iter()
            .map(|n| Node {
                name: n.name.clone(),
                mac: n.mac,
                ip: n.ip,
                roles: n.roles,
                labels: n.labels.clone(),
                token: key.token(&n.name, n.mac),
                browsers: shares.get(&n.name).cloned().unwrap_or(0..0),
            })
            .collect();
        Inventory { nodes }
    }

    /// The node called `name`.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}
