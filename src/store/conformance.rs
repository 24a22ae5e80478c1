//! The contracts of `super` as tests, run against every backend: `open`
//! gives a handle on the same site each time (a new process, or another
//! server); a handle is dropped before the next is opened unless a test
//! needs two at once ([`shared`], for backends that serve several servers).

use std::net::Ipv4Addr;

use super::{Applied, Enrolled, Enrolment, Lease, Op, Store};
use crate::spec::Mac;

fn mac(last: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, last])
}

fn lease(last: u8, expires: u64) -> Lease {
    Lease {
        ip: Ipv4Addr::new(10, 0, 0, 100 + last),
        mac: mac(last),
        expires,
    }
}

fn machine(last: u8, name: &str) -> Enrolled {
    Enrolled {
        name: name.into(),
        mac: mac(last),
        ip: Ipv4Addr::new(10, 0, 0, 200 + last),
        at: 1000 + u64::from(last),
    }
}

fn sorted(mut v: Vec<Lease>) -> Vec<Lease> {
    v.sort_by_key(|l| l.ip);
    v
}

/// Every single-handle contract.
pub fn run(open: &dyn Fn() -> Store) {
    leases_are_durable_applied_in_order_and_whole(open);
    leases_long_expired_are_forgotten_and_no_others(open);
    machines_are_enrolled_once_without_clashes(open);
    the_site_key_is_created_once(open);
    timelines_keep_the_last_record_per_machine(open);
}

fn leases_are_durable_applied_in_order_and_whole(open: &dyn Fn() -> Store) {
    let (a, b) = (lease(1, 1234), lease(2, 99));
    {
        let s = open();
        assert_eq!(s.leases.load().unwrap(), vec![], "a new site has none");
        s.leases.apply(&[Op::Put(a.clone())]).unwrap();
        s.leases.apply(&[Op::Put(b.clone())]).unwrap();
        s.leases
            .apply(&[Op::Remove {
                ip: b.ip,
                mac: b.mac,
            }])
            .unwrap();
        s.leases.apply(&[]).unwrap();
        let done = s.leases.apply(&[Op::Hold(lease(7, 10))]).unwrap();
        assert_eq!(
            done,
            vec![Applied::Done],
            "one server's own hold is always done"
        );
    }
    let s = open();
    let stored: Vec<Lease> = s
        .leases
        .load()
        .unwrap()
        .into_iter()
        .filter(|l| l.mac != mac(7))
        .collect();
    assert_eq!(stored, vec![a.clone()], "reopened");
    let c = Lease {
        ip: Ipv4Addr::new(10, 0, 0, 150),
        ..a.clone()
    };
    let renewed = Lease {
        expires: 5678,
        ..b.clone()
    };
    s.leases
        .apply(&[
            Op::Put(b.clone()),
            Op::Remove {
                ip: a.ip,
                mac: a.mac,
            },
            Op::Put(c.clone()),
            Op::Put(renewed.clone()),
        ])
        .unwrap();
    drop(s);
    let s = open();
    let stored: Vec<Lease> = s
        .leases
        .load()
        .unwrap()
        .into_iter()
        .filter(|l| l.mac != mac(7))
        .collect();
    assert_eq!(
        sorted(stored),
        vec![renewed, c],
        "one batch, applied in order"
    );
}

fn leases_long_expired_are_forgotten_and_no_others(open: &dyn Fn() -> Store) {
    let s = open();
    let before: Vec<Lease> = s.leases.load().unwrap();
    let (old, recent) = (lease(20, 100), lease(21, 900));
    s.leases
        .apply(&[Op::Put(old.clone()), Op::Put(recent.clone())])
        .unwrap();
    let forget = |l: &Lease, mac: Mac| Op::Forget {
        ip: l.ip,
        mac,
        expired_by: 500,
    };
    let got = s
        .leases
        .apply(&[
            forget(&old, old.mac),
            forget(&recent, recent.mac),
            forget(&lease(22, 0), mac(22)),
        ])
        .unwrap();
    assert_eq!(
        got,
        vec![
            Applied::Done,
            Applied::Taken(Some(recent.clone())),
            Applied::Done
        ],
        "the expired one forgotten, the unexpired one kept, an absent one nothing to do"
    );
    let got = s.leases.apply(&[forget(&recent, mac(99))]).unwrap();
    assert_eq!(
        got,
        vec![Applied::Taken(Some(recent.clone()))],
        "another machine's lease is kept"
    );
    drop(s);
    let s = open();
    let now: Vec<Lease> = s.leases.load().unwrap();
    assert!(!now.contains(&old), "forgotten for good");
    assert!(now.contains(&recent));
    assert_eq!(now.len(), before.len() + 1);
    s.leases
        .apply(&[Op::Remove {
            ip: recent.ip,
            mac: recent.mac,
        }])
        .unwrap();
}

