//! Rules for `[[segments]]`: each a subnet of its own that overlaps no
//! other, reached either directly (an interface of the server's that no
//! other segment uses, and the server's address there) or through relays
//! (the server's routed address), with a pool inside its subnet.

use std::collections::HashMap;

use toml::Spanned;

use super::check::{Checker, first_host, interface, last_host, lease_time, range, subnet};
use super::{Network, Reach, Segment, wire};

/// `[network]`'s segment, then every `[[segments]]` entry that passed;
/// `None` when one did not.
pub(super) fn segments(
    c: &mut Checker,
    net: &Network,
    wire: &[wire::Segment],
) -> Option<Vec<Segment>> {
    let mut out = vec![Segment::of_network(net)];
    // Where each name and interface was first given (None: [network]).
    let mut names: HashMap<String, Option<usize>> = HashMap::from([(net.interface.clone(), None)]);
    let mut interfaces: HashMap<String, Option<usize>> =
        HashMap::from([(net.interface.clone(), None)]);
    let mut ok = true;
    for i in 0..wire.len() {
        match one(c, net, wire, &out, &mut names, &mut interfaces, i) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Where a name or interface was first given: `at line N`, or `in
/// [network]`.
fn first_given<T>(c: &Checker, first: Option<&Spanned<T>>) -> String {
    match first {
        Some(v) => format!(
            "at line {}",
            super::diag::line_col(c.source, v.span().start).0
        ),
        None => "in [network]".to_owned(),
    }
}

#[allow(clippy::too_many_arguments)]
fn one(
    c: &mut Checker,
    net: &Network,
    all: &[wire::Segment],
    before: &[Segment],
    names: &mut HashMap<String, Option<usize>>,
    interfaces: &mut HashMap<String, Option<usize>>,
    i: usize,
) -> Option<Segment> {
    let w = &all[i];
    let mut ok = c.dns_label(&w.name, "segment name");
    let name = w.name.get_ref().clone();
    if let Some(first) = names.insert(name.clone(), Some(i)) {
        let at = first_given(c, first.map(|f| &all[f].name));
        c.error(
            w.name.span(),
            format!("segment name `{name}` is used twice"),
            format!(
                "give each segment its own name; `{name}` is {at} too (the [network] segment is named after its interface)"
            ),
        );
        ok = false;
    }
    let subnet = subnet(c, &w.subnet);
    if let Some(sn) = subnet {
        if let Some(other) = before
            .iter()
            .find(|s| s.subnet.contains(&sn.network()) || sn.contains(&s.subnet.network()))
        {
            c.error(
                w.subnet.span(),
                format!(
                    "segment `{name}`'s subnet {sn} overlaps `{}`'s {}",
                    other.name, other.subnet
                ),
                "give every segment a subnet of its own: an address must name one segment",
            );
            ok = false;
        }
    }
    let reach = match (&w.interface, w.relay.as_ref().filter(|r| *r.get_ref())) {
        (Some(iface), None) => {
            ok &= interface(c, iface);
            let n = iface.get_ref().clone();
            if let Some(first) = interfaces.insert(n.clone(), Some(i)) {
                c.error(
                    iface.span(),
                    format!("interface `{n}` serves two segments"),
                    format!(
                        "a direct segment is one interface of the server's; `{n}` is given {} too (for a second subnet on one wire, use a VLAN interface such as eth0.20)",
                        first_given(c, first.map(|f| all[f].interface.as_ref().unwrap_or(&all[f].name)))
                    ),
                );
                ok = false;
            }
            Some(Reach::Direct { interface: n })
        }
        (None, Some(_)) => Some(Reach::Relayed),
        (Some(iface), Some(_)) => {
            c.error(
                iface.span(),
                format!("segment `{name}` has both an interface and relay = true"),
                "a segment is reached either directly (interface = ..., with the server's address there as server) or through relays (relay = true): keep one",
            );
            None
        }
        (None, None) => {
            c.error(
                w.name.span(),
                format!("segment `{name}` says neither how it is reached"),
                "add interface = \"<the server's interface there>\" with server = \"<its address there>\", or relay = true for a segment whose relays forward to this server",
            );
            None
        }
    };
    let server = match (&w.server, &reach) {
        (Some(v), _) => c.ipv4(v, "server address"),
        (None, Some(Reach::Relayed)) => Some(net.server),
        (None, Some(Reach::Direct { .. })) => {
            c.error(
                w.name.span(),
                format!("direct segment `{name}` needs the server's address there"),
                "add server = \"<this server's address on that interface>\"",
            );
            None
        }
        (None, None) => None,
    };
    let gateway = w.gateway.as_ref().map(|g| (g, c.ipv4(g, "gateway")));
    let dns: Option<Vec<_>> = match &w.dns {
        Some(list) => list.iter().map(|d| c.ipv4(d, "DNS server")).collect(),
        None => Some(net.dns.clone()),
    };
    let lease_time = lease_time(c, w.lease_time.as_ref(), net.lease_time);
    let (subnet, reach, server) = (subnet?, reach?, server?);
    let usable = |ip| subnet.contains(&ip) && ip != subnet.network() && ip != subnet.broadcast();
    let between = format!(
        "pick an address between {} and {}",
        first_host(subnet),
        last_host(subnet)
    );
    if matches!(reach, Reach::Direct { .. }) && !usable(server) {
        let v = w.server.as_ref().unwrap_or(&w.name);
        c.error(
            v.span(),
            format!("server address {server} is not a usable address of {subnet}"),
            format!("it is this server's address on the segment's interface: {between}"),
        );
        ok = false;
    }
    if let Some((g, Some(ip))) = &gateway {
        if !usable(*ip) {
            c.error(
                g.span(),
                format!("gateway {ip} is not a usable address of {subnet}"),
                between.clone(),
            );
            ok = false;
        }
    }
    let own = matches!(reach, Reach::Direct { .. }).then_some(server);
    let dynamic_range = w
        .dynamic_range
        .as_ref()
        .and_then(|r| range(c, r, subnet, own));
    ok &= w.dynamic_range.is_none() || dynamic_range.is_some();
    let gateway = match gateway {
        Some((_, None)) => return None,
        Some((_, Some(ip))) => Some(ip),
        None => None,
    };
    if !ok {
        return None;
    }
    Some(Segment {
        name,
        subnet,
        server,
        gateway,
        dns: dns?,
        dynamic_range,
        lease_time: lease_time?,
        router_advertisements: w
            .router_advertisements
            .as_ref()
            .map_or(net.router_advertisements, |v| *v.get_ref()),
        reach,
    })
}
