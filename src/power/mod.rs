//! Acting on machines through their BMCs: read the power state and boot
//! override, power on, off or cycle, and make the next boot a network
//! boot. Three drivers behind one small trait: Redfish (HTTPS, with
//! sushy-tools' emulator as the test peer), IPMI 2.0 over LAN (through
//! `ipmitool`, as MAAS and Ironic do; virtualbmc as the test peer) and
//! libvirt (the node is a VM).
//!
//! # The contract every driver keeps
//! - `status` reads, and changes nothing.
//! - `on` leaves the machine powered on (a machine already on is left as
//!   it is); `off` cuts power at once (no orderly shutdown: the machine is
//!   to be provisioned again); `cycle` is off then on, or on when it was
//!   off, so that the machine starts from its firmware either way.
//! - `network_boot_once` makes the next start a network (PXE) boot and
//!   says what the BMC now holds: `PxeOnce`, or `PxeContinuous` when the
//!   BMC keeps the override for every boot (virtualbmc; sushy-tools'
//!   emulator; a libvirt domain whose boot order starts with the network).
//!   A driver that cannot set it returns an error, and the caller then
//!   never power-cycles the machine.
//! - Every call is bounded in time: a BMC that does not answer is an
//!   error for that node ([`PowerError::Unreachable`]), never a hang.
//! - A BMC's answers are untrusted: a malformed reply is
//!   [`PowerError::Reply`], never a panic (the parsers are in [`reply`]
//!   and fuzzed).
//! - Credentials never appear in errors, logs or output.

mod credentials;
mod ipmi;
mod libvirt;
mod redfish;
pub mod reply;

use std::fmt;
use std::time::Duration;

use crate::spec::{Bmc as BmcSpec, BmcDriver, NodeSpec, Spec};

/// How long one call to a BMC may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A machine's power, as its BMC reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    On,
    Off,
    /// Powering on or off, or a state the BMC names otherwise.
    Other(String),
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerState::On => f.write_str("on"),
            PowerState::Off => f.write_str("off"),
            PowerState::Other(s) => f.write_str(s),
        }
    }
}

/// What the next start boots from, as the BMC holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootOverride {
    /// No override: the machine's own boot order.
    None,
    /// The network, for the next start only.
    PxeOnce,
    /// The network, for every start.
    PxeContinuous,
    /// Something else (a disk, a CD, ...), as the BMC names it.
    Other(String),
}

impl fmt::Display for BootOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootOverride::None => f.write_str("none"),
            BootOverride::PxeOnce => f.write_str("pxe once"),
            BootOverride::PxeContinuous => f.write_str("pxe always"),
            BootOverride::Other(s) => f.write_str(s),
        }
    }
}

/// Power state and boot override.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub power: PowerState,
    pub boot: BootOverride,
}

/// A power action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    On,
    Off,
    Cycle,
}

/// One machine's BMC (see the module's contract).
pub trait Bmc: Send {
    fn status(&mut self) -> Result<Status, PowerError>;
    fn act(&mut self, action: Action) -> Result<(), PowerError>;
    fn network_boot_once(&mut self) -> Result<BootOverride, PowerError>;
}

/// Why a BMC could not be asked or did not do it; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The spec names no BMC and libvirt has no domain of that name.
    #[error(
        "no BMC: the spec gives none and libvirt at {uri} has no domain `{domain}`\n  help: add `bmc = {{ driver = \"redfish\" | \"ipmi\", address = ..., ... }}` to the node, or bring the cluster up"
    )]
    NoBmc { uri: String, domain: String },
    /// The password file or variable could not be used.
    #[error("{0}")]
    Credentials(#[from] credentials::CredentialsError),
    /// Nothing answered in time, or the connection failed.
    #[error(
        "BMC {address} unreachable: {detail}\n  help: check the address and that the BMC's network is reachable from here"
    )]
    Unreachable { address: String, detail: String },
    /// The TLS certificate was not trusted.
    #[error(
        "BMC {address}: its TLS certificate is not trusted: {detail}\n  help: give the CA that signed it as `ca_file` in the node's bmc, or set `insecure = true` there (not verified: warned on every use)"
    )]
    Tls { address: String, detail: String },
    /// The BMC refused the user name or password.
    #[error(
        "BMC {address} refused the credentials\n  help: check `username` and the password in the node's `password_file` or `password_env`"
    )]
    Refused { address: String },
    /// The system asked for does not exist on that BMC.
    #[error("BMC {address} has no system {system}\n  help: {help}")]
    NoSuchSystem {
        address: String,
        system: String,
        help: String,
    },
    /// The BMC cannot do what was asked.
    #[error("BMC {address} cannot {what}: {detail}")]
    Unsupported {
        address: String,
        what: String,
        detail: String,
    },
    /// An answer that is not what the protocol says.
    #[error("BMC {address} answered something unreadable: {detail}")]
    Reply { address: String, detail: String },
    /// libvirt itself failed.
    #[error("libvirt: {what}: {detail}")]
    Libvirt { what: String, detail: String },
}

/// The BMC of `node`: its `bmc` in the spec, or the libvirt domain
/// `<cluster>-<node>` on `[libvirt] uri` when it names none.
pub fn open(spec: &Spec, node: &NodeSpec) -> Result<Box<dyn Bmc>, PowerError> {
    let default = BmcSpec {
        driver: BmcDriver::Libvirt,
        address: None,
        system: None,
        username: None,
        password: None,
        ca_file: None,
        insecure: false,
    };
    let bmc = node.bmc.as_ref().unwrap_or(&default);
    match bmc.driver {
        BmcDriver::Libvirt => {
            let domain = bmc
                .system
                .clone()
                .unwrap_or_else(|| format!("{}-{}", spec.cluster.name, node.name));
            let uri = bmc
                .address
                .clone()
                .unwrap_or_else(|| spec.libvirt.uri.clone());
            Ok(Box::new(libvirt::Domain::open(&uri, &domain)?))
        }
        BmcDriver::Redfish => Ok(Box::new(redfish::Redfish::new(bmc)?)),
        BmcDriver::Ipmi => Ok(Box::new(ipmi::Ipmi::new(bmc)?)),
    }
}

#[cfg(test)]
mod tests;
