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
pub use token::SiteKey;

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
