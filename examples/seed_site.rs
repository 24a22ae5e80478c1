//! Fills a site's store with leases and enrolled machines, as a site that
//! has run for a long time would have them: what `bench/scale.sh` and the
//! scale tests start servers on. The store is the spec's (`[state]`): the
//! embedded one in STATE_DIR, or etcd.
//!
//! Leases take the pool's addresses from its first on, each its own MAC
//! (`02:5e:` and the lease's number), expiring in a day; machines take
//! addresses of the subnet from its 2nd on (outside the pool is not
//! checked: these are records, not reservations) and MACs `02:e1:...`.
//!
//! Usage: cargo run --release --example seed_site -- SPEC STATE_DIR LEASES [MACHINES]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use bootfleet::spec::Mac;
use bootfleet::store::{Enrolled, Lease, Op};

/// Leases per batch: several etcd transactions, one redb commit.
const BATCH: usize = 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, state_dir, leases, rest @ ..] = args.as_slice() else {
        return Err("usage: seed_site SPEC STATE_DIR LEASES [MACHINES]".into());
    };
    let leases: u32 = leases.parse()?;
    let machines: u32 = rest.first().map_or(Ok(0), |m| m.parse())?;
    let spec = bootfleet::spec::load(&PathBuf::from(spec))?.spec;
    let store = bootfleet::store::open(&spec.state, &PathBuf::from(state_dir))?;
    let (first, last) = spec
        .network
        .dynamic_range
        .ok_or("the spec has no dynamic_range to take addresses from")?;
    if u32::from(last) - u32::from(first) + 1 < leases {
        return Err(format!("the pool {first}-{last} is smaller than {leases} leases").into());
    }
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    let started = Instant::now();
    let mut ops = Vec::with_capacity(BATCH);
    for i in 0..leases {
        let n = i.to_be_bytes();
        ops.push(Op::Put(Lease {
            ip: Ipv4Addr::from(u32::from(first) + i),
            mac: Mac([0x02, 0x5e, n[0], n[1], n[2], n[3]]),
            expires,
        }));
        if ops.len() == BATCH || i + 1 == leases {
            store.leases.apply(&ops)?;
            ops.clear();
        }
    }
    let leased = started.elapsed();
    let base = u32::from(spec.network.subnet.network()) + 2;
    for i in 0..machines {
        let n = i.to_be_bytes();
        let m = Enrolled {
            name: format!("seed-{i}"),
            mac: Mac([0x02, 0xe1, n[0], n[1], n[2], n[3]]),
            ip: Ipv4Addr::from(base + i),
            at: expires - 86_400,
        };
        store.machines.enrol(&m)?;
    }
    eprintln!(
        "seeded {leases} leases in {:.1} s and {machines} machines in {:.1} s ({})",
        leased.as_secs_f64(),
        (started.elapsed() - leased).as_secs_f64(),
        store.description
    );
    Ok(())
}
