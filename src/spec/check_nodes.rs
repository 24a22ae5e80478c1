//! Rules for `[[nodes]]` and `[enrolment]`: unique names, MACs and
//! addresses, addresses that fit the network, known roles, clean labels.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use toml::Spanned;

use super::check::Checker;
use super::{DhcpMode, Enrolment, Mac, Network, NodeSpec, Roles, Segment, wire};

/// Checks every node; returns the ones that passed, in spec order.
pub(super) fn nodes(
    c: &mut Checker,
    cluster: &str,
    nodes: &[wire::Node],
    segments: Option<&[Segment]>,
) -> Vec<NodeSpec> {
    let mut out = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut macs: HashMap<Mac, usize> = HashMap::new();
    let mut ips: HashMap<Ipv4Addr, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut ok = c.dns_label(&n.name, "node name");
        if let Some(first) = names.insert(n.name.get_ref(), i) {
            c.error(
                n.name.span(),
                format!("node name `{}` is used twice", n.name.get_ref()),
                format!(
                    "rename one of them; the first is at line {}",
                    line_of(c, &nodes[first].name)
                ),
            );
            ok = false;
        }
        let mac = match &n.mac {
            Some(m) => mac(c, m),
            None => derived_mac(c, cluster, i, &n.name),
        };
        if let Some(m) = mac {
            if let Some(first) = macs.insert(m, i) {
                let span = n.mac.as_ref().unwrap_or(&n.name).span();
                let other = nodes[first].mac.as_ref().unwrap_or(&nodes[first].name);
                c.error(
                    span,
                    format!("MAC {m} is given to two nodes"),
                    format!(
                        "each machine has its own MAC; `{}` at line {} has it too{}",
                        nodes[first].name.get_ref(),
                        line_of(c, other),
                        if n.mac.is_none() || nodes[first].mac.is_none() {
                            " (a node without `mac` gets 52:54:00 plus a hash of the cluster name and its index: give one of them a `mac`)"
                        } else {
                            ""
                        }
                    ),
                );
                ok = false;
            }
        }
        let ip = c.ipv4(&n.ip, "node address");
        if let Some(ip) = ip {
            if let Some(first) = ips.insert(ip, i) {
                c.error(
                    n.ip.span(),
                    format!("address {ip} is given to two nodes"),
                    format!(
                        "give each node its own address; `{}` at line {} has it too",
                        nodes[first].name.get_ref(),
                        line_of(c, &nodes[first].ip)
                    ),
                );
                ok = false;
            }
            if let Some(segments) = segments {
                ok &= fits(c, &n.ip, ip, segments);
            }
        }
        let roles = roles(c, &n.roles);
        ok &= labels(c, &n.labels, "label");
        let bmc = n.bmc.as_ref().map(|b| super::check_bmc::bmc(c, b));
        ok &= !matches!(bmc, Some(None));
        if let (true, Some(mac), Some(ip), Some(roles)) = (ok, mac, ip, roles) {
            out.push(NodeSpec {
                name: n.name.get_ref().clone(),
                mac,
                ip,
                roles,
                labels: n
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                    .collect(),
                bmc: bmc.flatten(),
            });
        }
    }
    out
}

fn line_of<T>(c: &Checker, v: &Spanned<T>) -> usize {
    super::diag::line_col(c.source, v.span().start).0
}

/// The MAC of a node the spec gives none (a VM of `bootfleet cluster`):
/// derived from the cluster name and the node's index, so render, DHCP and
/// the VM agree without being told.
fn derived_mac(
    c: &mut Checker,
    cluster: &str,
    index: usize,
    name: &Spanned<String>,
) -> Option<Mac> {
    let derived = Mac::derived(cluster, index);
    if derived.is_none() {
        c.error(
            name.span(),
            "only the first 256 nodes can go without a `mac`",
            "give this node its MAC (`mac = \"52:54:00:12:34:56\"`)",
        );
    }
    derived
}

fn mac(c: &mut Checker, v: &Spanned<String>) -> Option<Mac> {
    match v.get_ref().parse::<Mac>() {
        Ok(m) if m.is_multicast() => {
            c.error(v.span(), format!("MAC {m} is a multicast address"), "a NIC's own MAC has the lowest bit of the first byte clear; copy it from the machine's label or `ip link`");
            None
        }
        Ok(m) => Some(m),
        Err(e) => {
            c.error(
                v.span(),
                e.to_string(),
                "copy the MAC from the machine's label or `ip link`, e.g. 52:54:00:12:34:56",
            );
            None
        }
    }
}

