//! The cluster spec: one strict TOML file that says what the network looks
//! like, what machines boot, and what runs on them.
//!
//! Two layers: [`wire`] is what serde reads (unknown keys are errors), and
//! [`Spec`] is the checked model the rest of bootfleet uses. [`load`] goes
//! from a file to a `Spec`, collecting every problem as a [`Diagnostic`] that
//! names file, line and fix.

mod check;
mod check_bmc;
mod check_ignition;
mod check_libvirt;
mod check_nodes;
mod check_segments;
mod check_services;
mod check_state;
pub mod diag;
pub mod mac;
pub mod wire;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;

pub use check::parse_duration;
pub use diag::{Diagnostic, Severity};
pub use mac::Mac;

/// Why a spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read spec {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but has errors; every one is listed.
    #[error("{} has {} error(s)", .path.display(), .diagnostics.iter().filter(|d| d.is_error()).count())]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

/// A checked spec plus the warnings found while checking it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and checks the spec at `path`.
pub fn load(path: &Path) -> Result<Loaded, SpecError> {
    let source = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &source)
}

/// Checks `source` as the text of the spec file `path` (used for messages and
/// to resolve relative paths such as the template directory).
pub fn parse(path: &Path, source: &str) -> Result<Loaded, SpecError> {
    let (spec, diagnostics) = check::check(path, source);
    match spec {
        Some(spec) if !diagnostics.iter().any(Diagnostic::is_error) => Ok(Loaded {
            spec,
            warnings: diagnostics,
        }),
        _ => Err(SpecError::Invalid {
            path: path.to_owned(),
            diagnostics,
        }),
    }
}

/// The checked cluster spec.
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    /// The spec file this came from.
    #[serde(skip)]
    pub path: PathBuf,
    pub cluster: Cluster,
    pub network: Network,
    /// Every segment of the site: `[network]`'s first, then
    /// `[[segments]]` in spec order.
    pub segments: Vec<Segment>,
    pub boot: Boot,
    /// Known machines, in spec order.
    pub nodes: Vec<NodeSpec>,
    /// What unknown machines get; `None` refuses them.
    pub enrolment: Option<Enrolment>,
    pub etcd: Etcd,
    pub fleet: Fleet,
    pub load: Option<Load>,
    /// Directory whose files override built-in templates of the same name.
    pub templates_dir: Option<PathBuf>,
    /// How `bootfleet cluster` builds the cluster as VMs.
    pub libvirt: Libvirt,
    /// Where the site's state is kept.
    pub state: StateBackend,
    /// How long a lease is kept after it expired (`[state] keep_expired`,
    /// three lease times by default): then it is forgotten, so the store
    /// does not grow with every machine ever seen.
    pub keep_expired: Duration,
    /// How long the boot timeline of a machine the spec does not list is
    /// kept after its last event (`[state] keep_timelines`, 30 days).
    pub keep_timelines: Duration,
    /// `[ignition] merge`: the user's configs every node's Ignition
    /// config merges, read and checked when the spec is loaded.
    pub ignition_merge: Vec<MergeFile>,
}

/// `[boot] config`: the provisioning format the nodes are given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigFormat {
    /// A cloud-config at `cloud-config-url=`, read by coreos-cloudinit.
    #[default]
    CloudConfig,
    /// An Ignition config (spec 3.3.0) at `ignition.config.url=`.
    Ignition,
}

/// One file of `[ignition] merge`, as it was read.
#[derive(Debug, Clone, Serialize)]
pub struct MergeFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its bytes, served to nodes as they are.
    #[serde(skip)]
    pub bytes: std::sync::Arc<[u8]>,
    /// `sha512-<hex>`, the `verification.hash` nodes check it against.
    pub hash: String,
}

/// `[state] backend`: where leases, enrolled machines, the site key and
/// boot timelines live.
#[derive(Debug, Clone, Default, Serialize)]
pub enum StateBackend {
    /// One file in the state directory (`--state-dir`).
    #[default]
    Embedded,
    /// An etcd cluster shared by every bootfleet server of the site.
    Etcd(EtcdStore),
}

