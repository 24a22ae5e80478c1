//! The libvirt side of a cluster: what exists, creating what is missing
//! and removing what is the cluster's, through the real libvirt API (the
//! `virt` crate). Calls block; the cluster commands run them on their own
//! threads. Ownership is read from libvirt alone: a network or domain is
//! the cluster's when its `<metadata>` carries the cluster's tag, the pool
//! when its name and derived UUID both match (pools have no metadata).

use virt::connect::Connect;
use virt::domain::Domain;
use virt::network::Network;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;

use super::ClusterError;
use super::plan::{DomainPlan, NetworkPlan, Plan};
use super::xml;

/// Whether a planned resource exists, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Absent,
    /// The cluster's own; `active` is running (domain, network) or started (pool).
    Ours {
        active: bool,
    },
    /// A namesake that is not the cluster's: never touched.
    Foreign,
}

/// An open libvirt connection.
pub struct Libvirt {
    conn: Connect,
    uri: String,
}

fn lv(what: impl Into<String>) -> impl FnOnce(virt::error::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Libvirt { what, source }
}

fn no_such(e: &virt::error::Error) -> bool {
    use virt::error::ErrorNumber as N;
    matches!(
        e.code().into(),
        Ok(N::NoDomain | N::NoNetwork | N::NoStoragePool | N::NoStorageVolume)
    )
}

