//! Address assignment for full-mode DHCP, pure: who gets which address.
//!
//! In order of preference a client gets: its reservation from the spec; the
//! address it held before (sticky: the booted OS, which asks again without
//! PXE options, and an enrolled machine after a reboot get the same address
//! back, even after the lease expired, unless someone else took it since);
//! the address it asks for (option 50) when that is free; otherwise the
//! free pool address that has been unused longest, addresses never leased
//! first. Reserved, declined (quarantined) and the server's and gateway's
//! own addresses are never handed out from the pool.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use crate::spec::Mac;

pub use crate::store::Lease;

/// The current leases and quarantined addresses.
#[derive(Debug, Default)]
pub struct Table {
    by_ip: HashMap<Ipv4Addr, Lease>,
    by_mac: HashMap<Mac, Ipv4Addr>,
    /// Declined addresses and the time they may be used again.
    quarantine: HashMap<Ipv4Addr, u64>,
    /// Per pool (by its first address), where the search for a
    /// never-leased address starts: the last one found, lowered whenever
    /// an address of the pool leaves the table. A cache only: when the
    /// search from here finds nothing, the whole pool is scanned, so a
    /// stale hint costs time, never an address. Without it, filling a
    /// pool of n addresses costs n^2/2 lookups.
    scan: Mutex<BTreeMap<u32, u32>>,
}

impl Clone for Table {
    fn clone(&self) -> Table {
        Table {
            by_ip: self.by_ip.clone(),
            by_mac: self.by_mac.clone(),
            quarantine: self.quarantine.clone(),
            scan: Mutex::new(self.hints().clone()),
        }
    }
}

impl Table {
    /// Records `lease`, replacing the holder's earlier address.
    pub fn insert(&mut self, lease: Lease) {
        if let Some(old) = self.by_mac.insert(lease.mac, lease.ip) {
            if old != lease.ip {
                self.by_ip.remove(&old);
            }
        }
        if let Some(prev) = self.by_ip.insert(lease.ip, lease.clone()) {
            if prev.mac != lease.mac {
                self.by_mac.remove(&prev.mac);
            }
        }
    }

    /// Forgets the lease on `ip` (RELEASE).
    pub fn release(&mut self, ip: Ipv4Addr, mac: Mac) {
        if self.by_ip.get(&ip).is_some_and(|l| l.mac == mac) {
            self.by_ip.remove(&ip);
            self.by_mac.remove(&mac);
            self.lower_hint(ip);
        }
    }

    /// Starts the next search for a never-leased address at `ip` (taken
    /// into the pool when searching). Servers sharing a pool each start
    /// at a point of their own ([`Pool::point`]), so they seldom reach for
    /// the same address at once: two that scanned from the pool's start
    /// together would both pick each next address, and one of them would
    /// lose every claim.
    pub fn scan_from(&mut self, pool: &Pool, ip: Ipv4Addr) {
        self.hints().insert(u32::from(pool.first), u32::from(ip));
    }

    fn hints(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, u32>> {
        self.scan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where `pool`'s next search starts.
    fn hint(&self, pool: &Pool) -> u32 {
        let first = u32::from(pool.first);
        self.hints().get(&first).copied().unwrap_or(first)
    }

    fn set_hint(&self, pool: &Pool, n: u32) {
        self.hints().insert(u32::from(pool.first), n);
    }

    /// `ip` left the table: the search of the pool it lies in (the one
    /// with the nearest first address below it) starts no later than it.
    fn lower_hint(&mut self, ip: Ipv4Addr) {
        let n = u32::from(ip);
        if let Some((_, h)) = self.hints().range_mut(..=n).next_back() {
            *h = (*h).min(n);
        }
    }

    /// Keeps `ip` out of use until `until` (DECLINE: someone else has it).
    pub fn quarantine(&mut self, ip: Ipv4Addr, until: u64) {
        if let Some(l) = self.by_ip.remove(&ip) {
            self.by_mac.remove(&l.mac);
        }
        self.quarantine.insert(ip, until);
        self.lower_hint(ip);
    }

    /// The lease on `ip`.
    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip)
    }

    /// The lease `mac` holds or held.
    pub fn by_mac(&self, mac: Mac) -> Option<&Lease> {
        self.by_mac.get(&mac).and_then(|ip| self.by_ip.get(ip))
    }