/// An etcd cluster for bootfleet's own state (never the cluster's etcd).
#[derive(Debug, Clone, Serialize)]
pub struct EtcdStore {
    /// `http://10.0.0.5:2379`, ...
    pub endpoints: Vec<String>,
    /// Every key starts with it: `/bootfleet/<cluster>`.
    pub prefix: String,
    /// TLS: the CA that signed the members' certificates, and this
    /// server's own certificate and key, when etcd asks for one.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// `[libvirt]`: the VMs of a test cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Libvirt {
    /// The libvirt connection, e.g. `qemu:///system`.
    pub uri: String,
    pub forward: Forward,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub disk_gib: u32,
    pub firmware: Firmware,
    pub accel: Accel,
    /// The directory of the cluster's own storage pool.
    pub pool_dir: PathBuf,
    /// How long `cluster up` waits for every node to phone home.
    #[serde(serialize_with = "serialize_secs")]
    pub boot_timeout: Duration,
}

/// Whether the cluster's network reaches beyond the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    /// VMs reach only the host and each other.
    Isolated,
    /// VMs reach out through the host's routes (NAT).
    Nat,
}

/// The VMs' firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS; the NIC's iPXE ROM does the PXE boot.
    Bios,
    /// OVMF (x86-64 UEFI), with an NVRAM file per VM.
    Uefi,
}

/// How QEMU runs the guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when a probe guest really runs under it, else TCG.
    Auto,
    Kvm,
    /// Software emulation: slow, works everywhere.
    Tcg,
}

/// Cluster identity and logins.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    pub domain: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
    pub users: Vec<User>,
}

/// An extra login account on every node.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub name: String,
    /// A crypt(3) hash, never a plain password.
    pub passwd: Option<String>,
    pub groups: Vec<String>,
    pub ssh_authorized_keys: Vec<String>,
}

/// Whether bootfleet hands out addresses or only answers PXE clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DhcpMode {
    /// bootfleet is the DHCP server of the segment.
    Full,
    /// Another server hands out addresses; bootfleet sends boot options only.
    Proxy,
}

/// The boot segment.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub interface: String,
    pub subnet: Ipv4Net,
    /// bootfleet's own address on the segment.
    pub server: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// First and last address of the dynamic pool, inclusive.
    pub dynamic_range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub mode: DhcpMode,
    #[serde(serialize_with = "serialize_secs")]
    pub lease_time: Duration,
    pub http_port: u16,
    /// Answer router solicitations with "no IPv6 router here" (see `crate::ra`).
    pub router_advertisements: bool,
}

/// One network segment of the site: its addresses, and how bootfleet
/// reaches its machines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// `[[segments]] name`; `[network]`'s is its interface's name.
    pub name: String,
    pub subnet: Ipv4Net,
    /// bootfleet's address as this segment's machines reach it: its own
    /// address there (direct), or its routed address (relayed). Boot files
    /// and every URL a machine here is given name it.
    pub server: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// First and last address of the dynamic pool, inclusive.
    pub dynamic_range: Option<(Ipv4Addr, Ipv4Addr)>,
    #[serde(serialize_with = "serialize_secs")]
    pub lease_time: Duration,
    pub reach: Reach,
    /// Direct segments: answer router solicitations there.
    pub router_advertisements: bool,
}

/// How bootfleet reaches a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// The server has an address there, on `interface`, and answers
    /// broadcasts on it.
    Direct { interface: String },
    /// Requests come through DHCP relays, with a giaddr (or a link
    /// selection) in the segment's subnet.
    Relayed,
}

impl Segment {
    /// The segment `[network]` describes.
    pub fn of_network(n: &Network) -> Segment {
        Segment {
            name: n.interface.clone(),
            subnet: n.subnet,
            server: n.server,
            gateway: n.gateway,
            dns: n.dns.clone(),
            dynamic_range: n.dynamic_range,
            lease_time: n.lease_time,
            reach: Reach::Direct {
                interface: n.interface.clone(),
            },
            router_advertisements: n.router_advertisements,
        }
    }

    /// True when `ip` lies in the dynamic pool.
    pub fn in_dynamic_range(&self, ip: Ipv4Addr) -> bool {
        self.dynamic_range
            .is_some_and(|(start, end)| start <= ip && ip <= end)
    }

