//! The data templates see. Rust builds values here; templates decide how
//! they are written. Every field is documented in docs/templates.md, because
//! user overrides depend on these names.

use std::net::Ipv4Addr;

use minijinja::Value;
use minijinja::value::{Serde, merge_maps};
use serde::Serialize;

use crate::inventory::{Inventory, Node};
use crate::spec::{Cluster, Load, Runner, Segment, Spec};

/// The cluster-wide part of every context, as the machines of one segment
/// see it (its network, and bootfleet's address there in every URL),
/// built once per segment and render.
#[derive(Debug, Serialize)]
pub struct Shared<'a> {
    pub cluster: &'a Cluster,
    pub network: NetworkCtx,
    pub boot: BootCtx,
    pub etcd: EtcdCtx,
    pub fleet: FleetCtx,
    pub load: Option<LoadCtx<'a>>,
    /// The above as a template value, converted once and shared by every
    /// node's context (converting it per file cost a third of the render).
    #[serde(skip)]
    pub value: Value,
}

/// The context of every template: cluster-wide parts plus, for per-node
/// files, the node. `fleet_units` is true when rendering `units/` for
/// `fleetctl`, so unit templates add their `[X-Fleet]` sections.
#[derive(Debug, Serialize)]
pub struct Context<'a> {
    #[serde(skip)]
    pub shared: &'a Shared<'a>,
    pub node: Option<NodeCtx<'a>>,
    pub urls: Option<UrlsCtx>,
    pub fleet_units: bool,
}

#[derive(Debug, Serialize)]
pub struct NetworkCtx {
    pub subnet: String,
    pub prefix_len: u8,
    pub netmask: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub base_url: String,
}

#[derive(Debug, Serialize)]
pub struct BootCtx {
    /// Paths under the images root (TFTP) and the same files over HTTP.
    pub kernel: String,
    pub initrd: String,
    pub kernel_url: String,
    pub initrd_url: String,
    /// The initrd's file name: `initrd=<name>` on the command line lets a
    /// UEFI kernel find the initrd iPXE loaded.
    pub initrd_name: String,
    pub kernel_args: Vec<String>,
    pub console: Vec<String>,
    pub retries: u32,
    /// `cloud-config` or `ignition`.
    pub config: crate::spec::ConfigFormat,
    /// What `boot.ipxe` puts before `ipxe/boot?...`: the server's base URL
    /// and `/` on a site of one segment; nothing on a site of several, so
    /// the chain resolves against the URL `boot.ipxe` came from (each
    /// segment's DHCP names bootfleet's address there).
    pub chain_base: String,
}

#[derive(Debug, Serialize)]
pub struct EtcdCtx {
    pub run: Runner,
    pub binary_url: Option<String>,
    pub token: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// `http://ip:client_port` of every member.
    pub client_urls: Vec<String>,
    pub first_client_url: String,
    /// The client URLs joined with commas.
    pub endpoints: String,
    /// `name=http://ip:peer_port,...` for `--initial-cluster`.
    pub initial_cluster: String,
}

