//! What a cluster is made of in libvirt, worked out from the spec alone
//! (no I/O): a network per segment of the spec (each direct segment's
//! interface is its bridge, the server's address there the host's), one
//! storage pool, a volume and a domain per node, on its segment's network. Names and UUIDs are derived from the cluster name, so the same
//! spec always plans the same resources and a second `up` finds the first
//! one's work.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::spec::{Firmware, Forward, Spec};

/// The XML namespace of the ownership tag every network and domain
/// carries: `<bf:cluster xmlns:bf=NS name=CLUSTER/>` in `<metadata>`.
pub const NS: &str = "urn:bootfleet:cluster";

/// Everything one cluster needs in libvirt.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub cluster: String,
    pub uri: String,
    /// One per segment, `[network]`'s first.
    pub networks: Vec<NetworkPlan>,
    pub pool: PoolPlan,
    pub domains: Vec<DomainPlan>,
}

/// The cluster's own network: a bridge whose host address is the spec's
/// server address, without libvirt's DHCP and DNS (so libvirt starts no
/// dnsmasq and bootfleet answers DHCP there).
#[derive(Debug, Clone, Serialize)]
pub struct NetworkPlan {
    pub name: String,
    pub uuid: String,
    pub bridge: String,
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub nat: bool,
}

/// A directory pool of the cluster's own: its volumes are the nodes' disks
/// and nothing else.
#[derive(Debug, Clone, Serialize)]
pub struct PoolPlan {
    pub name: String,
    pub uuid: String,
    pub path: PathBuf,
}

/// One node's VM.
#[derive(Debug, Clone, Serialize)]
pub struct DomainPlan {
    pub name: String,
    pub uuid: String,
    /// The spec's node name.
    pub node: String,
    /// The network of its segment.
    pub network: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub kvm: bool,
    pub uefi: bool,
    /// The disk's volume name in the pool.
    pub volume: String,
    pub disk_gib: u32,
    /// Where the serial console is written.
    pub console_log: PathBuf,
    /// The UEFI variable store (owned by the domain; removed with it).
    pub nvram: Option<PathBuf>,
}

impl Plan {
    /// Plans the cluster of `spec`; `kvm` is the accelerator decided for
    /// this host, `console_dir` where serial consoles are written.
    pub fn new(spec: &Spec, kvm: bool, console_dir: &Path) -> Plan {
        let cluster = spec.cluster.name.clone();
        let lv = &spec.libvirt;
        let base = format!("bootfleet-{cluster}");
        // Direct segments only: `bootfleet cluster` refuses relayed ones.
        let networks: Vec<NetworkPlan> = spec
            .segments
            .iter()
            .enumerate()
            .filter_map(|(i, seg)| {
                let bridge = seg.interface()?.to_owned();
                let (name, uuid) = if i == 0 {
                    (base.clone(), uuid(&["network", &cluster]))
                } else {
                    (
                        format!("{base}-{}", seg.name),
                        uuid(&["network", &cluster, &seg.name]),
                    )
                };
                Some(NetworkPlan {
                    name,
                    uuid,
                    bridge,
                    address: seg.server,
                    netmask: seg.subnet.netmask(),
                    subnet: seg.subnet,
                    nat: lv.forward == Forward::Nat,
                })
            })
            .collect();
        let network_of = |ip: Ipv4Addr| {
            networks
                .iter()
                .find(|n| n.subnet.contains(&ip))
                .unwrap_or(&networks[0])
                .name
                .clone()
        };
        let uefi = lv.firmware == Firmware::Uefi;
        let domains = spec
            .nodes
            .iter()
            .map(|n| {
                let name = domain_name(&cluster, &n.name);
                DomainPlan {
                    uuid: uuid(&["domain", &cluster, &n.name]),
                    node: n.name.clone(),
                    network: network_of(n.ip),
                    mac: n.mac.to_string(),
                    ip: n.ip,
                    memory_mib: lv.memory_mib,
                    vcpus: lv.vcpus,
                    kvm,
                    uefi,
                    volume: format!("{}.qcow2", n.name),
                    disk_gib: lv.disk_gib,
                    console_log: console_log(console_dir, &n.name),
                    nvram: uefi.then(|| {
                        PathBuf::from(format!("/var/lib/libvirt/qemu/nvram/{name}_VARS.fd"))
                    }),
                    name,
                }
            })
            .collect();
        Plan {
            uri: lv.uri.clone(),
            networks,
            pool: PoolPlan {
                name: base,
                uuid: uuid(&["pool", &cluster]),
                path: lv.pool_dir.clone(),
            },
            domains,
            cluster,
        }
    }
}

/// Where node `node`'s serial console is written, under `console_dir`.
pub fn console_log(console_dir: &Path, node: &str) -> PathBuf {
    console_dir.join(format!("{node}.log"))
}

/// The libvirt name of node `node`'s VM.
pub fn domain_name(cluster: &str, node: &str) -> String {
    format!("{cluster}-{node}")
}

/// A UUID derived from `parts` (SHA-256, laid out as a version-8 UUID):
/// the same cluster always gets the same one, and a namesake that someone
/// else created has another.
pub fn uuid(parts: &[&str]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"bootfleet");
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    let mut b: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_and_differ_by_part() {
        let a = uuid(&["network", "ci"]);
        assert_eq!(a, uuid(&["network", "ci"]));
        assert_ne!(a, uuid(&["pool", "ci"]));
        assert_ne!(uuid(&["domain", "a", "bc"]), uuid(&["domain", "ab", "c"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }
}
