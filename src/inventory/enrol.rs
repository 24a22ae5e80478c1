//! Machines that booted here without being in the spec, enrolled as the
//! spec's `[enrolment]` says: a name made from the MAC, the enrolment role,
//! and the address the machine had when it enrolled, kept for good (in the
//! store, [`crate::store::Machines`]) so the machine keeps its name,
//! address and token across restarts.
//!
//! The decisions here are pure ([`enrol`], [`as_nodes`]); the store makes
//! the one that must be made in one place for a site of several servers.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::spec::{Mac, NodeSpec, Spec};
pub use crate::store::Enrolled;

/// What to do with a machine seen booting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enrol it with this record.
    Enrol(Enrolled),
    /// Nothing to do: the spec has no `[enrolment]`, lists the MAC, or
    /// the machine is enrolled already.
    Known,
    /// The name or address it would get belongs to a node of the spec
    /// (the spec wins; the caller logs it).
    Clash,
}

/// The verdict for a machine with `mac` seen at `ip` at unix time `now`.
pub fn enrol(spec: &Spec, enrolled: &[Enrolled], mac: Mac, ip: Ipv4Addr, now: u64) -> Verdict {
    let Some(rule) = spec.enrolment.as_ref() else {
        return Verdict::Known;
    };
    if spec.nodes.iter().any(|n| n.mac == mac) || enrolled.iter().any(|e| e.mac == mac) {
        return Verdict::Known;
    }
    let name = rule.name_for(mac);
    let clash = spec.nodes.iter().any(|n| n.name == name || n.ip == ip)
        || enrolled.iter().any(|e| e.ip == ip);
    if clash {
        return Verdict::Clash;
    }
    Verdict::Enrol(Enrolled {
        name,
        mac,
        ip,
        at: now,
    })
}

/// The nodes enrolled machines stand for, to add to the spec's. Machines
/// the spec now lists itself (by MAC, name or address) are left out: once
/// a sysadmin writes a machine into the spec, the spec's entry is the one
/// that counts. Without `[enrolment]` there are none.
pub fn as_nodes(spec: &Spec, enrolled: &[Enrolled]) -> Vec<NodeSpec> {
    let Some(rule) = &spec.enrolment else {
        return Vec::new();
    };
    let macs: HashSet<Mac> = spec.nodes.iter().map(|n| n.mac).collect();
    let names: HashSet<&str> = spec.nodes.iter().map(|n| n.name.as_str()).collect();
    let ips: HashSet<Ipv4Addr> = spec.nodes.iter().map(|n| n.ip).collect();
    enrolled
        .iter()
        .filter(|e| {
            !macs.contains(&e.mac) && !names.contains(e.name.as_str()) && !ips.contains(&e.ip)
        })
        .map(|e| NodeSpec {
            name: e.name.clone(),
            mac: e.mac,
            ip: e.ip,
            roles: rule.roles,
            labels: [("enrolled".to_owned(), "true".to_owned())].into(),
            bmc: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(enrolment: bool) -> Spec {
        let mut text = String::from(
            r#"[cluster]
name = "t"
[network]
interface = "br0"
subnet = "10.0.0.0/24"
server = "10.0.0.2"
dynamic_range = ["10.0.0.100", "10.0.0.200"]
[boot]
kernel = "k"
initrd = "i"
[[nodes]]
name = "n1"
mac = "52:54:00:00:00:01"
ip = "10.0.0.11"
roles = ["etcd", "worker"]
"#,
        );
        if enrolment {
            text.push_str("[enrolment]\nrole = \"worker\"\nname = \"w-{mac}\"\n");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, text).unwrap();
        crate::spec::load(&p).unwrap().spec
    }

    fn mac(last: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0, 0, last])
    }

    #[test]
    fn unknown_machines_enrol_once_with_a_name_from_their_mac() {
        let s = spec(true);
        let ip = Ipv4Addr::new(10, 0, 0, 100);
        let Verdict::Enrol(e) = enrol(&s, &[], mac(9), ip, 5) else {
            panic!("not enrolled")
        };
        assert_eq!(e.name, "w-525400000009");
        assert_eq!((e.ip, e.at), (ip, 5));
        assert_eq!(
            enrol(&s, std::slice::from_ref(&e), mac(9), ip, 6),
            Verdict::Known
        );
        assert_eq!(enrol(&s, &[], mac(1), ip, 5), Verdict::Known, "in the spec");
        let n = as_nodes(&s, &[e]);
        assert_eq!(n.len(), 1);
        assert!(n[0].roles.worker && !n[0].roles.etcd);
        assert_eq!(n[0].labels["enrolled"], "true");
    }

    #[test]
    fn without_enrolment_or_when_the_spec_takes_over_nothing_is_added() {
        let off = spec(false);
        let ip = Ipv4Addr::new(10, 0, 0, 100);
        assert_eq!(enrol(&off, &[], mac(9), ip, 5), Verdict::Known);
        let s = spec(true);
        // The address of a spec node is never taken by an enrolled one.
        assert_eq!(
            enrol(&s, &[], mac(9), Ipv4Addr::new(10, 0, 0, 11), 5),
            Verdict::Clash
        );
        let Verdict::Enrol(e) = enrol(&s, &[], mac(9), ip, 5) else {
            panic!("not enrolled")
        };
        assert!(as_nodes(&off, std::slice::from_ref(&e)).is_empty());
        let stale = Enrolled { mac: mac(1), ..e };
        assert!(as_nodes(&s, &[stale]).is_empty(), "the spec lists it now");
    }
}