impl Libvirt {
    /// Connects to `uri`, with errors that say how to get libvirt running.
    pub fn open(uri: &str) -> Result<Libvirt, ClusterError> {
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|source| {
            let m = source.message().to_lowercase();
            // SAFETY: geteuid takes nothing and cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let help = if m.contains("permission denied")
                || m.contains("authentication")
                || m.contains("access denied")
                || m.contains("polkit")
                || (!root && m.contains("system bus"))
            {
                format!("no permission on {uri} as this user: run as root, or add yourself to the `libvirt` group and log in again (libvirt asks polkit, which needs D-Bus)")
            } else if m.contains("no such file") || m.contains("connection refused") || m.contains("failed to connect") {
                "libvirtd is not running: start it with `systemctl start libvirtd` (or `libvirtd -d` where systemd does not run; `virtlogd -d` too), or install it: apt-get install libvirt-daemon-system".to_owned()
            } else {
                format!("check that `virsh -c {uri} list` works")
            };
            ClusterError::Connect { uri: uri.to_owned(), message: source.message().to_owned(), help }
        })?;
        Ok(Libvirt {
            conn,
            uri: uri.to_owned(),
        })
    }

    /// The connection's URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The libvirt connection itself (tests look at it directly).
    pub fn connection(&self) -> &Connect {
        &self.conn
    }

    fn network(&self, name: &str) -> Result<Option<Network>, ClusterError> {
        match self.conn.lookup_network_by_name(name) {
            Ok(n) => Ok(Some(n)),
            Err(e) if no_such(&e) => Ok(None),
            Err(e) => Err(lv(format!("looking up network {name}"))(e)),
        }
    }

    fn pool(&self, name: &str) -> Result<Option<StoragePool>, ClusterError> {
        match self.conn.lookup_storage_pool_by_name(name) {
            Ok(p) => Ok(Some(p)),
            Err(e) if no_such(&e) => Ok(None),
            Err(e) => Err(lv(format!("looking up pool {name}"))(e)),
        }
    }

    fn domain(&self, name: &str) -> Result<Option<Domain>, ClusterError> {
        match self.conn.lookup_domain_by_name(name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if no_such(&e) => Ok(None),
            Err(e) => Err(lv(format!("looking up domain {name}"))(e)),
        }
    }

    /// Whether `net`, one of the planned networks, exists and is the
    /// cluster's.
    pub fn network_found(&self, plan: &Plan, net: &NetworkPlan) -> Result<Found, ClusterError> {
        let Some(n) = self.network(&net.name)? else {
            return Ok(Found::Absent);
        };
        let x = n.xml_desc(0).map_err(lv("reading a network's XML"))?;
        if xml::owner(&x).as_deref() != Some(&plan.cluster) {
            return Ok(Found::Foreign);
        }
        Ok(Found::Ours {
            active: n.is_active().map_err(lv("reading a network's state"))?,
        })
    }

    /// Whether the planned pool exists and is the cluster's.
    pub fn pool_found(&self, plan: &Plan) -> Result<Found, ClusterError> {
        let Some(p) = self.pool(&plan.pool.name)? else {
            return Ok(Found::Absent);
        };
        if p.uuid_string().map_err(lv("reading a pool's UUID"))? != plan.pool.uuid {
            return Ok(Found::Foreign);
        }
        Ok(Found::Ours {
            active: p.is_active().map_err(lv("reading a pool's state"))?,
        })
    }

    /// Whether `d`'s domain exists and is the cluster's.
    pub fn domain_found(&self, plan: &Plan, d: &DomainPlan) -> Result<Found, ClusterError> {
        let Some(dom) = self.domain(&d.name)? else {
            return Ok(Found::Absent);
        };
        let x = dom.xml_desc(0).map_err(lv("reading a domain's XML"))?;
        if xml::owner(&x).as_deref() != Some(&plan.cluster) {
            return Ok(Found::Foreign);
        }
        Ok(Found::Ours {
            active: dom.is_active().map_err(lv("reading a domain's state"))?,
        })
    }

    /// Every other libvirt network: name, bridge and subnet, for the
    /// checks made before anything is created.
    pub fn other_networks(&self, plan: &Plan) -> Result<Vec<OtherNetwork>, ClusterError> {
        let all = self
            .conn
            .list_all_networks(0)
            .map_err(lv("listing networks"))?;
        let mut out = Vec::new();
        for n in all {
            let name = n.name().map_err(lv("reading a network's name"))?;
            if plan.networks.iter().any(|n| n.name == name) {
                continue;
            }
            let x = n.xml_desc(0).map_err(lv("reading a network's XML"))?;
            out.push(OtherNetwork::parse(name, &x));
        }
        Ok(out)
    }

    /// Defines and starts `net` (what is missing of it).
    pub fn ensure_network(&self, plan: &Plan, net: &NetworkPlan) -> Result<(), ClusterError> {
        let n = match self.network(&net.name)? {
            Some(n) => n,
            None => self
                .conn
                .define_network_xml(&xml::network(plan, net)?)
                .map_err(lv(format!("defining network {}", net.name)))?,
        };
        if !n.is_active().map_err(lv("reading a network's state"))? {
            n.create()
                .map_err(lv(format!("starting network {}", net.name)))?;
        }
        // libvirt turns IPv6 off on an IPv4-only bridge; the boot server
        // needs it on to tell iPXE that there is no IPv6 router (see
        // `crate::ra`). The bridge is the cluster's own.
        let knob = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", net.bridge);
        if std::fs::read_to_string(&knob).is_ok_and(|v| v.trim() == "1") {
            if let Err(e) = std::fs::write(&knob, "0") {
                tracing::warn!(bridge = %net.bridge, error = %crate::error_chain(&e), "cannot turn IPv6 on: every boot waits ~16 s for an IPv6 router");
            }
        }
        Ok(())
    }

    /// Defines, builds and starts the pool, then creates each missing disk.
    pub fn ensure_storage(&self, plan: &Plan) -> Result<(), ClusterError> {
        let p = match self.pool(&plan.pool.name)? {
            Some(p) => p,
            None => {
                let p = self
                    .conn
                    .define_storage_pool_xml(&xml::pool(plan)?, 0)
                    .map_err(lv(format!("defining pool {}", plan.pool.name)))?;
                p.build(0).map_err(lv(format!(
                    "creating the directory {}",
                    plan.pool.path.display()
                )))?;
                p
            }
        };
        if !p.is_active().map_err(lv("reading a pool's state"))? {
            p.create(0)
                .map_err(lv(format!("starting pool {}", plan.pool.name)))?;
        }
        p.refresh(0).map_err(lv("refreshing the pool"))?;
        let info = p.info().map_err(lv("reading the pool's free space"))?;
        let missing: Vec<&DomainPlan> = plan
            .domains
            .iter()
            .filter(|d| p.lookup_storage_vol_by_name(&d.volume).is_err())
            .collect();
        // qcow2 grows as it is written: what a fresh disk needs at once is
        // its metadata, and a booting node writes little. Ask for 256 MiB
        // a disk, so a full disk fails here and not inside a guest.
        let need = missing.len() as u64 * (256 << 20);
        if info.available < need {
            return Err(ClusterError::PoolFull {
                path: plan.pool.path.clone(),
                available: info.available,
                need,
            });
        }
        for d in missing {
            StorageVol::create_xml(&p, &xml::volume(d)?, 0)
                .map_err(lv(format!("creating disk {}", d.volume)))?;
        }
        Ok(())
    }

    /// Defines each missing domain, then starts every one not running, all
    /// at once (libvirt takes seconds to start each QEMU). Returns the
    /// nodes whose domains were started.
    pub fn ensure_domains(&self, plan: &Plan) -> Result<Vec<String>, ClusterError> {
        let mut stopped = Vec::new();
        for d in &plan.domains {
            let dom = match self.domain(&d.name)? {
                Some(dom) => dom,
                None => self
                    .conn
                    .define_domain_xml(&xml::domain(plan, d)?)
                    .map_err(lv(format!("defining domain {}", d.name)))?,
            };
            if !dom.is_active().map_err(lv("reading a domain's state"))? {
                stopped.push((d, dom));
            }
        }
        let results: Vec<Result<String, ClusterError>> = std::thread::scope(|s| {
            let handles: Vec<_> = stopped
                .iter()
                .map(|(d, dom)| {
                    s.spawn(move || {
                        if let Err(e) = dom.create() {
                            // Another `up` may have started it meanwhile.
                            if !dom.is_active().unwrap_or(false) {
                                return Err(lv(format!("starting domain {}", d.name))(e));
                            }
                        }
                        Ok(d.node.clone())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("domain start thread"))
                .collect()
        });
        results.into_iter().collect()
    }

    /// The libvirt state of `d`'s domain: running, shut off, ... or absent.
    pub fn domain_state(&self, d: &DomainPlan) -> Result<String, ClusterError> {
        use virt::domain::DomainState as S;
        let Some(dom) = self.domain(&d.name)? else {
            return Ok("absent".into());
        };
        let (state, _) = dom.state().map_err(lv("reading a domain's state"))?;
        Ok(match state.into() {
            Ok(S::Running) => "running",
            Ok(S::Blocked) => "blocked",
            Ok(S::Paused) => "paused",
            Ok(S::Shutdown) => "shutting down",
            Ok(S::Shutoff) => "shut off",
            Ok(S::Crashed) => "crashed",
            Ok(S::PMSuspended) => "suspended",
            _ => "unknown",
        }
        .into())
    }

    /// Stops and removes the cluster's domain `d` (its NVRAM file with it).
    /// A namesake that is not the cluster's is left alone.
    pub fn remove_domain(&self, plan: &Plan, d: &DomainPlan) -> Result<bool, ClusterError> {
        if self.domain_found(plan, d)? == Found::Foreign {
            return Ok(false);
        }
        let Some(dom) = self.domain(&d.name)? else {
            return Ok(false);
        };
        if dom.is_active().unwrap_or(false) {
            if let Err(e) = dom.destroy() {
                if dom.is_active().unwrap_or(true) {
                    return Err(lv(format!("stopping domain {}", d.name))(e));
                }
            }
        }
        let flags = if d.uefi {
            sys::VIR_DOMAIN_UNDEFINE_NVRAM
        } else {
            0
        };
        dom.undefine_flags(flags)
            .map_err(lv(format!("removing domain {}", d.name)))?;
        Ok(true)
    }

    /// Stops and removes `net`, one of the cluster's networks.
    pub fn remove_network(&self, plan: &Plan, net: &NetworkPlan) -> Result<bool, ClusterError> {
        let Found::Ours { active } = self.network_found(plan, net)? else {
            return Ok(false);
        };
        let Some(n) = self.network(&net.name)? else {
            return Ok(false);
        };
        if active {
            n.destroy()
                .map_err(lv(format!("stopping network {}", net.name)))?;
        }
        n.undefine()
            .map_err(lv(format!("removing network {}", net.name)))?;
        Ok(true)
    }

    /// Deletes the pool's volumes (the nodes' disks), its directory and
    /// the pool itself.
    pub fn remove_storage(&self, plan: &Plan) -> Result<bool, ClusterError> {
        let Found::Ours { active } = self.pool_found(plan)? else {
            return Ok(false);
        };
        let Some(p) = self.pool(&plan.pool.name)? else {
            return Ok(false);
        };
        if !active {
            p.create(0)
                .map_err(lv(format!("starting pool {}", plan.pool.name)))?;
        }
        p.refresh(0).map_err(lv("refreshing the pool"))?;
        for v in p
            .list_all_volumes(0)
            .map_err(lv("listing the pool's disks"))?
        {
            let name = v.name().unwrap_or_default();
            v.delete(0).map_err(lv(format!("deleting disk {name}")))?;
        }
        p.destroy()
            .map_err(lv(format!("stopping pool {}", plan.pool.name)))?;
        p.delete(0).map_err(lv(format!(
            "removing the directory {}",
            plan.pool.path.display()
        )))?;
        p.undefine()
            .map_err(lv(format!("removing pool {}", plan.pool.name)))?;
        Ok(true)
    }

    /// The volumes of the cluster's pool, by name.
    pub fn volumes(&self, plan: &Plan) -> Result<Vec<String>, ClusterError> {
        let Found::Ours { active: true } = self.pool_found(plan)? else {
            return Ok(Vec::new());
        };
        let Some(p) = self.pool(&plan.pool.name)? else {
            return Ok(Vec::new());
        };
        p.list_volumes().map_err(lv("listing the pool's disks"))
    }
}

/// Another libvirt network, as far as the pre-flight checks care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherNetwork {
    pub name: String,
    pub bridge: Option<String>,
    pub subnets: Vec<ipnet::Ipv4Net>,
}

impl OtherNetwork {
    /// Reads the bridge name and IPv4 subnets from a network's XML.
    pub fn parse(name: String, xml: &str) -> OtherNetwork {
        let mut out = OtherNetwork {
            name,
            bridge: None,
            subnets: Vec::new(),
        };
        let Ok(doc) = roxmltree::Document::parse(xml) else {
            return out;
        };
        for n in doc.root_element().children().filter(|n| n.is_element()) {
            match n.tag_name().name() {
                "bridge" => out.bridge = n.attribute("name").map(str::to_owned),
                "ip" if n.attribute("family").is_none_or(|f| f == "ipv4") => {
                    let Some(addr) = n.attribute("address").and_then(|a| a.parse().ok()) else {
                        continue;
                    };
                    let prefix = n
                        .attribute("prefix")
                        .and_then(|p| p.parse().ok())
                        .or_else(|| {
                            n.attribute("netmask")
                                .and_then(|m| m.parse::<std::net::Ipv4Addr>().ok())
                                .map(|m| u32::from(m).count_ones() as u8)
                        });
                    if let Some(net) = prefix.and_then(|p| ipnet::Ipv4Net::new(addr, p).ok()) {
                        out.subnets.push(net.trunc());
                    }
                }
                _ => {}
            }
        }
        out
    }
}