fn machines_are_enrolled_once_without_clashes(open: &dyn Fn() -> Store) {
    let w1 = machine(1, "w-1");
    {
        let s = open();
        assert_eq!(s.machines.list().unwrap(), vec![]);
        assert_eq!(s.machines.enrol(&w1).unwrap(), Enrolment::Added);
        let again = Enrolled {
            name: "w-other".into(),
            ..w1.clone()
        };
        assert_eq!(
            s.machines.enrol(&again).unwrap(),
            Enrolment::Already(w1.clone()),
            "a MAC is enrolled once; the first record stands"
        );
        let same_name = Enrolled {
            ip: Ipv4Addr::new(10, 0, 0, 250),
            ..machine(2, "w-1")
        };
        assert_eq!(
            s.machines.enrol(&same_name).unwrap(),
            Enrolment::Clash(w1.clone())
        );
        let same_ip = Enrolled {
            ip: w1.ip,
            ..machine(3, "w-3")
        };
        assert_eq!(
            s.machines.enrol(&same_ip).unwrap(),
            Enrolment::Clash(w1.clone())
        );
    }
    let s = open();
    let w2 = machine(2, "w-2");
    assert_eq!(s.machines.enrol(&w2).unwrap(), Enrolment::Added);
    assert_eq!(
        s.machines.list().unwrap(),
        vec![w1, w2],
        "in enrolment order"
    );
}

fn the_site_key_is_created_once(open: &dyn Fn() -> Store) {
    {
        let s = open();
        assert_eq!(s.keys.get().unwrap(), None, "get creates none");
        assert_eq!(s.keys.get().unwrap(), None);
        assert_eq!(s.keys.get_or_create([7; 32]).unwrap(), ([7; 32], true));
        assert_eq!(s.keys.get_or_create([8; 32]).unwrap(), ([7; 32], false));
    }
    let s = open();
    assert_eq!(s.keys.get().unwrap(), Some([7; 32]));
    assert_eq!(s.keys.get_or_create([9; 32]).unwrap(), ([7; 32], false));
}

fn timelines_keep_the_last_record_per_machine(open: &dyn Fn() -> Store) {
    {
        let s = open();
        s.timelines
            .save(
                "10.0.0.2:8080",
                &[(mac(1), b"one".to_vec()), (mac(2), b"two".to_vec())],
            )
            .unwrap();
        s.timelines
            .save("10.0.0.2:8080", &[(mac(1), b"uno".to_vec())])
            .unwrap();
        s.timelines.save("10.0.0.2:8080", &[]).unwrap();
    }
    let s = open();
    let mut rows = s.timelines.load().unwrap();
    rows.sort();
    assert_eq!(
        rows,
        vec![(mac(1), b"uno".to_vec()), (mac(2), b"two".to_vec())]
    );
    // Forgotten: every record of the machine, whichever server saved it.
    s.timelines
        .save("10.0.0.3:8080", &[(mac(1), b"eins".to_vec())])
        .unwrap();
    s.timelines.forget(&[mac(1), mac(7)]).unwrap();
    drop(s);
    let s = open();
    assert_eq!(s.timelines.load().unwrap(), vec![(mac(2), b"two".to_vec())]);
    s.timelines.forget(&[mac(2)]).unwrap();
}

/// The contracts that take two servers at once: `a` and `b` are handles
/// on one site, open together.
pub fn shared(a: &Store, b: &Store) {
    assert_eq!(a.keys.get_or_create([1; 32]).unwrap(), ([1; 32], true));
    assert_eq!(
        b.keys.get_or_create([2; 32]).unwrap(),
        ([1; 32], false),
        "the second server signs with the first one's key"
    );
    let w = machine(9, "w-9");
    assert_eq!(a.machines.enrol(&w).unwrap(), Enrolment::Added);
    assert_eq!(
        b.machines.list().unwrap(),
        vec![w.clone()],
        "known to all at once"
    );
    let rival = Enrolled {
        mac: mac(10),
        ..w.clone()
    };
    assert_eq!(b.machines.enrol(&rival).unwrap(), Enrolment::Clash(w));
    let l = lease(9, 4242);
    a.leases.apply(&[Op::Put(l.clone())]).unwrap();
    assert!(b.leases.load().unwrap().contains(&l));
    // Both enrol at once, from threads: exactly one wins each name.
    let (ma, mb) = (
        machine(11, "w-race"),
        Enrolled {
            ip: Ipv4Addr::new(10, 0, 0, 99),
            ..machine(12, "w-race")
        },
    );
    let (ra, rb) = std::thread::scope(|t| {
        let ja = t.spawn(|| a.machines.enrol(&ma).unwrap());
        let jb = t.spawn(|| b.machines.enrol(&mb).unwrap());
        (ja.join().unwrap(), jb.join().unwrap())
    });
    let added = [&ra, &rb]
        .iter()
        .filter(|r| ***r == Enrolment::Added)
        .count();
    assert_eq!(added, 1, "{ra:?} {rb:?}");
    // Each server's view of a machine is kept; a server reads the
    // others', not its own; a restarted server replaces its own.
    a.timelines.load().unwrap();
    b.timelines.load().unwrap();
    a.timelines
        .save("a:80", &[(mac(9), b"a1".to_vec())])
        .unwrap();
    b.timelines
        .save("b:80", &[(mac(9), b"b1".to_vec())])
        .unwrap();
    assert_eq!(
        a.timelines.changed("a:80").unwrap(),
        vec![(mac(9), b"b1".to_vec())]
    );
    assert_eq!(
        b.timelines.changed("b:80").unwrap(),
        vec![(mac(9), b"a1".to_vec())]
    );
    assert_eq!(a.timelines.changed("a:80").unwrap(), vec![], "read once");
    a.timelines
        .save("a:80", &[(mac(9), b"a2".to_vec())])
        .unwrap();
    let mut all = b.timelines.load().unwrap();
    all.sort();
    assert_eq!(
        all,
        vec![(mac(9), b"a2".to_vec()), (mac(9), b"b1".to_vec())]
    );
}

