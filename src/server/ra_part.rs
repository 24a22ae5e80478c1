//! Router advertisements as a part of a server: "no IPv6 router here" on
//! the spec's interface, so iPXE does not wait ~16 s for one. A thread of
//! its own; an interface where it cannot run is warned about, not fatal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::ServerError;
use crate::ra::server::{RaError, Responder};

/// Running router advertisements.
pub struct RaPart {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts them on `iface`; `None` (with a warning saying what to do) when
/// the interface cannot have them.
pub fn start(iface: &str) -> Result<Option<RaPart>, ServerError> {
    let responder = match Responder::bind(iface) {
        Ok(r) => r,
        Err(RaError::NoInterface(_)) => return Ok(None),
        Err(e @ RaError::Ipv6Disabled(_)) => {
            tracing::warn!(
                "{e}: iPXE will wait about 16 s for an IPv6 router at every boot\n  help: enable IPv6 there (sysctl net.ipv6.conf.{iface}.disable_ipv6=0) so bootfleet can say there is no router, or set router_advertisements = false under [network] to silence this"
            );
            return Ok(None);
        }
        Err(e) => {
            tracing::warn!(
                "{e:#}: no router advertisements, so iPXE waits about 16 s for an IPv6 router at every boot\n  help: run as root (or with CAP_NET_RAW)"
            );
            return Ok(None);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("ra".into())
        .spawn(move || responder.run(&flag))
        .map_err(|source| ServerError::Io {
            what: "starting the router advertisement thread",
            source,
        })?;
    Ok(Some(RaPart {
        stop,
        thread: Some(thread),
    }))
}

impl RaPart {
    /// Stops and waits.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RaPart {
    fn drop(&mut self) {
        self.stop();
    }
}
