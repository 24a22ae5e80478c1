//! The DHCP policy's configuration, from the checked spec.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use super::boot::BootConfig;
use super::policy::Config;
use super::pool::Pool;
use crate::spec::Spec;

/// Builds the configuration: the pool from `dynamic_range` (empty without
/// one, and unused in proxy mode), every node's reservation, and the
/// server's, gateway's and reserved addresses kept out of the pool.
pub fn from_spec(spec: &Spec) -> Config {
    let net = &spec.network;
    let (first, last) = net
        .dynamic_range
        .unwrap_or((Ipv4Addr::BROADCAST, Ipv4Addr::UNSPECIFIED));
    let reservations: HashMap<_, _> = spec.nodes.iter().map(|n| (n.mac, n.ip)).collect();
    let mut excluded: HashSet<Ipv4Addr> = reservations.values().copied().collect();
    excluded.insert(net.server);
    excluded.extend(net.gateway);
    Config {
        mode: net.mode,
        server: net.server,
        subnet: net.subnet,
        gateway: net.gateway,
        dns: net.dns.clone(),
        lease_secs: net.lease_time.as_secs().min(u64::from(u32::MAX)) as u32,
        pool: Pool {
            first,
            last,
            reservations,
            excluded,
        },
        boot: BootConfig {
            bios_loader: spec.boot.bios_loader,
            http_base: net.base_url(),
        },
        enrol_unknown: spec.enrolment.is_some(),
        keep_expired_secs: spec.keep_expired.as_secs(),
    }
}