fn now() -> u64 {
    crate::clock::now_secs()
}

/// Claims between two servers: `a` and `b` are handles on one site.
pub fn claims(a: &Store, b: &Store) {
    let t = now();
    let x = Lease {
        expires: t + 30,
        ..lease(20, 0)
    };
    assert_eq!(
        a.leases.apply(&[Op::Hold(x.clone())]).unwrap(),
        vec![Applied::Done]
    );
    let rival = Lease {
        mac: mac(21),
        ..x.clone()
    };
    let taken = vec![Applied::Taken(Some(x.clone()))];
    assert_eq!(
        b.leases.apply(&[Op::Hold(rival.clone())]).unwrap(),
        taken,
        "offered elsewhere"
    );
    assert_eq!(
        b.leases.apply(&[Op::Put(rival.clone())]).unwrap(),
        taken,
        "bound elsewhere"
    );
    // The hold reaches the other server as news.
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    while !seen.contains(&(x.ip, Some(x.clone()))) && start.elapsed().as_secs() < 5 {
        seen.extend(b.leases.changes());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen.contains(&(x.ip, Some(x.clone()))), "{seen:?}");
    assert!(
        a.leases.changes().iter().all(|(ip, _)| *ip != x.ip),
        "its own writes are not news"
    );
    // The machine that was offered it may take it from either server.
    let bound = Lease {
        expires: t + 3600,
        ..x.clone()
    };
    assert_eq!(
        b.leases.apply(&[Op::Put(bound.clone())]).unwrap(),
        vec![Applied::Done]
    );
    // Another machine's expired lease is no claim.
    let old = Lease {
        expires: t - 1,
        ..lease(22, 0)
    };
    assert_eq!(
        a.leases.apply(&[Op::Put(old.clone())]).unwrap(),
        vec![Applied::Done]
    );
    let reuse = Lease {
        mac: mac(23),
        expires: t + 60,
        ..old
    };
    assert_eq!(
        b.leases.apply(&[Op::Hold(reuse)]).unwrap(),
        vec![Applied::Done]
    );
    // A declined address is kept from every machine, on every server.
    let q = Ipv4Addr::new(10, 0, 0, 240);
    let quarantined = Op::Quarantine {
        ip: q,
        until: t + 600,
    };
    assert_eq!(a.leases.apply(&[quarantined]).unwrap(), vec![Applied::Done]);
    let wanted = Lease {
        ip: q,
        mac: mac(24),
        expires: t + 30,
    };
    assert!(
        matches!(&b.leases.apply(&[Op::Hold(wanted)]).unwrap()[0],
            Applied::Taken(Some(l)) if l.mac == super::QUARANTINED),
        "quarantined for b too"
    );
    // Two servers claiming one address at once: exactly one wins, in a
    // batch with an address nobody else wants (which is done either way).
    for round in 0..20u8 {
        let ip = Ipv4Addr::new(10, 0, 1, round);
        let claim = |m: u8, other: u8| {
            vec![
                Op::Hold(Lease {
                    ip,
                    mac: mac(m),
                    expires: t + 30,
                }),
                Op::Hold(Lease {
                    ip: Ipv4Addr::new(10, 0, 2 + other, round),
                    mac: mac(m),
                    expires: t + 30,
                }),
            ]
        };
        let (ra, rb) = std::thread::scope(|s| {
            let ja = s.spawn(|| a.leases.apply(&claim(40, 0)).unwrap());
            let jb = s.spawn(|| b.leases.apply(&claim(41, 1)).unwrap());
            (ja.join().unwrap(), jb.join().unwrap())
        });
        let wins = [&ra[0], &rb[0]]
            .iter()
            .filter(|r| ***r == Applied::Done)
            .count();
        assert_eq!(wins, 1, "round {round}: {ra:?} {rb:?}");
        assert_eq!((&ra[1], &rb[1]), (&Applied::Done, &Applied::Done));
    }
}