    /// Every lease.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.by_ip.values()
    }

    fn quarantined(&self, ip: Ipv4Addr, now: u64) -> bool {
        self.quarantine.get(&ip).is_some_and(|until| now < *until)
    }

    /// How much of `pool` is taken at `now`: addresses leased (unexpired,
    /// reservations not counted) and quarantined.
    pub fn pool_use(&self, pool: &Pool, now: u64) -> (u64, u64) {
        let taken = |ip: &Ipv4Addr| pool.in_range(*ip) && !pool.excluded.contains(ip);
        let leased = self
            .by_ip
            .values()
            .filter(|l| l.expires > now && taken(&l.ip))
            .count();
        let quarantined = self
            .quarantine
            .iter()
            .filter(|(ip, until)| now < **until && taken(ip))
            .count();
        (leased as u64, quarantined as u64)
    }
}

/// Where a client's address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Its reservation in the spec.
    Reserved(Ipv4Addr),
    /// The address it held before.
    Sticky(Ipv4Addr),
    /// The free address it asked for.
    Requested(Ipv4Addr),
    /// A free pool address.
    Pool(Ipv4Addr),
    /// No address is free.
    Exhausted,
}

impl Assignment {
    /// The address, if any.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        match *self {
            Assignment::Reserved(ip)
            | Assignment::Sticky(ip)
            | Assignment::Requested(ip)
            | Assignment::Pool(ip) => Some(ip),
            Assignment::Exhausted => None,
        }
    }
}

/// The dynamic range and the addresses it must not hand out.
#[derive(Debug, Clone)]
pub struct Pool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    /// MAC -> reserved address (the spec's nodes).
    pub reservations: HashMap<Mac, Ipv4Addr>,
    /// Addresses never given from the pool: reservations, server, gateway.
    pub excluded: std::collections::HashSet<Ipv4Addr>,
}

impl Pool {
    fn in_range(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }

    /// The pool address `seed` lands on, spread evenly over the range.
    pub fn point(&self, seed: u64) -> Ipv4Addr {
        let first = u32::from(self.first);
        let span = u64::from(u32::from(self.last).saturating_sub(first)) + 1;
        Ipv4Addr::from(first + (seed % span) as u32)
    }

    /// How many addresses the pool can hand out.
    pub fn size(&self) -> u64 {
        let range =
            u64::from(u32::from(self.last)).saturating_sub(u64::from(u32::from(self.first)));
        let excluded = self
            .excluded
            .iter()
            .filter(|ip| self.in_range(**ip))
            .count() as u64;
        (range + 1).saturating_sub(excluded)
    }

    /// True when `ip` may go to `mac` now.
    fn free_for(&self, table: &Table, ip: Ipv4Addr, mac: Mac, now: u64) -> bool {
        self.in_range(ip)
            && !self.excluded.contains(&ip)
            && !table.quarantined(ip, now)
            && table
                .by_ip(ip)
                .is_none_or(|l| l.mac == mac || l.expires <= now)
    }