/// A node's address must be a host of one of the site's segments, not
/// that segment's server or gateway, and not inside its dynamic pool
/// (which DHCP may hand to others).
fn fits(c: &mut Checker, v: &Spanned<String>, ip: Ipv4Addr, segments: &[Segment]) -> bool {
    let Some(seg) = segments.iter().find(|s| s.subnet.contains(&ip)) else {
        if let [only] = segments {
            c.error(
                v.span(),
                format!("address {ip} is outside the subnet {}", only.subnet),
                format!(
                    "pick a host address of {}, or fix [network] subnet",
                    only.subnet
                ),
            );
            return false;
        }
        let all: Vec<String> = segments
            .iter()
            .map(|s| format!("{} {}", s.name, s.subnet))
            .collect();
        c.error(
            v.span(),
            format!("address {ip} is in no segment of the site"),
            format!(
                "pick a host address of one of them ({}), or fix [network] subnet or add a [[segments]] entry for it",
                all.join(", ")
            ),
        );
        return false;
    };
    let subnet = seg.subnet;
    if ip == subnet.network() || ip == subnet.broadcast() {
        c.error(
            v.span(),
            format!("address {ip} is not a host address of {subnet}"),
            format!("pick a host address of {subnet}"),
        );
        return false;
    }
    if ip == seg.server || Some(ip) == seg.gateway {
        c.error(
            v.span(),
            format!("address {ip} belongs to the server or the gateway"),
            "give the node an address of its own",
        );
        return false;
    }
    if seg.in_dynamic_range(ip) {
        let (s, e) = seg.dynamic_range.unwrap_or((ip, ip));
        c.error(
            v.span(),
            format!("reservation {ip} is inside the dynamic range {s}..{e}"),
            format!(
                "move the reservation out of the range, or shrink segment `{}`'s dynamic_range so the pool cannot hand it to another machine",
                seg.name
            ),
        );
        return false;
    }
    true
}

fn roles(c: &mut Checker, v: &Spanned<Vec<String>>) -> Option<Roles> {
    let mut roles = Roles::default();
    if v.get_ref().is_empty() {
        c.error(
            v.span(),
            "a node needs at least one role",
            "write roles = [\"etcd\"], [\"worker\"] or [\"etcd\", \"worker\"]",
        );
        return None;
    }
    for r in v.get_ref() {
        match r.as_str() {
            "etcd" => roles.etcd = true,
            "worker" => roles.worker = true,
            other => {
                c.error(
                    v.span(),
                    format!("unknown role `{other}`"),
                    "roles are \"etcd\" and \"worker\"",
                );
                return None;
            }
        }
    }
    Some(roles)
}

/// Labels become fleet metadata (`k=v,k=v`) and unit environment, so keys
/// and values must not carry separators, spaces or quotes.
pub(super) fn labels(
    c: &mut Checker,
    labels: &BTreeMap<String, Spanned<String>>,
    what: &str,
) -> bool {
    let mut ok = true;
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-');
        if !key_ok {
            c.error(
                v.span(),
                format!("{what} key `{k}` is not allowed"),
                "use lower-case letters, digits, '_' and '-' in keys",
            );
            ok = false;
        }
        if ["etcd", "worker", "name"].contains(&k.as_str()) {
            c.error(
                v.span(),
                format!("{what} key `{k}` is reserved"),
                "bootfleet sets etcd, worker and name itself; pick another key",
            );
            ok = false;
        }
        ok &= c.charset(
            v,
            &format!("{what} `{k}`"),
            |ch| ch.is_ascii_alphanumeric() || "._-:/".contains(ch),
            "letters, digits, '.', '_', '-', ':' and '/'",
        );
    }
    ok
}

/// Checks `[enrolment]`. Enrolled machines get sticky pool addresses in full
/// mode, so a pool is required there.
pub(super) fn enrolment(
    c: &mut Checker,
    w: Option<&wire::Enrolment>,
    net: Option<&Network>,
) -> Option<Enrolment> {
    let w = w?;
    let roles = match w.role.get_ref().as_str() {
        "none" => return None,
        "worker" => Roles {
            etcd: false,
            worker: true,
        },
        "etcd" => {
            c.error(w.role.span(), "unknown machines cannot join etcd", "etcd members form a static cluster from [[nodes]]; use role = \"worker\" or \"none\"");
            return None;
        }
        other => {
            c.error(
                w.role.span(),
                format!("unknown enrolment role `{other}`"),
                "use \"worker\" to enrol unknown machines or \"none\" to refuse them",
            );
            return None;
        }
    };
    let name = w
        .name
        .as_ref()
        .map_or("node-{mac}".to_owned(), |n| n.get_ref().clone());
    if let Some(n) = &w.name {
        let sample = Spanned::new(n.span(), name.replace("{mac}", "525400000000"));
        if !name.contains("{mac}") {
            c.error(
                n.span(),
                "the enrolment name pattern must contain {mac}",
                "write something like \"worker-{mac}\" so every machine gets its own name",
            );
            return None;
        }
        if !c.dns_label(&sample, "enrolment name pattern") {
            return None;
        }
    }
    if let Some(net) = net {
        if net.mode == DhcpMode::Full && net.dynamic_range.is_none() {
            c.error(
                w.role.span(),
                "enrolment needs a dynamic pool in full DHCP mode",
                "add dynamic_range = [\"FIRST\", \"LAST\"] to [network], or set role = \"none\"",
            );
            return None;
        }
    }
    Some(Enrolment { roles, name })
}
