//! The spec as written in TOML: serde types that accept exactly the keys we
//! document and nothing else (`deny_unknown_fields` everywhere).
//!
//! Values that a later check may complain about are wrapped in
//! [`toml::Spanned`] so the complaint can name the line. These types carry no
//! meaning beyond parsing; [`super::Spec`] is the checked form.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub cluster: Cluster,
    pub network: Network,
    #[serde(default)]
    pub segments: Vec<Segment>,
    pub boot: Boot,
    #[serde(default)]
    pub nodes: Vec<Node>,
    pub enrolment: Option<Enrolment>,
    pub etcd: Option<Etcd>,
    pub fleet: Option<Fleet>,
    pub load: Option<Load>,
    pub templates: Option<Templates>,
    pub libvirt: Option<Libvirt>,
    pub state: Option<State>,
    pub ignition: Option<Ignition>,
}

/// `[cluster]`: identity and logins shared by every node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: Spanned<String>,
    pub domain: Option<Spanned<String>>,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<Spanned<String>>,
    #[serde(default)]
    pub users: Vec<User>,
}

/// `[[cluster.users]]`: an extra login account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: Spanned<String>,
    pub passwd: Option<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<Spanned<String>>,
}

/// `[network]`: the boot segment and how bootfleet answers DHCP on it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub interface: Spanned<String>,
    pub subnet: Spanned<String>,
    pub server: Spanned<String>,
    pub gateway: Option<Spanned<String>>,
    #[serde(default)]
    pub dns: Vec<Spanned<String>>,
    pub dynamic_range: Option<Spanned<Vec<String>>>,
    pub mode: Option<Spanned<String>>,
    pub lease_time: Option<Spanned<String>>,
    pub http_port: Option<Spanned<u16>>,
    pub router_advertisements: Option<Spanned<bool>>,
}

/// `[[segments]]`: a further network segment of the site, reached
/// directly on one of the server's interfaces or through DHCP relays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub name: Spanned<String>,
    pub subnet: Spanned<String>,
    pub interface: Option<Spanned<String>>,
    pub relay: Option<Spanned<bool>>,
    pub server: Option<Spanned<String>>,
    pub gateway: Option<Spanned<String>>,
    pub dns: Option<Vec<Spanned<String>>>,
    pub dynamic_range: Option<Spanned<Vec<String>>>,
    pub lease_time: Option<Spanned<String>>,
    pub router_advertisements: Option<Spanned<bool>>,
}

/// `[boot]`: what the machines boot.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    pub flatcar: Option<Spanned<String>>,
    pub testos: Option<Spanned<bool>>,
    pub kernel: Option<Spanned<String>>,
    pub initrd: Option<Spanned<String>>,
    #[serde(default)]
    pub kernel_args: Vec<Spanned<String>>,
    #[serde(default)]
    pub console: Vec<Spanned<String>>,
    pub bios_loader: Option<Spanned<String>>,
    pub retries: Option<Spanned<u32>>,
    pub config: Option<Spanned<String>>,
}

/// `[[nodes]]`: one known machine.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: Spanned<String>,
    pub mac: Option<Spanned<String>>,
    pub ip: Spanned<String>,
    pub roles: Spanned<Vec<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
    pub bmc: Option<Spanned<Bmc>>,
}

/// `bmc = { ... }` of a node: how bootfleet reaches its power.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bmc {
    pub driver: Spanned<String>,
    pub address: Option<Spanned<String>>,
    pub system: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub insecure: Option<bool>,
}

/// `[enrolment]`: what a machine that is not in `[[nodes]]` gets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    pub role: Spanned<String>,
    pub name: Option<Spanned<String>>,
}

/// `[etcd]`: how the etcd members run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Etcd {
    pub image: Option<Spanned<String>>,
    pub binary: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub client_port: Option<Spanned<u16>>,
    pub peer_port: Option<Spanned<u16>>,
}

/// `[fleet]`: how fleetd runs on workers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    pub image: Option<Spanned<String>>,
    pub binary: Option<Spanned<String>>,
    #[serde(default)]
    pub metadata: BTreeMap<String, Spanned<String>>,
}

/// `[load]`: the browser containers the workers run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    pub image: Spanned<String>,
    pub host: Spanned<String>,
    pub path: Option<Spanned<String>>,
    pub browsers: Spanned<u32>,
    pub spread: Option<Spanned<String>>,
    pub per_node_cap: Option<Spanned<u32>>,
    pub serial_pattern: Option<Spanned<String>>,
    pub mac_prefix: Option<Spanned<String>>,
    pub disable_cache: Option<bool>,
    #[serde(default)]
    pub browser_args: Vec<Spanned<String>>,
    pub viewers: Option<bool>,
    #[serde(default)]
    pub viewer_command: Vec<Spanned<String>>,
}

/// `[templates]`: where the user's template overrides live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    pub dir: Spanned<String>,
}

/// `[libvirt]`: how `bootfleet cluster` builds a test cluster of VMs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Libvirt {
    pub uri: Option<Spanned<String>>,
    pub network: Option<Spanned<String>>,
    pub memory_mib: Option<Spanned<u32>>,
    pub vcpus: Option<Spanned<u32>>,
    pub disk_gib: Option<Spanned<u32>>,
    pub firmware: Option<Spanned<String>>,
    pub accel: Option<Spanned<String>>,
    pub pool_dir: Option<Spanned<String>>,
    pub boot_timeout: Option<Spanned<String>>,
}

/// `[state]`: where leases, enrolled machines, the site key and boot
/// timelines are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub backend: Option<Spanned<String>>,
    #[serde(default)]
    pub endpoints: Vec<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub keep_expired: Option<Spanned<String>>,
    pub keep_timelines: Option<Spanned<String>>,
}

/// `[ignition]`: the user's own Ignition configs, merged into every node's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ignition {
    #[serde(default)]
    pub merge: Vec<Spanned<String>>,
}
