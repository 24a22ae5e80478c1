//! Fuzzes the DHCP server's entry point: decode, decide (full mode, proxy
//! mode on ports 67 and 4011), apply the change to the lease table, encode
//! the reply. The input is a sequence of datagrams (split on the byte
//! sequence `DHCP`) handled in order against one table, as the server
//! does, so the fuzzer can build up state. Checks, besides "never
//! panics": every reply encodes; no live lease is ever held by two MACs;
//! a bound address is the client's reservation or in the pool.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use bootfleet::dhcp::boot::BootConfig;
use bootfleet::dhcp::policy::{Change, Config, decide};
use bootfleet::dhcp::pool::{Pool, Table};
use bootfleet::dhcp::{proxy, wire};
use bootfleet::spec::{BiosLoader, DhcpMode, Mac};
use dhcproto::Encodable;
use libfuzzer_sys::fuzz_target;

fn config(mode: DhcpMode) -> Config {
    let mut reservations = HashMap::new();
    reservations.insert(Mac([0x52, 0x54, 0, 0, 0, 1]), Ipv4Addr::new(10, 0, 0, 10));
    Config {
        segment: "fuzz".into(),
        mode,
        server: Ipv4Addr::new(10, 0, 0, 2),
        subnet: "10.0.0.0/24".parse().unwrap(),
        gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
        dns: vec![Ipv4Addr::new(10, 0, 0, 1)],
        lease_secs: 600,
        pool: Pool {
            first: Ipv4Addr::new(10, 0, 0, 100),
            last: Ipv4Addr::new(10, 0, 0, 107),
            reservations,
            excluded: [Ipv4Addr::new(10, 0, 0, 10)].into_iter().collect(),
        },
        boot: BootConfig {
            bios_loader: BiosLoader::Ipxe,
            http_base: "http://10.0.0.2:8080".into(),
        },
        enrol_unknown: true,
    }
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(4).position(|w| w == b"DHCP") {
        out.push(&rest[..i]);
        rest = &rest[i + 4..];
    }
    out.push(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let full = config(DhcpMode::Full);
    let proxied = config(DhcpMode::Proxy);
    let mut table = Table::default();
    let mut now = 1_000_000u64;
    for (i, datagram) in split(data).into_iter().enumerate() {
        now += u64::from(datagram.first().copied().unwrap_or(0)) * 7;
        let Ok(req) = wire::decode(datagram) else {
            continue;
        };
        for d in [
            decide(&req, &proxied, &table, now),
            proxy::on_port_4011(&req, &proxied),
        ] {
            assert!(d.change.is_none(), "a proxy touched leases");
            if let Some((reply, _)) = d.reply {
                assert!(reply.yiaddr().is_unspecified(), "a proxy offered an address");
                reply.to_vec().expect("proxy reply encodes");
            }
        }
        let d = decide(&req, &full, &table, now);
        if let Some((reply, _)) = &d.reply {
            reply.to_vec().expect("reply encodes");
        }
        match d.change {
            Some(Change::Bind(l)) => {
                let reserved = full.pool.reservations.get(&l.mac) == Some(&l.ip);
                let pooled = full.pool.first <= l.ip && l.ip <= full.pool.last;
                assert!(reserved || pooled, "bound {} outside the pool", l.ip);
                table.insert(l);
            }
            Some(Change::Offer(l)) => table.insert(l),
            Some(Change::Release { ip, mac }) => table.release(ip, mac),
            Some(Change::Decline { ip, until }) => table.quarantine(ip, until),
            None => {}
        }
        let mut seen = HashSet::new();
        for l in table.leases().filter(|l| l.expires > now) {
            assert!(seen.insert(l.ip), "step {i}: {} held twice", l.ip);
        }
        let macs: HashSet<_> = table.leases().map(|l| l.mac).collect();
        assert_eq!(macs.len(), table.leases().count(), "a MAC holds two leases");
    }
});
