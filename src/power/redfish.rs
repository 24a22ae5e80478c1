//! The Redfish driver: a ComputerSystem's `PowerState` and `Boot`, the
//! `ComputerSystem.Reset` action, and a PATCH of `Boot` for "network boot
//! once". HTTPS verified against the node's `ca_file` (or, with `insecure`,
//! not at all, warned about on every use), HTTP basic auth, every call
//! bounded by [`super::CALL_TIMEOUT`].

use base64::Engine;
use ureq::tls::{PemItem, RootCerts, TlsConfig};

use super::{Action, Bmc, BootOverride, PowerError, PowerState, Status, reply};
use crate::spec::Bmc as BmcSpec;

/// One Redfish service and the system of the node on it.
pub struct Redfish {
    agent: ureq::Agent,
    /// `https://host:port`, no trailing slash.
    base: String,
    auth: String,
    /// The system's path (`/redfish/v1/Systems/<id>`), once found.
    system: Option<String>,
    /// The spec's system id, if it gave one.
    wanted: Option<String>,
}

impl Redfish {
    pub fn new(spec: &BmcSpec) -> Result<Redfish, PowerError> {
        let base = spec
            .address
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let user = spec.username.clone().unwrap_or_default();
        let password = match &spec.password {
            Some(source) => super::credentials::password(source)?,
            None => String::new(),
        };
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &spec.ca_file {
            let pem = std::fs::read(ca).map_err(|e| PowerError::Tls {
                address: base.clone(),
                detail: format!("cannot read ca_file {}: {e}", ca.display()),
            })?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(PowerError::Tls {
                    address: base,
                    detail: format!("ca_file {} holds no PEM certificate", ca.display()),
                });
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if spec.insecure {
            tracing::warn!(
                bmc = %base,
                "the BMC's TLS certificate is not verified (insecure = true): anyone on the path can read its credentials"
            );
            tls = tls.disable_verification(true);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(super::CALL_TIMEOUT))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Redfish {
            agent,
            base,
            auth,
            system: None,
            wanted: spec.system.clone(),
        })
    }

    fn failed(&self, e: ureq::Error) -> PowerError {
        let detail = crate::error_chain(&e);
        let tls = matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
            || detail.to_lowercase().contains("certificate");
        if tls {
            PowerError::Tls {
                address: self.base.clone(),
                detail,
            }
        } else {
            PowerError::Unreachable {
                address: self.base.clone(),
                detail,
            }
        }
    }

    /// `method path` with `body`: the status and at most 1 MiB of body.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), PowerError> {
        let url = format!("{}{path}", self.base);
        let res = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Authorization", &self.auth)
                .header("Accept", "application/json")
                .call(),
            (m, body) => {
                let text = body.unwrap_or(serde_json::Value::Null).to_string();
                let req = if m == "PATCH" {
                    self.agent.patch(&url)
                } else {
                    self.agent.post(&url)
                };
                req.header("Authorization", &self.auth)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json")
                    .send(text.as_bytes())
            }
        };
        let mut res = res.map_err(|e| self.failed(e))?;
        let status = res.status().as_u16();
        let bytes = res
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| self.failed(e))?;
        if status == 401 || status == 403 {
            return Err(PowerError::Refused {
                address: self.base.clone(),
            });
        }
        Ok((status, bytes))
    }

    fn reply_error(&self, detail: String) -> PowerError {
        PowerError::Reply {
            address: self.base.clone(),
            detail,
        }
    }

    /// The system's path: the one the spec names, or the service's only
    /// one.
    fn system(&mut self) -> Result<String, PowerError> {
        if let Some(s) = &self.system {
            return Ok(s.clone());
        }
        let path = match &self.wanted {
            Some(id) => format!("/redfish/v1/Systems/{id}"),
            None => {
                let (status, body) = self.call("GET", "/redfish/v1/Systems", None)?;
                if status != 200 {
                    return Err(self.reply_error(format!("/redfish/v1/Systems answered {status}")));
                }
                let members = reply::redfish_members(&body).map_err(|d| self.reply_error(d))?;
                match members.as_slice() {
                    [one] => one.clone(),
                    _ => {
                        return Err(PowerError::NoSuchSystem {
                            address: self.base.clone(),
                            system: "(none named)".into(),
                            help: format!(
                                "the service has {} systems: name this node's with `system = \"<id>\"` in its bmc",
                                members.len()
                            ),
                        });
                    }
                }
            }
        };
        self.system = Some(path.clone());
        Ok(path)
    }

    fn read(&mut self) -> Result<(PowerState, BootOverride), PowerError> {
        let path = self.system()?;
        let (status, body) = self.call("GET", &path, None)?;
        match status {
            200 => reply::redfish_system(&body).map_err(|d| self.reply_error(d)),
            // sushy-tools answers 500 for a system it does not have.
            404 | 500 => Err(PowerError::NoSuchSystem {
                address: self.base.clone(),
                system: self.wanted.clone().unwrap_or(path),
                help: format!(
                    "the service answered {status}; list its systems at {}/redfish/v1/Systems and set `system` in the node's bmc",
                    self.base
                ),
            }),
            other => Err(self.reply_error(format!("{path} answered {other}"))),
        }
    }

    fn reset(&mut self, kind: &str) -> Result<(), PowerError> {
        let path = format!("{}/Actions/ComputerSystem.Reset", self.system()?);
        let (status, _) = self.call(
            "POST",
            &path,
            Some(serde_json::json!({ "ResetType": kind })),
        )?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(PowerError::Unsupported {
                address: self.base.clone(),
                what: format!("reset ({kind})"),
                detail: format!("{path} answered {status}"),
            })
        }
    }
}

impl Bmc for Redfish {
    fn status(&mut self) -> Result<Status, PowerError> {
        let (power, boot) = self.read()?;
        Ok(Status { power, boot })
    }

    fn act(&mut self, action: Action) -> Result<(), PowerError> {
        let (power, _) = self.read()?;
        match (action, power) {
            (Action::On, PowerState::On) | (Action::Off, PowerState::Off) => Ok(()),
            (Action::On | Action::Cycle, PowerState::Off) => self.reset("On"),
            (Action::Off, _) => self.reset("ForceOff"),
            (Action::Cycle, _) => self.reset("ForceRestart"),
            (Action::On, _) => self.reset("On"),
        }
    }

    fn network_boot_once(&mut self) -> Result<BootOverride, PowerError> {
        let path = self.system()?;
        let body = serde_json::json!({
            "Boot": { "BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe" }
        });
        let (status, _) = self.call("PATCH", &path, Some(body))?;
        if !(200..300).contains(&status) {
            return Err(PowerError::Unsupported {
                address: self.base.clone(),
                what: "set a network boot".into(),
                detail: format!("PATCH {path} answered {status}"),
            });
        }
        // Read back what the BMC holds: some keep `Once` as `Continuous`.
        match self.read()?.1 {
            b @ (BootOverride::PxeOnce | BootOverride::PxeContinuous) => Ok(b),
            other => Err(PowerError::Unsupported {
                address: self.base.clone(),
                what: "set a network boot".into(),
                detail: format!("it accepted the change but holds `{other}`"),
            }),
        }
    }
}
