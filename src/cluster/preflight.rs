//! Checks made before `up` creates anything: that the bridge name, the
//! subnet and the files the VMs need are free or present. Each failure
//! names what is in the way and how to get past it.

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;

use super::driver::OtherNetwork;
use super::plan::NetworkPlan;

/// One IPv4 route of the host (`/proc/net/route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub iface: String,
    pub net: Ipv4Net,
}

/// Parses `/proc/net/route` (addresses in host byte order, as hex);
/// default routes are left out (they overlap everything and conflict with
/// nothing).
pub fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = |s: &str| {
                u32::from_str_radix(s, 16)
                    .ok()
                    .map(|v| Ipv4Addr::from(u32::from_be(v)))
            };
            let (iface, dest, mask) = (f.first()?, hex(f.get(1)?)?, hex(f.get(7)?)?);
            let prefix = u32::from(mask).count_ones() as u8;
            let net = Ipv4Net::new(dest, prefix).ok()?.trunc();
            (prefix > 0).then(|| Route {
                iface: (*iface).to_owned(),
                net,
            })
        })
        .collect()
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// What stands in the way of the cluster's network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error(
        "the bridge name {bridge} is taken by libvirt network `{network}`\n  help: pick another `[network] interface` (at most 15 characters)"
    )]
    BridgeTaken { bridge: String, network: String },
    #[error(
        "the subnet {subnet} overlaps libvirt network `{network}` ({theirs})\n  help: pick another `[network] subnet` (and server, node addresses) in the spec"
    )]
    SubnetOfNetwork {
        subnet: Ipv4Net,
        network: String,
        theirs: Ipv4Net,
    },
    #[error(
        "the host already has an interface named {bridge}\n  help: pick another `[network] interface`, or remove that interface (`ip link del {bridge}`) if it is left over"
    )]
    InterfaceExists { bridge: String },
    #[error(
        "the subnet {subnet} overlaps the host's route to {route} on {iface}\n  help: pick another `[network] subnet` that this host does not reach already"
    )]
    SubnetRouted {
        subnet: Ipv4Net,
        route: Ipv4Net,
        iface: String,
    },
}

/// What stands in the way of the cluster's network, if anything. `ours`
/// says the cluster's own network already exists (its bridge and route
/// are then expected).
pub fn network_conflicts(
    net: &NetworkPlan,
    others: &[OtherNetwork],
    routes: &[Route],
    bridge_exists: bool,
    ours: bool,
) -> Result<(), Conflict> {
    for o in others {
        if o.bridge.as_deref() == Some(net.bridge.as_str()) {
            return Err(Conflict::BridgeTaken {
                bridge: net.bridge.clone(),
                network: o.name.clone(),
            });
        }
        if let Some(s) = o.subnets.iter().find(|s| overlaps(**s, net.subnet)) {
            return Err(Conflict::SubnetOfNetwork {
                subnet: net.subnet,
                network: o.name.clone(),
                theirs: *s,
            });
        }
    }
    if !ours {
        if bridge_exists {
            return Err(Conflict::InterfaceExists {
                bridge: net.bridge.clone(),
            });
        }
        if let Some(r) = routes
            .iter()
            .find(|r| r.iface != net.bridge && overlaps(r.net, net.subnet))
        {
            return Err(Conflict::SubnetRouted {
                subnet: net.subnet,
                route: r.net,
                iface: r.iface.clone(),
            });
        }
    }
    Ok(())
}

/// Whether the host has a network interface called `name`.
pub fn interface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The host's routes, or none when they cannot be read.
pub fn host_routes() -> Vec<Route> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_routes(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
        eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
        docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn routes_are_read_in_host_order_without_the_default() {
        let r = parse_routes(ROUTES);
        assert_eq!(
            r,
            vec![
                Route {
                    iface: "eth0".into(),
                    net: "10.0.0.0/24".parse().unwrap()
                },
                Route {
                    iface: "docker0".into(),
                    net: "172.17.0.0/16".parse().unwrap()
                },
            ]
        );
    }

    #[test]
    fn overlap_is_either_way() {
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert!(overlaps(n("10.0.0.0/8"), n("10.1.0.0/24")));
        assert!(overlaps(n("10.1.0.0/24"), n("10.0.0.0/8")));
        assert!(!overlaps(n("10.1.0.0/24"), n("10.2.0.0/24")));
    }

    #[test]
    fn a_network_is_read_from_its_xml() {
        let o = OtherNetwork::parse(
            "default".into(),
            "<network><name>default</name><bridge name='virbr0'/><ip address='192.168.122.1' netmask='255.255.255.0'/><ip family='ipv6' address='fd00::1' prefix='64'/></network>",
        );
        assert_eq!(o.bridge.as_deref(), Some("virbr0"));
        assert_eq!(
            o.subnets,
            vec!["192.168.122.0/24".parse::<Ipv4Net>().unwrap()]
        );
    }
}
