//! The conformance suite against a real etcd (Debian's etcd-server),
//! started here on loopback in a directory of its own.

use std::sync::Arc;

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::spec::{EtcdStore, Mac};
use crate::store::{Applied, Lease, Leases, Op, Store, conformance};

use super::member::{Member, free_port};

/// Starts etcd, or says why it cannot (a failure when every test must run).
fn etcd() -> Option<Member> {
    let member = Member::loopback();
    if member.is_none() {
        let why = "etcd is not installed (apt-get install etcd-server)";
        assert!(
            std::env::var_os("BOOTFLEET_TESTS_REQUIRE_ALL").is_none_or(|v| v != "1"),
            "this test must run here (BOOTFLEET_TESTS_REQUIRE_ALL=1) but cannot: {why}"
        );
        eprintln!("SKIP: {why}");
    }
    member
}

fn config(m: &Member, prefix: &str) -> EtcdStore {
    EtcdStore {
        endpoints: vec![m.url.clone()],
        prefix: prefix.into(),
        ca_file: None,
        cert_file: None,
        key_file: None,
    }
}

fn store(config: &EtcdStore) -> Store {
    let e = Arc::new(Etcd::connect(config).unwrap());
    Store {
        description: "etcd".into(),
        leases: e.clone(),
        machines: e.clone(),
        keys: e.clone(),
        timelines: e,
    }
}

#[test]
fn etcd_passes_the_conformance_suite_with_one_server_and_with_two_needs_etcd() {
    let Some(m) = etcd() else { return };
    let one = config(&m, "/bootfleet/one");
    conformance::run(&|| store(&one));
    let two = config(&m, "/bootfleet/two");
    conformance::shared(&store(&two), &store(&two));
    let three = config(&m, "/bootfleet/three");
    let (a, b) = (store(&three), store(&three));
    a.leases.load().unwrap();
    b.leases.load().unwrap();
    conformance::claims(&a, &b);
}

#[test]
fn a_servers_offers_are_free_again_once_it_is_gone_needs_etcd() {
    let Some(m) = etcd() else { return };
    let c = config(&m, "/bootfleet/gone");
    let b = store(&c);
    let held = Lease {
        ip: Ipv4Addr::new(10, 0, 0, 7),
        mac: Mac([2, 0, 0, 0, 0, 7]),
        expires: crate::clock::now_ms() / 1000 + 30,
    };
    {
        let a = store(&c);
        assert_eq!(
            a.leases.apply(&[Op::Hold(held.clone())]).unwrap(),
            vec![Applied::Done]
        );
    }
    let other = Lease {
        mac: Mac([2, 0, 0, 0, 0, 8]),
        ..held
    };
    assert_eq!(
        b.leases.apply(&[Op::Hold(other)]).unwrap(),
        vec![Applied::Done]
    );
}

#[test]
fn sites_under_other_prefixes_share_nothing_needs_etcd() {
    let Some(m) = etcd() else { return };
    let a = store(&config(&m, "/bootfleet/a"));
    let b = store(&config(&m, "/bootfleet/ab"));
    a.keys.get_or_create([3; 32]).unwrap();
    assert_eq!(
        b.keys.get().unwrap(),
        None,
        "a prefix is not a prefix of another's keys"
    );
}