#[derive(Debug, Serialize)]
pub struct FleetCtx {
    pub run: Runner,
    pub binary_url: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LoadCtx<'a> {
    #[serde(flatten)]
    pub load: &'a Load,
    /// The MAC prefix as `02:1b:f0`.
    pub mac_prefix: String,
    /// Bit shifts that extract each remaining MAC byte from the browser
    /// number, most significant first (`[16, 8, 0]` for a 3-byte prefix).
    pub mac_shifts: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct NodeCtx<'a> {
    #[serde(flatten)]
    pub node: &'a Node,
    pub mac_dashed: String,
    pub hostname: String,
    pub roles: Vec<&'static str>,
    pub etcd: bool,
    pub worker: bool,
    /// `FLEET_METADATA`: roles, labels and the spec's fleet metadata.
    pub fleet_metadata: String,
    /// The browser numbers this node starts.
    pub browsers: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct UrlsCtx {
    pub cloud_config: String,
    /// The node's Ignition config (`[boot] config = "ignition"`).
    pub ignition: String,
    pub phone_home: String,
    pub ipxe: String,
}

impl<'a> Shared<'a> {
    /// Every segment's [`Shared`], in spec order.
    pub fn segments(spec: &'a Spec, inv: &Inventory) -> Vec<Shared<'a>> {
        spec.segments
            .iter()
            .map(|seg| Shared::new(spec, inv, seg))
            .collect()
    }

    /// Everything templates see that does not depend on the node, for the
    /// machines of `seg`.
    pub fn new(spec: &'a Spec, inv: &Inventory, seg: &Segment) -> Shared<'a> {
        let net = seg;
        let base = seg.base_url(spec.network.http_port);
        let asset = |p: &str| format!("{base}/assets/{p}");
        let members: Vec<&Node> = inv.nodes.iter().filter(|n| n.roles.etcd).collect();
        let client_urls: Vec<String> = members
            .iter()
            .map(|m| format!("http://{}:{}", m.ip, spec.etcd.client_port))
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}:{}", m.name, m.ip, spec.etcd.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let binary_url = |r: &Runner| match r {
            Runner::Binary(p) => Some(asset(p)),
            Runner::Image(_) => None,
        };
        let initrd_name = spec
            .boot
            .initrd
            .rsplit('/')
            .next()
            .unwrap_or(&spec.boot.initrd)
            .to_owned();
        let mut shared = Shared {
            value: Value::UNDEFINED,
            cluster: &spec.cluster,
            network: NetworkCtx {
                subnet: net.subnet.to_string(),
                prefix_len: net.subnet.prefix_len(),
                netmask: net.subnet.netmask(),
                gateway: net.gateway,
                dns: net.dns.clone(),
                server: net.server,
                base_url: base.clone(),
            },
            boot: BootCtx {
                kernel: spec.boot.kernel.clone(),
                initrd: spec.boot.initrd.clone(),
                kernel_url: asset(&spec.boot.kernel),
                initrd_url: asset(&spec.boot.initrd),
                initrd_name,
                kernel_args: spec.boot.kernel_args.clone(),
                console: spec.boot.console.clone(),
                retries: spec.boot.retries,
                config: spec.boot.config,
                chain_base: if spec.segments.len() > 1 {
                    String::new()
                } else {
                    format!("{base}/")
                },
            },
            etcd: EtcdCtx {
                run: spec.etcd.run.clone(),
                binary_url: binary_url(&spec.etcd.run),
                token: spec.etcd.token.clone(),
                client_port: spec.etcd.client_port,
                peer_port: spec.etcd.peer_port,
                first_client_url: client_urls.first().cloned().unwrap_or_default(),
                endpoints: client_urls.join(","),
                client_urls,
                initial_cluster,
            },
            fleet: FleetCtx {
                run: spec.fleet.run.clone(),
                binary_url: binary_url(&spec.fleet.run),
            },
            load: spec.load.as_ref().map(|load| {
                let tail = 6 - load.mac_prefix.len() as u32;
                LoadCtx {
                    load,
                    mac_prefix: load
                        .mac_prefix
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                    mac_shifts: (0..tail).rev().map(|i| i * 8).collect(),
                }
            }),
        };
        shared.value = Value::from(Serde(&shared));
        shared
    }
}

impl<'a> Context<'a> {
    /// The template value: this context's own fields over the shared ones.
    pub fn to_value(&self) -> Value {
        merge_maps([Value::from(Serde(self)), self.shared.value.clone()])
    }

    /// The cluster-wide context (no node).
    pub fn cluster(shared: &'a Shared<'a>) -> Context<'a> {
        Context {
            shared,
            node: None,
            urls: None,
            fleet_units: false,
        }
    }

    /// The context of one node's files.
    pub fn for_node(spec: &'a Spec, shared: &'a Shared<'a>, node: &'a Node) -> Context<'a> {
        let mut ctx = Context::cluster(shared);
        let base = &shared.network.base_url;
        let mut meta: Vec<String> = node
            .roles
            .names()
            .iter()
            .map(|r| format!("{r}=true"))
            .collect();
        meta.push(format!("name={}", node.name));
        meta.extend(node.labels.iter().map(|(k, v)| format!("{k}={v}")));
        meta.extend(
            spec.fleet
                .metadata
                .iter()
                .filter(|(k, _)| !node.labels.contains_key(*k))
                .map(|(k, v)| format!("{k}={v}")),
        );
        ctx.urls = Some(UrlsCtx {
            cloud_config: format!("{base}/cloud-config/{}?token={}", node.name, node.token),
            ignition: format!("{base}/ignition/{}?token={}", node.name, node.token),
            phone_home: format!("{base}/phone-home/{}?token={}", node.name, node.token),
            ipxe: format!("{base}/ipxe/{}.ipxe", node.name),
        });
        ctx.node = Some(NodeCtx {
            node,
            mac_dashed: node.mac.dashed(),
            hostname: match &spec.cluster.domain {
                Some(d) => format!("{}.{d}", node.name),
                None => node.name.clone(),
            },
            roles: node.roles.names(),
            etcd: node.roles.etcd,
            worker: node.roles.worker,
            fleet_metadata: meta.join(","),
            browsers: node.browsers.clone().collect(),
        });
        ctx
    }
}
