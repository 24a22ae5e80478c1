//! The IPMI driver: IPMI 2.0 over LAN (RMCP+, cipher suite 3) through
//! Debian's `ipmitool`, as MAAS and Ironic drive BMCs. The password goes
//! through the environment (`-E`), never the command line; each call is
//! killed after [`super::CALL_TIMEOUT`].

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{Action, Bmc, BootOverride, PowerError, PowerState, Status, reply};
use crate::spec::Bmc as BmcSpec;

/// One BMC reached over the LAN.
pub struct Ipmi {
    host: String,
    port: u16,
    user: String,
    password: String,
}

impl Ipmi {
    pub fn new(spec: &BmcSpec) -> Result<Ipmi, PowerError> {
        let address = spec.address.clone().unwrap_or_default();
        let (host, port) = match address.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_owned(), p.parse().unwrap_or(623)),
            _ => (address.clone(), 623),
        };
        let password = match &spec.password {
            Some(source) => super::credentials::password(source)?,
            None => String::new(),
        };
        Ok(Ipmi {
            host,
            port,
            user: spec.username.clone().unwrap_or_default(),
            password,
        })
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `ipmitool ... ARGS`: its standard output, or the error it means.
    fn run(&self, args: &[&str]) -> Result<String, PowerError> {
        let port = self.port.to_string();
        let mut child = Command::new("ipmitool")
            // -v: a refused password ("RAKP 2 HMAC is invalid") and an
            // unanswered one ("Get Auth Capabilities error") say so only
            // on standard error in verbose mode.
            .args(["-I", "lanplus", "-C", "3", "-N", "2", "-R", "2", "-v"])
            .args(["-H", &self.host, "-p", &port, "-U", &self.user, "-E"])
            .args(args)
            .env("IPMI_PASSWORD", &self.password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PowerError::Unsupported {
                address: self.address(),
                what: "be reached".into(),
                detail: format!("ipmitool cannot run ({e}); apt-get install ipmitool"),
            })?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                break status;
            }
            if started.elapsed() > super::CALL_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PowerError::Unreachable {
                    address: self.address(),
                    detail: format!("no answer within {} s", super::CALL_TIMEOUT.as_secs()),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        if status.success() {
            return Ok(out);
        }
        let said = err
            .lines()
            .rfind(|l| l.starts_with("Error") || l.contains("error"))
            .unwrap_or("")
            .trim();
        let lower = err.to_lowercase();
        Err(
            if lower.contains("rakp 2 hmac is invalid") || lower.contains("unauthorized name") {
                PowerError::Refused {
                    address: self.address(),
                }
            } else if lower.contains("unable to establish") || lower.contains("no response") {
                PowerError::Unreachable {
                    address: self.address(),
                    detail: if lower.contains("get auth capabilities error") {
                        "it does not answer IPMI 2.0 (lanplus) requests".to_owned()
                    } else {
                        format!("no IPMI 2.0 session ({said})")
                    },
                }
            } else {
                PowerError::Unsupported {
                    address: self.address(),
                    what: args.join(" "),
                    detail: said.chars().take(120).collect(),
                }
            },
        )
    }

    fn power(&self) -> Result<PowerState, PowerError> {
        let out = self.run(&["chassis", "power", "status"])?;
        reply::ipmi_power(&out).map_err(|detail| PowerError::Reply {
            address: self.address(),
            detail,
        })
    }

    fn boot(&self) -> Result<BootOverride, PowerError> {
        let out = self.run(&["chassis", "bootparam", "get", "5"])?;
        reply::ipmi_boot_flags(&out).map_err(|detail| PowerError::Reply {
            address: self.address(),
            detail,
        })
    }
}

impl Bmc for Ipmi {
    fn status(&mut self) -> Result<Status, PowerError> {
        Ok(Status {
            power: self.power()?,
            boot: self.boot()?,
        })
    }

    fn act(&mut self, action: Action) -> Result<(), PowerError> {
        let power = self.power()?;
        match (action, power) {
            (Action::On, PowerState::On) | (Action::Off, PowerState::Off) => Ok(()),
            (Action::Off, _) => self.run(&["chassis", "power", "off"]).map(drop),
            (Action::On, _) | (Action::Cycle, PowerState::Off) => {
                self.run(&["chassis", "power", "on"]).map(drop)
            }
            // Not every BMC implements `power cycle` (virtualbmc answers
            // 0xcc): off, then on, is the same for every one.
            (Action::Cycle, _) => {
                self.run(&["chassis", "power", "off"])?;
                let started = Instant::now();
                while self.power()? != PowerState::Off {
                    if started.elapsed() > super::CALL_TIMEOUT {
                        return Err(PowerError::Unsupported {
                            address: self.address(),
                            what: "power off".into(),
                            detail: "still on after `chassis power off`".into(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                self.run(&["chassis", "power", "on"]).map(drop)
            }
        }
    }

    fn network_boot_once(&mut self) -> Result<BootOverride, PowerError> {
        self.run(&["chassis", "bootdev", "pxe"])?;
        match self.boot()? {
            b @ (BootOverride::PxeOnce | BootOverride::PxeContinuous) => Ok(b),
            other => Err(PowerError::Unsupported {
                address: self.address(),
                what: "set a network boot".into(),
                detail: format!("it accepted `chassis bootdev pxe` but holds `{other}`"),
            }),
        }
    }
}
