//! The libvirt driver: the node is a VM, its domain acted on through the
//! libvirt API. "Network boot once" is the domain's boot order starting
//! with the network, as every `bootfleet cluster` domain's does; a domain
//! that boots otherwise is reported, not rewritten.

use virt::connect::Connect;
use virt::domain::{Domain as VirtDomain, DomainState};

use super::{Action, Bmc, BootOverride, PowerError, PowerState, Status};

/// One domain.
pub struct Domain {
    domain: VirtDomain,
    name: String,
    // Kept open for the domain's sake.
    _conn: Connect,
}

fn lv(what: String) -> impl FnOnce(virt::error::Error) -> PowerError {
    move |e| PowerError::Libvirt {
        what,
        detail: e.message().to_owned(),
    }
}

impl Domain {
    pub fn open(uri: &str, name: &str) -> Result<Domain, PowerError> {
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(lv(format!("connecting to {uri}")))?;
        let domain = conn
            .lookup_domain_by_name(name)
            .map_err(|_| PowerError::NoBmc {
                uri: uri.to_owned(),
                domain: name.to_owned(),
            })?;
        Ok(Domain {
            domain,
            name: name.to_owned(),
            _conn: conn,
        })
    }

    fn power(&self) -> Result<PowerState, PowerError> {
        let (state, _) = self
            .domain
            .state()
            .map_err(lv(format!("reading the state of {}", self.name)))?;
        Ok(match state.into() {
            Ok(DomainState::Running) => PowerState::On,
            Ok(DomainState::Shutoff | DomainState::Crashed) => PowerState::Off,
            _ => PowerState::Other("paused or in transition".into()),
        })
    }

    /// The boot devices of the domain's persistent definition, in order.
    fn boot_order(&self) -> Result<Vec<String>, PowerError> {
        let xml = self
            .domain
            .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(lv(format!("reading the definition of {}", self.name)))?;
        let doc = roxmltree::Document::parse(&xml).map_err(|e| PowerError::Libvirt {
            what: format!("reading the definition of {}", self.name),
            detail: e.to_string(),
        })?;
        Ok(doc
            .descendants()
            .filter(|n| n.has_tag_name("boot") && n.parent().is_some_and(|p| p.has_tag_name("os")))
            .filter_map(|n| n.attribute("dev").map(str::to_owned))
            .collect())
    }
}

impl Bmc for Domain {
    fn status(&mut self) -> Result<Status, PowerError> {
        let boot = match self.boot_order()?.first().map(String::as_str) {
            Some("network") => BootOverride::PxeContinuous,
            Some(other) => BootOverride::Other(other.to_owned()),
            None => BootOverride::None,
        };
        Ok(Status {
            power: self.power()?,
            boot,
        })
    }

    fn act(&mut self, action: Action) -> Result<(), PowerError> {
        let on = self.power()? == PowerState::On;
        let stop = || {
            self.domain
                .destroy()
                .map(drop)
                .map_err(lv(format!("stopping {}", self.name)))
        };
        let start = || {
            self.domain
                .create()
                .map(drop)
                .map_err(lv(format!("starting {}", self.name)))
        };
        match (action, on) {
            (Action::On, true) | (Action::Off, false) => Ok(()),
            (Action::On, false) | (Action::Cycle, false) => start(),
            (Action::Off, true) => stop(),
            (Action::Cycle, true) => {
                stop()?;
                start()
            }
        }
    }

    fn network_boot_once(&mut self) -> Result<BootOverride, PowerError> {
        match self.status()?.boot {
            BootOverride::PxeContinuous => Ok(BootOverride::PxeContinuous),
            other => Err(PowerError::Unsupported {
                address: format!("libvirt domain {}", self.name),
                what: "boot from the network".into(),
                detail: format!(
                    "its boot order starts with `{other}`; put the network first (`virsh edit {}`, <boot dev='network'/> first)",
                    self.name
                ),
            }),
        }
    }
}
