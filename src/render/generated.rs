//! The files bootfleet generates, named once: each kind's path under the
//! output directory (and in the servers' tables) and who may serve it.
//! TFTP serves boot configs and scripts, never cloud-configs (they carry
//! tokens, and TFTP cannot check one); HTTP serves scripts,
//! cloud-configs and Ignition configs; fleet units are for `fleetctl`, served by neither.

use crate::spec::Mac;

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// `cloud-config/<node>.yml`.
    CloudConfig(String),
    /// `ignition/<node>.ign`: the node's Ignition config.
    Ignition(String),
    /// `pxelinux.cfg/01-<mac>`: the node's pxelinux config.
    PxelinuxConfig(Mac),
    /// `pxelinux.cfg/default`.
    PxelinuxDefault,
    /// `ipxe/<node>.ipxe`: the node's own iPXE script.
    NodeScript(String),
    /// `boot.ipxe`: the script every iPXE client gets first.
    BootScript,
    /// `units/<unit>`: a fleet unit.
    Unit(String),
}

impl Generated {
    /// Its path.
    pub fn path(&self) -> String {
        match self {
            Generated::CloudConfig(node) => format!("cloud-config/{node}.yml"),
            Generated::Ignition(node) => format!("ignition/{node}.ign"),
            Generated::PxelinuxConfig(mac) => format!("pxelinux.cfg/01-{}", mac.dashed()),
            Generated::PxelinuxDefault => "pxelinux.cfg/default".into(),
            Generated::NodeScript(node) => format!("ipxe/{node}.ipxe"),
            Generated::BootScript => "boot.ipxe".into(),
            Generated::Unit(unit) => format!("units/{unit}"),
        }
    }

    /// The generated file at `path`, if it is one.
    pub fn parse(path: &str) -> Option<Generated> {
        if path == "boot.ipxe" {
            return Some(Generated::BootScript);
        }
        if path == "pxelinux.cfg/default" {
            return Some(Generated::PxelinuxDefault);
        }
        let (dir, name) = path.split_once('/')?;
        if name.is_empty() || name.contains('/') {
            return None;
        }
        match dir {
            "cloud-config" => Some(Generated::CloudConfig(
                name.strip_suffix(".yml")?.to_owned(),
            )),
            "ignition" => Some(Generated::Ignition(name.strip_suffix(".ign")?.to_owned())),
            "ipxe" => Some(Generated::NodeScript(
                name.strip_suffix(".ipxe")?.to_owned(),
            )),
            "pxelinux.cfg" => {
                let mac = name.strip_prefix("01-")?.replace('-', ":").parse().ok()?;
                Some(Generated::PxelinuxConfig(mac))
            }
            "units" => Some(Generated::Unit(name.to_owned())),
            _ => None,
        }
    }

    /// TFTP may serve it.
    pub fn over_tftp(&self) -> bool {
        matches!(
            self,
            Generated::PxelinuxConfig(_)
                | Generated::PxelinuxDefault
                | Generated::NodeScript(_)
                | Generated::BootScript
        )
    }

    /// HTTP may serve it.
    pub fn over_http(&self) -> bool {
        matches!(
            self,
            Generated::CloudConfig(_)
                | Generated::Ignition(_)
                | Generated::NodeScript(_)
                | Generated::BootScript
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_path_and_cloud_configs_never_go_over_tftp() {
        let all = [
            Generated::CloudConfig("a1".into()),
            Generated::Ignition("a1".into()),
            Generated::PxelinuxConfig(Mac([0x52, 0x54, 0, 0xab, 0xcd, 1])),
            Generated::PxelinuxDefault,
            Generated::NodeScript("a1".into()),
            Generated::BootScript,
            Generated::Unit("browser@.service".into()),
        ];
        for g in &all {
            assert_eq!(
                Generated::parse(&g.path()).as_ref(),
                Some(g),
                "{}",
                g.path()
            );
        }
        assert_eq!(
            Generated::PxelinuxConfig(Mac([0x52, 0x54, 0, 0xab, 0xcd, 1])).path(),
            "pxelinux.cfg/01-52-54-00-ab-cd-01"
        );
        assert!(!Generated::CloudConfig("a1".into()).over_tftp());
        assert!(!Generated::Ignition("a1".into()).over_tftp());
        assert!(!Generated::Unit("x".into()).over_http());
        for bad in [
            "cloud-config/a1",
            "ipxe/../x.ipxe",
            "other/x",
            "units/",
            "ipxe/a/b.ipxe",
        ] {
            assert_eq!(Generated::parse(bad), None, "{bad}");
        }
    }
}
