//! systemd's service notifications (sd_notify(3)), in the few lines the
//! protocol takes: one datagram per state change to the socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name after `@`). `serve`
//! says `READY=1` once every socket is bound and the state is loaded,
//! `RELOADING=1` and `READY=1` around a spec reload, `STOPPING=1` when it
//! stops, and `WATCHDOG=1` every half watchdog interval
//! (`$WATCHDOG_USEC`) only while every part is well: a wedged server
//! stops pinging and systemd restarts it. Without `$NOTIFY_SOCKET` (not
//! under systemd's `Type=notify`) nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go.
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    /// How often systemd wants `WATCHDOG=1`, when it asked for it.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd's environment asks for, if any.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?;
        let to = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            }
            None => SocketAddr::from_pathname(path).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        Some(Notifier {
            socket,
            to,
            watchdog: watchdog(
                std::env::var("WATCHDOG_USEC").ok().as_deref(),
                std::env::var("WATCHDOG_PID").ok().as_deref(),
                std::process::id(),
            ),
        })
    }

    /// Sends `state` (`READY=1`, `STATUS=...`, newline-separated).
    pub fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.to) {
            tracing::debug!(error = %crate::error_chain(&e), state, "systemd notification not sent");
        }
    }
}

/// The watchdog interval from `$WATCHDOG_USEC`, when it is meant for this
/// process (`$WATCHDOG_PID` unset or ours).
fn watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.parse::<u32>().ok() != Some(me)) {
        return None;
    }
    let usec: u64 = usec?.parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_interval_is_taken_only_when_meant_for_this_process() {
        assert_eq!(
            watchdog(Some("4000000"), None, 7),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            watchdog(Some("4000000"), Some("7"), 7),
            Some(Duration::from_secs(4))
        );
        assert_eq!(watchdog(Some("4000000"), Some("8"), 7), None);
        assert_eq!(watchdog(Some("0"), None, 7), None);
        assert_eq!(watchdog(None, None, 7), None);
    }
}