    /// The address for `mac`, asking for `requested`, at unix time `now`.
    pub fn assign(
        &self,
        table: &Table,
        mac: Mac,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Assignment {
        if let Some(ip) = self.reservations.get(&mac) {
            return Assignment::Reserved(*ip);
        }
        if let Some(l) = table.by_mac(mac) {
            if self.free_for(table, l.ip, mac, now) {
                return Assignment::Sticky(l.ip);
            }
        }
        if let Some(ip) = requested.filter(|ip| self.free_for(table, *ip, mac, now)) {
            // Not someone else's expired lease: those stay theirs while
            // never-used addresses remain.
            if table.by_ip(ip).is_none_or(|l| l.mac == mac) {
                return Assignment::Requested(ip);
            }
        }
        // Never-leased addresses first, from where the last one was found
        // up to the pool's end, then from its start (below the hint: a
        // quarantine ended, or the search started mid-pool).
        let first = u32::from(self.first);
        let last = u32::from(self.last);
        let hint = table.hint(self).clamp(first, last.max(first));
        for n in (hint..=last).chain(first..hint) {
            let ip = Ipv4Addr::from(n);
            if table.by_ip(ip).is_none() && self.free_for(table, ip, mac, now) {
                table.set_hint(self, n);
                return Assignment::Pool(ip);
            }
        }
        // Then the one expired longest ago.
        let mut best: Option<(u64, Ipv4Addr)> = None;
        for n in first..=last {
            let ip = Ipv4Addr::from(n);
            let Some(expires) = table.by_ip(ip).map(|l| l.expires) else {
                continue;
            };
            if self.free_for(table, ip, mac, now) && best.is_none_or(|(k, _)| expires < k) {
                best = Some((expires, ip));
            }
        }
        best.map_or(Assignment::Exhausted, |(_, ip)| Assignment::Pool(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0, 0, n])
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn pool() -> Pool {
        let mut reservations = HashMap::new();
        reservations.insert(mac(1), ip(10));
        Pool {
            first: ip(100),
            last: ip(103),
            reservations,
            excluded: [ip(10), ip(101)].into_iter().collect(),
        }
    }

    #[test]
    fn the_pool_counts_what_it_can_hand_out_and_what_is_taken_now() {
        let p = pool();
        assert_eq!(p.size(), 3, "100..=103 less the excluded 101");
        let mut t = Table::default();
        let lease = |n, ipl, expires| Lease {
            ip: ip(ipl),
            mac: mac(n),
            expires,
        };
        t.insert(lease(2, 100, 50));
        t.insert(lease(3, 102, 10));
        t.insert(lease(1, 10, 50));
        t.quarantine(ip(103), 60);
        assert_eq!(
            t.pool_use(&p, 20),
            (1, 1),
            "102 expired; 10 is a reservation"
        );
        assert_eq!(t.pool_use(&p, 70), (0, 0));
    }

    #[test]
    fn reservations_win() {
        assert_eq!(
            pool().assign(&Table::default(), mac(1), Some(ip(100)), 0),
            Assignment::Reserved(ip(10))
        );
    }

    #[test]
    fn the_pool_skips_excluded_and_taken_addresses() {
        let p = pool();
        let mut t = Table::default();
        assert_eq!(p.assign(&t, mac(2), None, 0), Assignment::Pool(ip(100)));
        t.insert(Lease {
            ip: ip(100),
            mac: mac(2),
            expires: 100,
        });
        assert_eq!(
            p.assign(&t, mac(3), None, 0),
            Assignment::Pool(ip(102)),
            ".101 is excluded"
        );
        t.insert(Lease {
            ip: ip(102),
            mac: mac(3),
            expires: 100,
        });
        t.insert(Lease {
            ip: ip(103),
            mac: mac(4),
            expires: 100,
        });
        assert_eq!(p.assign(&t, mac(5), None, 50), Assignment::Exhausted);
    }

    #[test]
    fn a_client_gets_its_address_back_even_after_expiry() {
        let p = pool();
        let mut t = Table::default();
        t.insert(Lease {
            ip: ip(103),
            mac: mac(2),
            expires: 100,
        });
        assert_eq!(p.assign(&t, mac(2), None, 50), Assignment::Sticky(ip(103)));
        assert_eq!(
            p.assign(&t, mac(2), Some(ip(100)), 5000),
            Assignment::Sticky(ip(103))
        );
    }

    #[test]
    fn expired_leases_are_reclaimed_only_when_nothing_else_is_free_oldest_first() {
        let p = pool();
        let mut t = Table::default();
        t.insert(Lease {
            ip: ip(100),
            mac: mac(2),
            expires: 300,
        });
        t.insert(Lease {
            ip: ip(102),
            mac: mac(3),
            expires: 200,
        });
        assert_eq!(
            p.assign(&t, mac(9), None, 1000),
            Assignment::Pool(ip(103)),
            "never used first"
        );
        t.insert(Lease {
            ip: ip(103),
            mac: mac(4),
            expires: 900,
        });
        assert_eq!(
            p.assign(&t, mac(9), None, 1000),
            Assignment::Pool(ip(102)),
            "then the longest expired"
        );
        assert_eq!(
            p.assign(&t, mac(9), None, 100),
            Assignment::Exhausted,
            "nothing expired yet"
        );
    }

    #[test]
    fn a_requested_free_address_is_granted_but_not_another_clients() {
        let p = pool();
        let mut t = Table::default();
        assert_eq!(
            p.assign(&t, mac(2), Some(ip(103)), 0),
            Assignment::Requested(ip(103))
        );
        assert_eq!(
            p.assign(&t, mac(2), Some(ip(101)), 0),
            Assignment::Pool(ip(100)),
            "excluded"
        );
        assert_eq!(
            p.assign(&t, mac(2), Some(ip(10)), 0),
            Assignment::Pool(ip(100)),
            "someone's reservation"
        );
        t.insert(Lease {
            ip: ip(103),
            mac: mac(3),
            expires: 10,
        });
        assert_eq!(
            p.assign(&t, mac(2), Some(ip(103)), 0),
            Assignment::Pool(ip(100)),
            "held by another"
        );
    }

    #[test]
    fn declined_addresses_are_quarantined_until_their_time() {
        let p = pool();
        let mut t = Table::default();
        t.insert(Lease {
            ip: ip(100),
            mac: mac(2),
            expires: 100,
        });
        t.quarantine(ip(100), 500);
        assert!(t.by_mac(mac(2)).is_none());
        assert_eq!(
            p.assign(&t, mac(2), Some(ip(100)), 10),
            Assignment::Pool(ip(102))
        );
        assert_eq!(
            p.assign(&t, mac(3), Some(ip(100)), 600),
            Assignment::Requested(ip(100))
        );
    }

    #[test]
    fn addresses_given_back_below_the_scan_point_are_found_again() {
        let p = pool();
        let mut t = Table::default();
        for (m, want) in [(2, 100), (3, 102), (4, 103)] {
            assert_eq!(p.assign(&t, mac(m), None, 0), Assignment::Pool(ip(want)));
            t.insert(Lease {
                ip: ip(want),
                mac: mac(m),
                expires: 100,
            });
        }
        t.release(ip(100), mac(2));
        assert_eq!(p.assign(&t, mac(5), None, 0), Assignment::Pool(ip(100)));
        t.insert(Lease {
            ip: ip(100),
            mac: mac(5),
            expires: 100,
        });
        t.quarantine(ip(102), 10);
        assert_eq!(
            p.assign(&t, mac(6), None, 20),
            Assignment::Pool(ip(102)),
            "after its quarantine"
        );
    }

    #[test]
    fn filling_a_large_pool_finds_each_next_address_directly() {
        let p = Pool {
            first: Ipv4Addr::new(10, 1, 0, 0),
            last: Ipv4Addr::new(10, 1, 255, 255),
            reservations: HashMap::new(),
            excluded: Default::default(),
        };
        let mut t = Table::default();
        for n in 0..65_536u32 {
            let m = Mac([2, 0, 0, 0, (n >> 8) as u8, n as u8]);
            let got = p.assign(&t, m, None, 0).ip().unwrap();
            assert_eq!(u32::from(got), u32::from(p.first) + n);
            t.insert(Lease {
                ip: got,
                mac: m,
                expires: 100,
            });
        }
        assert_eq!(p.assign(&t, mac(99), None, 50), Assignment::Exhausted);
    }

    #[test]
    fn a_search_started_mid_pool_runs_to_the_end_then_wraps_to_the_start() {
        let p = Pool {
            first: Ipv4Addr::new(10, 1, 0, 0),
            last: Ipv4Addr::new(10, 1, 255, 255),
            reservations: HashMap::new(),
            excluded: Default::default(),
        };
        assert_eq!(p.point(0), p.first);
        assert_eq!(p.point(65_536 + 7), Ipv4Addr::new(10, 1, 0, 7));
        assert_eq!(p.point(u64::MAX), Ipv4Addr::new(10, 1, 255, 255));
        let mut t = Table::default();
        let start = 40_000u32;
        t.scan_from(&p, p.point(u64::from(start)));
        // Each next address is found directly (a search that began at the
        // start again after wrapping would take minutes here).
        for n in 0..65_536u32 {
            let m = Mac([2, 0, 0, 0, (n >> 8) as u8, n as u8]);
            let got = p.assign(&t, m, None, 0).ip().unwrap();
            let want = u32::from(p.first) + (start + n) % 65_536;
            assert_eq!(u32::from(got), want, "the {n}th address");
            t.insert(Lease {
                ip: got,
                mac: m,
                expires: 100,
            });
        }
        assert_eq!(p.assign(&t, mac(99), None, 50), Assignment::Exhausted);
    }

    #[test]
    fn no_address_is_ever_bound_to_two_macs() {
        let p = pool();
        let mut t = Table::default();
        for round in 0..50u64 {
            let m = mac((round % 7) as u8 + 2);
            if let Some(a) = p
                .assign(&t, m, Some(ip(100 + (round % 4) as u8)), round * 10)
                .ip()
            {
                t.insert(Lease {
                    ip: a,
                    mac: m,
                    expires: round * 10 + 25,
                });
            }
            let mut seen = HashMap::new();
            for l in t.leases().filter(|l| l.expires > round * 10) {
                assert!(seen.insert(l.ip, l.mac).is_none(), "{} twice", l.ip);
            }
            for l in t.leases() {
                assert_eq!(t.by_mac(l.mac).map(|x| x.ip), Some(l.ip), "indexes agree");
            }
        }
    }
}
