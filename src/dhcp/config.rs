//! The DHCP policy's configuration, from the checked spec: one
//! [`Config`] per segment, and where the spec puts each node.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use super::boot::BootConfig;
use super::policy::Config;
use super::pool::Pool;
use super::site::Site;
use crate::spec::{Segment, Spec};

/// Builds every segment's configuration: its pool from its
/// `dynamic_range` (empty without one, and unused in proxy mode), the
/// reservations of the nodes whose addresses lie in it, and its server's,
/// gateway's and reserved addresses kept out of its pool.
pub fn from_spec(spec: &Spec) -> Site {
    let segments: Vec<Config> = spec.segments.iter().map(|s| segment(spec, s)).collect();
    let home = spec
        .nodes
        .iter()
        .filter_map(|n| Some((n.mac, spec.segment_index(n.ip)?)))
        .collect();
    Site {
        segments,
        home,
        keep_expired_secs: spec.keep_expired.as_secs(),
    }
}

fn segment(spec: &Spec, seg: &Segment) -> Config {
    let (first, last) = seg
        .dynamic_range
        .unwrap_or((Ipv4Addr::BROADCAST, Ipv4Addr::UNSPECIFIED));
    let reservations: HashMap<_, _> = spec
        .nodes
        .iter()
        .filter(|n| seg.subnet.contains(&n.ip))
        .map(|n| (n.mac, n.ip))
        .collect();
    let mut excluded: HashSet<Ipv4Addr> = reservations.values().copied().collect();
    excluded.insert(seg.server);
    excluded.extend(seg.gateway);
    Config {
        segment: seg.name.clone(),
        mode: spec.network.mode,
        server: seg.server,
        subnet: seg.subnet,
        gateway: seg.gateway,
        dns: seg.dns.clone(),
        lease_secs: seg.lease_time.as_secs().min(u64::from(u32::MAX)) as u32,
        pool: Pool {
            first,
            last,
            reservations,
            excluded,
        },
        boot: BootConfig {
            bios_loader: spec.boot.bios_loader,
            http_base: seg.base_url(spec.network.http_port),
        },
        enrol_unknown: spec.enrolment.is_some(),
        keep_expired_secs: spec.keep_expired.as_secs(),
    }
}