    /// `http://server:port`: the base of every URL this segment's
    /// machines are given.
    pub fn base_url(&self, http_port: u16) -> String {
        if http_port == 80 {
            format!("http://{}", self.server)
        } else {
            format!("http://{}:{http_port}", self.server)
        }
    }

    /// The interface of a direct segment.
    pub fn interface(&self) -> Option<&str> {
        match &self.reach {
            Reach::Direct { interface } => Some(interface),
            Reach::Relayed => None,
        }
    }
}

impl Spec {
    /// `SERVER:HTTP_PORT` of `[network]`: where the commands that talk to
    /// the boot server (`nodes`, `leases`, `power`, `reprovision`,
    /// `cluster`) find it unless told otherwise.
    pub fn api_address(&self) -> String {
        format!("{}:{}", self.network.server, self.network.http_port)
    }

    /// The index of the segment that holds `ip`.
    pub fn segment_index(&self, ip: Ipv4Addr) -> Option<usize> {
        self.segments.iter().position(|s| s.subnet.contains(&ip))
    }

    /// The segment that holds `ip`.
    pub fn segment_of(&self, ip: Ipv4Addr) -> Option<&Segment> {
        self.segment_index(ip).map(|i| &self.segments[i])
    }

    /// The segment whose view a machine at `ip` gets: its own, or
    /// `[network]`'s for an address in none (an enrolled machine is
    /// always in one).
    pub fn segment_for(&self, ip: Ipv4Addr) -> &Segment {
        self.segment_of(ip).unwrap_or(&self.segments[0])
    }

    /// Every address bootfleet is reached at: each segment's server
    /// address, once, in segment order. TFTP and HTTP answer on each.
    pub fn server_addresses(&self) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = Vec::new();
        for s in &self.segments {
            if !out.contains(&s.server) {
                out.push(s.server);
            }
        }
        out
    }
}

/// The site's segments by name and subnet: what the servers need to name
/// the segment of an address (the page, the API, `leases`).
#[derive(Debug, Clone, Default)]
pub struct SegmentNames(Vec<(String, Ipv4Net)>);

impl SegmentNames {
    pub fn of(spec: &Spec) -> SegmentNames {
        SegmentNames(
            spec.segments
                .iter()
                .map(|s| (s.name.clone(), s.subnet))
                .collect(),
        )
    }

    /// The name of the segment `ip` lies in.
    pub fn name_of(&self, ip: Ipv4Addr) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, net)| net.contains(&ip))
            .map(|(name, _)| name.as_str())
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// The loader a legacy-BIOS PXE ROM is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BiosLoader {
    /// `undionly.kpxe`, then the iPXE script over HTTP.
    Ipxe,
    /// `pxelinux.0`, then `pxelinux.cfg/01-<mac>` over TFTP.
    Pxelinux,
}

/// What the machines boot.
#[derive(Debug, Clone, Serialize)]
pub struct Boot {
    /// Kernel path, relative to the images root (served over TFTP and under `/assets/`).
    pub kernel: String,
    /// Initrd path, relative to the images root.
    pub initrd: String,
    pub kernel_args: Vec<String>,
    pub console: Vec<String>,
    pub bios_loader: BiosLoader,
    /// How many times the iPXE script renews DHCP and retries before giving up.
    pub retries: u32,
    /// Cloud-config or Ignition.
    pub config: ConfigFormat,
}

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Roles {
    /// Runs an etcd member.
    pub etcd: bool,
    /// Runs fleet, docker and browser load.
    pub worker: bool,
}

impl Roles {
    /// Role names in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.etcd {
            out.push("etcd");
        }
        if self.worker {
            out.push("worker");
        }
        out
    }
}

/// A known machine.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSpec {
    pub name: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub roles: Roles,
    pub labels: BTreeMap<String, String>,
    /// How its power is reached; none: the libvirt domain
    /// `<cluster>-<node>` (what `bootfleet cluster` creates).
    pub bmc: Option<Bmc>,
}

/// A node's BMC as the spec gives it (never a password: see
/// [`PasswordSource`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bmc {
    pub driver: BmcDriver,
    /// Redfish: `https://host[:port]`; IPMI: `host[:port]`; libvirt: a
    /// connection URI (default `[libvirt] uri`).
    pub address: Option<String>,
    /// Redfish: the system's id (default: the service's only one);
    /// libvirt: the domain (default `<cluster>-<node>`).
    pub system: Option<String>,
    pub username: Option<String>,
    pub password: Option<PasswordSource>,
    /// The CA that signed a Redfish service's certificate.
    pub ca_file: Option<PathBuf>,
    /// Do not verify the Redfish service's certificate (warned on use).
    pub insecure: bool,
}

