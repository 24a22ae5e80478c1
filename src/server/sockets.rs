//! The servers' sockets, bound with errors that say what to do.

use std::net::SocketAddr;

/// A socket that could not be bound, with the fix.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {what} on {place}: {source}\n  help: {help}")]
pub struct BindError {
    pub what: &'static str,
    pub place: String,
    pub source: std::io::Error,
    pub help: String,
}

/// A non-blocking UDP socket on `addr` for the `what` server.
pub fn udp(addr: SocketAddr, what: &'static str) -> Result<std::net::UdpSocket, BindError> {
    let bind_error = |source: std::io::Error| {
        let help = match source.kind() {
            std::io::ErrorKind::AddrInUse => format!("another program serves {what} on this port: stop it, or pick another with --listen"),
            std::io::ErrorKind::PermissionDenied => "ports below 1024 need root (or CAP_NET_BIND_SERVICE); run as root or use --listen with a higher port".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => "this machine has no such address: give one of its own (ip -br addr) or 0.0.0.0".to_owned(),
            _ => "check the address given with --listen".to_owned(),
        };
        BindError {
            what,
            place: addr.to_string(),
            source,
            help,
        }
    };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    Ok(socket)
}

/// DHCP's socket on `port` of interface `iface` (SO_BINDTODEVICE).
pub fn dhcp(iface: &str, port: u16) -> Result<std::net::UdpSocket, BindError> {
    crate::dhcp::server::bind(iface, port).map_err(|source| {
        let help = match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => "ports below 1024 and binding to an interface need root (or CAP_NET_BIND_SERVICE and CAP_NET_RAW)".to_owned(),
            Some(libc::ENODEV) => format!("there is no interface `{iface}`: fix [network] interface (ip -br link lists them)"),
            Some(libc::EADDRINUSE) => "another DHCP server uses this port: stop it (dnsmasq, kea, dhcpd) or use proxy mode".to_owned(),
            _ => "check [network] interface and your privileges".to_owned(),
        };
        BindError { what: "DHCP", place: format!("{iface} port {port}"), source, help }
    })
}

/// HTTP's listening socket on `addr`, non-blocking for the runtime.
pub fn tcp(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    let bind_error = |source| {
        BindError {
        what: "HTTP",
        place: addr.to_string(),
        source,
        help: "another program may use the port (change http_port in the spec or use --http-listen), or the address is not this machine's ([network] server)".to_owned(),
    }
    };
    let l = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    l.set_nonblocking(true).map_err(bind_error)?;
    Ok(l)
}