#[test]
fn a_batch_larger_than_one_etcd_transaction_is_stored_whole_needs_etcd() {
    let Some(m) = etcd() else { return };
    let s = store(&config(&m, "/bootfleet/big"));
    let ops: Vec<Op> = (0..300u32)
        .map(|i| {
            Op::Put(Lease {
                ip: Ipv4Addr::from(0x0a00_0000 + i),
                mac: Mac([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
                expires: 60,
            })
        })
        .chain([Op::Remove {
            ip: Ipv4Addr::from(0x0a00_0000),
            mac: Mac([2, 0, 0, 0, 0, 0]),
        }])
        .collect();
    let results = s.leases.apply(&ops).unwrap();
    assert!(results.iter().all(|r| *r == Applied::Done), "{results:?}");
    assert_eq!(s.leases.load().unwrap().len(), 299);
}

#[test]
fn an_unreachable_etcd_is_an_error_that_names_it_not_a_hang() {
    let port = free_port();
    let c = EtcdStore {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        prefix: "/bootfleet/x".into(),
        ca_file: None,
        cert_file: None,
        key_file: None,
    };
    let start = std::time::Instant::now();
    let err = match Etcd::connect(&c) {
        Err(e) => e,
        Ok(e) => e.get().unwrap_err(),
    };
    assert!(start.elapsed() < TIMEOUT * 3, "{:?}", start.elapsed());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn a_lease_bound_by_one_server_outlives_the_server_that_offered_it_needs_etcd() {
    let Some(m) = etcd() else { return };
    let c = config(&m, "/bootfleet/outlive");
    let b = store(&c);
    let offered = Lease {
        ip: Ipv4Addr::new(10, 0, 0, 9),
        mac: Mac([2, 0, 0, 0, 0, 9]),
        expires: crate::clock::now_ms() / 1000 + 30,
    };
    {
        let a = store(&c);
        assert_eq!(
            a.leases.apply(&[Op::Hold(offered.clone())]).unwrap(),
            vec![Applied::Done]
        );
        // The client took a's offer but its REQUEST was answered by b.
        let bound = Lease {
            expires: offered.expires + 3600,
            ..offered.clone()
        };
        assert_eq!(
            b.leases.apply(&[Op::Put(bound)]).unwrap(),
            vec![Applied::Done]
        );
    }
    let left = b.leases.load().unwrap();
    assert!(left.iter().any(|l| l.ip == offered.ip), "{left:?}");
}

/// Waits up to `secs` for `what` to hold.
fn until(secs: u64, mut what: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    what()
}

#[test]
fn a_server_alone_pauses_its_watch_and_misses_nothing_once_another_registers_needs_etcd() {
    let Some(m) = etcd() else { return };
    let c = config(&m, "/bootfleet/alone");
    let expires = crate::clock::now_ms() / 1000 + 600;
    let lease = |i: u8| Lease {
        ip: Ipv4Addr::new(10, 0, 0, i),
        mac: Mac([2, 0, 0, 0, 0, i]),
        expires,
    };
    let a = Etcd::connect(&c).unwrap();
    Leases::load(&a).unwrap();
    assert!(
        until(5, || !*a.others.borrow()),
        "a server alone on its site stops following the lease keys"
    );
    assert_eq!(a.apply(&[Op::Put(lease(1))]).unwrap(), vec![Applied::Done]);
    // Another server writes before it registers (it registers at load).
    let b = Etcd::connect(&c).unwrap();
    assert_eq!(b.apply(&[Op::Put(lease(2))]).unwrap(), vec![Applied::Done]);
    // Paused (asserted above): nothing can reach a until b registers.
    assert!(a.changes().is_empty(), "paused while alone");
    // What a failed claim read back is no substitute for the news.
    let rival = Lease {
        mac: Mac([2, 0, 0, 0, 1, 2]),
        ..lease(2)
    };
    assert_eq!(
        a.apply(&[Op::Hold(rival)]).unwrap(),
        vec![Applied::Taken(Some(lease(2)))]
    );
    Leases::load(&b).unwrap();
    let mut seen = Vec::new();
    assert!(
        until(5, || {
            seen.extend(a.changes());
            !seen.is_empty()
        }),
        "a follows again once b is registered"
    );
    assert_eq!(
        seen,
        vec![(lease(2).ip, Some(lease(2)))],
        "b's write from before it registered, and not a's own"
    );
    // b gone: once its registration expires a is alone again, and a
    // third server's writes reach it when that one registers.
    drop(b);
    assert!(
        until(leases::HOLD_TTL_SECS as u64 + 5, || !*a.others.borrow()),
        "alone again once b's registration has expired"
    );
    let c3 = Etcd::connect(&c).unwrap();
    assert_eq!(c3.apply(&[Op::Put(lease(3))]).unwrap(), vec![Applied::Done]);
    Leases::load(&c3).unwrap();
    let mut seen = Vec::new();
    assert!(
        until(5, || {
            seen.extend(a.changes());
            !seen.is_empty()
        }),
        "a follows the third server"
    );
    assert_eq!(seen, vec![(lease(3).ip, Some(lease(3)))]);
}

/// `n` leases of distinct machines from 10.0.0.0 on, `expires` as given.
fn many_leases(n: u32, expires: u64) -> Vec<Op> {
    (0..n)
        .map(|i| {
            Op::Put(Lease {
                ip: Ipv4Addr::from(0x0a00_0000 + i),
                mac: Mac([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
                expires,
            })
        })
        .collect()
}

#[test]
fn a_site_too_big_for_one_etcd_answer_still_loads_and_lists_whole_needs_etcd() {
    let Some(m) = etcd() else { return };
    let c = config(&m, "/bootfleet/grown");
    let s = Etcd::connect(&c).unwrap();
    let n = 40_000;
    let ops = many_leases(n, crate::clock::now_ms() / 1000 + 3600);
    for chunk in ops.chunks(4096) {
        s.apply(chunk).unwrap();
    }
    // The site is past what one answer may carry: read whole, as before,
    // the client refuses it. (Without this the test could pass on a site
    // too small to matter.)
    let key = c.prefix.clone() + "/leases/";
    let whole = s.runtime.block_on({
        let mut client = s.client.clone();
        async move {
            client
                .get(key, Some(etcd_client::GetOptions::new().with_prefix()))
                .await
        }
    });
    assert!(
        whole
            .as_ref()
            .is_err_and(|e| e.to_string().contains("too large")),
        "one answer for the whole site was expected to be refused: {:?}",
        whole.map(|r| r.kvs().len())
    );
    // A server starts on it, and the site is listed, in pages.
    let fresh = Etcd::connect(&c).unwrap();
    assert_eq!(Leases::load(&fresh).unwrap().len(), n as usize);
    assert_eq!(fresh.listing().unwrap().len(), n as usize);
    // Machines and timelines are read the same way.
    for i in 0..(paged::PAGE as u32 + 20) {
        let m = crate::store::Enrolled {
            name: format!("m{i}"),
            mac: Mac([2, 1, 0, 0, (i >> 8) as u8, i as u8]),
            ip: Ipv4Addr::from(0x0b00_0000 + i),
            at: 1,
        };
        Machines::enrol(&fresh, &m).unwrap();
    }
    assert_eq!(
        Machines::list(&fresh).unwrap().len(),
        paged::PAGE as usize + 20
    );
}

#[test]
fn a_watch_that_fell_behind_a_compaction_reads_every_lease_again_needs_etcd() {
    let Some(m) = etcd() else { return };
    let c = config(&m, "/bootfleet/compacted");
    let expires = crate::clock::now_ms() / 1000 + 600;
    let lease = |i: u32| Lease {
        ip: Ipv4Addr::from(0x0a00_0000 + i),
        mac: Mac([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
        expires,
    };
    let a = Etcd::connect(&c).unwrap();
    Leases::load(&a).unwrap();
    assert!(
        until(5, || !*a.others.borrow()),
        "alone: a's watch pauses at the revision it loaded"
    );
    // Another server writes more than a page of leases (not yet
    // registered, so a hears nothing), then etcd's history is compacted
    // past a's revision: the events a would replay are gone.
    let b = Etcd::connect(&c).unwrap();
    let written: Vec<Op> = (1..=700).map(|i| Op::Put(lease(i))).collect();
    b.apply(&written).unwrap();
    let now = b
        .runtime
        .block_on({
            let mut client = b.client.clone();
            async move { client.get("x", None).await }
        })
        .unwrap()
        .header()
        .unwrap()
        .revision();
    b.runtime
        .block_on({
            let mut client = b.client.clone();
            async move { client.compact(now, None).await }
        })
        .unwrap();
    assert_eq!(a.rereads(), 0);
    // b registers: a goes on, finds its revision compacted, reads the site
    // again and hears of all 700.
    Leases::load(&b).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    assert!(
        until(15, || {
            seen.extend(a.changes());
            seen.len() >= 700
        }),
        "a heard of {} of b's 700 leases",
        seen.len()
    );
    assert_eq!(seen.get(&lease(700).ip), Some(&Some(lease(700))));
    assert_eq!(a.rereads(), 1, "one re-read, counted");
    // And it follows again from there.
    b.apply(&[Op::Put(lease(701))]).unwrap();
    assert!(
        until(5, || a.changes().iter().any(|(ip, _)| *ip == lease(701).ip)),
        "a follows b again after the re-read"
    );
}

#[test]
fn one_server_of_a_site_sweeps_and_another_takes_over_when_it_is_gone_needs_etcd() {
    let Some(m) = etcd() else { return };
    let c = config(&m, "/bootfleet/sweep");
    let b = Etcd::connect(&c).unwrap();
    {
        let a = Etcd::connect(&c).unwrap();
        assert!(a.sweeper(), "the first to ask sweeps");
        assert!(a.sweeper(), "and goes on sweeping");
        assert!(!b.sweeper(), "one sweeper per site");
        // A removal at a revision a no longer has is refused: b renewed
        // the lease meanwhile.
        let old = Lease {
            ip: Ipv4Addr::new(10, 0, 0, 5),
            mac: Mac([2, 0, 0, 0, 0, 5]),
            expires: 10,
        };
        a.apply(&[Op::Put(old.clone())]).unwrap();
        Leases::load(&b).unwrap();
        let renewed = Lease {
            expires: crate::clock::now_ms() / 1000 + 600,
            ..old.clone()
        };
        b.apply(&[Op::Put(renewed.clone())]).unwrap();
        let got = a
            .apply(&[Op::Forget {
                ip: old.ip,
                mac: old.mac,
                expired_by: crate::clock::now_ms() / 1000,
            }])
            .unwrap();
        assert_eq!(
            got,
            vec![Applied::Taken(Some(renewed.clone()))],
            "a renewed lease is not forgotten"
        );
        assert!(b.listing().unwrap().iter().any(|(l, _)| *l == renewed));
    }
    assert!(
        until(leases::HOLD_TTL_SECS as u64 + 5, || b.sweeper()),
        "b sweeps once a's etcd lease has expired"
    );
}