/// Which protocol reaches a BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BmcDriver {
    Redfish,
    Ipmi,
    Libvirt,
}

impl BmcDriver {
    /// As the spec writes it.
    pub fn name(self) -> &'static str {
        match self {
            BmcDriver::Redfish => "redfish",
            BmcDriver::Ipmi => "ipmi",
            BmcDriver::Libvirt => "libvirt",
        }
    }
}

/// Where a BMC's password is read when it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PasswordSource {
    /// A file only its owner may read; the password on its first line.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// What an unknown machine is enrolled as.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolment {
    pub roles: Roles,
    /// Name pattern; `{mac}` becomes the MAC without separators.
    pub name: String,
}

impl Enrolment {
    /// The name an unknown machine with `mac` is given.
    pub fn name_for(&self, mac: Mac) -> String {
        self.name.replace("{mac}", &mac.compact())
    }
}

/// How a service binary reaches a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Runner {
    /// A container image run by docker.
    Image(String),
    /// A binary under the images root, fetched from bootfleet over HTTP.
    Binary(String),
}

/// The etcd cluster (members are the nodes with role `etcd`).
#[derive(Debug, Clone, Serialize)]
pub struct Etcd {
    pub run: Runner,
    pub token: String,
    pub client_port: u16,
    pub peer_port: u16,
}

/// fleetd on the workers.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    pub run: Runner,
    pub metadata: BTreeMap<String, String>,
}

/// How browsers are spread over workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spread {
    /// As evenly as possible: counts differ by at most one.
    Even,
    /// Fill each worker up to `per_node_cap`, in spec order.
    Fill,
}

/// `PREFIX{n:0W}SUFFIX`: how a browser's serial is made from its number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SerialPattern {
    pub prefix: String,
    /// Zero-padded width of the number (0: no padding).
    pub width: usize,
    pub suffix: String,
}

impl SerialPattern {
    /// The serial of browser `n`.
    ///
    /// ```
    /// use bootfleet::spec::SerialPattern;
    /// let p = SerialPattern { prefix: "IPTV".into(), width: 6, suffix: String::new() };
    /// assert_eq!(p.serial(42), "IPTV000042");
    /// ```
    pub fn serial(&self, n: u32) -> String {
        format!("{}{:0w$}{}", self.prefix, n, self.suffix, w = self.width)
    }
}

/// The browser load.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub image: String,
    pub host: String,
    pub path: String,
    pub browsers: u32,
    pub spread: Spread,
    pub per_node_cap: Option<u32>,
    pub serial: SerialPattern,
    /// Leading bytes of every browser's MAC (locally administered, unicast).
    pub mac_prefix: Vec<u8>,
    pub disable_cache: bool,
    pub browser_args: Vec<String>,
    pub viewers: bool,
    pub viewer_command: Vec<String>,
}

impl Load {
    /// The MAC browser `n` presents: the prefix, then `n` big-endian.
    pub fn browser_mac(&self, n: u32) -> Mac {
        let mut out = [0u8; 6];
        out[..self.mac_prefix.len()].copy_from_slice(&self.mac_prefix);
        let tail = 6 - self.mac_prefix.len();
        let be = u64::from(n).to_be_bytes();
        out[self.mac_prefix.len()..].copy_from_slice(&be[8 - tail..]);
        Mac(out)
    }

    /// The largest browser number the MAC prefix leaves room for.
    pub fn max_browsers(&self) -> u64 {
        (1u64 << (8 * (6 - self.mac_prefix.len()))) - 1
    }
}

impl Spec {
    /// The nodes with the etcd role, in spec order.
    pub fn etcd_members(&self) -> impl Iterator<Item = &NodeSpec> {
        self.nodes.iter().filter(|n| n.roles.etcd)
    }

    /// The nodes with the worker role, in spec order.
    pub fn workers(&self) -> impl Iterator<Item = &NodeSpec> {
        self.nodes.iter().filter(|n| n.roles.worker)
    }
}
