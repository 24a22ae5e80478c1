//! What bootfleet answers to one DHCP request in full mode (RFC 2131), with
//! the PXE boot options of [`super::boot`]. Pure: a decoded request, the
//! configuration, the lease table and `now` in; the reply, where to send
//! it, and the lease change to make durable before sending it, out.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode, UnknownOption};
use ipnet::Ipv4Net;

use super::boot::{BootConfig, BootFile, Choice, Client, choose};
pub use super::outcome::Outcome;
use super::pool::{Assignment, Lease, Pool, Table};
use crate::spec::{DhcpMode, Mac};

/// How long an offered address is held for the client that was offered it.
pub const OFFER_HOLD_SECS: u64 = 30;
/// How long a declined address stays out of use.
pub const DECLINE_QUARANTINE_SECS: u64 = 600;

/// What the policy needs to know about one segment (which segment a
/// request is for is [`super::site`]'s business).
#[derive(Debug, Clone)]
pub struct Config {
    /// The segment's name, for logs, metrics and the timeline.
    pub segment: String,
    /// Full: addresses and boot files. Proxy: boot files only, to PXE
    /// clients, beside another server that hands out addresses.
    pub mode: DhcpMode,
    pub server: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: u32,
    pub pool: Pool,
    pub boot: BootConfig,
    /// The spec has `[enrolment]`: a booting machine that is not in the
    /// spec is served like any other (and enrolled by `serve`). Without it
    /// such a machine is refused: no offer, so its firmware moves on to
    /// the next boot device. Machines that are not booting (an OS renewing
    /// its lease) are served either way.
    pub enrol_unknown: bool,
    /// Seconds a lease is kept after it expired; then the server that
    /// sweeps the site forgets it.
    pub keep_expired_secs: u64,
}

/// True when `req` comes from booting firmware that the spec does not
/// know and may not enrol: it gets no answer.
pub fn refused_unknown(req: &Message, cfg: &Config, mac: Mac) -> bool {
    !cfg.enrol_unknown
        && !cfg.pool.reservations.contains_key(&mac)
        && Client::from_request(req).is_booting()
}

/// Where a reply goes (RFC 2131 section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// 255.255.255.255:68 on the interface.
    Broadcast,
    /// The new address, port 68, sent to the client's hardware address
    /// (RFC 2131 4.1, broadcast bit clear): the server first tells its
    /// ARP table that `ip` is at `mac`, or broadcasts where it cannot.
    Hardware(Ipv4Addr, Mac),
    /// The client's address, port 68.
    Client(Ipv4Addr),
    /// The relay agent (giaddr), port 67.
    Relay(Ipv4Addr),
    /// Back to the address and port the request came from (proxy
    /// requests on port 4011).
    Sender,
}

/// A change to the lease table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Hold an offered address briefly (memory only).
    Offer(Lease),
    /// Bind a lease; must be durable before the ACK is sent.
    Bind(Lease),
    /// The client gave its address back.
    Release { ip: Ipv4Addr, mac: Mac },
    /// The client found the address in use: quarantine it.
    Decline { ip: Ipv4Addr, until: u64 },
}

/// The policy's answer to one request.
#[derive(Debug, Clone)]
pub struct Decision {
    pub reply: Option<(Message, Dest)>,
    pub change: Option<Change>,
    /// Why, in a word, for logs and metrics (`offer`, `ack`, `nak`, ...).
    pub outcome: Outcome,
    /// The boot choice, when the client is booting.
    pub boot: Option<Choice>,
}

impl Decision {
    pub(super) fn silent(outcome: Outcome) -> Decision {
        Decision {
            reply: None,
            change: None,
            outcome,
            boot: None,
        }
    }
}

/// The client's MAC, from chaddr (Ethernet only).
pub fn client_mac(req: &Message) -> Option<Mac> {
    if req.hlen() != 6 {
        return None;
    }
    let ch = req.chaddr();
    (ch.len() >= 6).then(|| Mac([ch[0], ch[1], ch[2], ch[3], ch[4], ch[5]]))
}

fn requested_ip(req: &Message) -> Option<Ipv4Addr> {
    match req.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    }
}

fn server_id(req: &Message) -> Option<Ipv4Addr> {
    match req.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

/// The request's DHCP message type, if it has a well-formed one.
pub fn message_type(req: &Message) -> Option<MessageType> {
    match req.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(kind)) => Some(*kind),
        _ => None,
    }
}

/// Decides the answer to `req`, received on port 67 and meant for the
/// segment of `cfg`, at unix time `now`.
/// In proxy mode this is [`super::proxy::on_port_67`].
pub fn decide(req: &Message, cfg: &Config, table: &Table, now: u64) -> Decision {
    if req.opcode() != Opcode::BootRequest {
        return Decision::silent(Outcome::NotARequest);
    }
    let Some(mac) = client_mac(req) else {
        return Decision::silent(Outcome::NoMac);
    };
    let Some(kind) = message_type(req) else {
        return Decision::silent(Outcome::NoMessageType);
    };
    if matches!(kind, MessageType::Discover | MessageType::Request)
        && refused_unknown(req, cfg, mac)
    {
        return Decision::silent(Outcome::UnknownRefused);
    }
    if cfg.mode == DhcpMode::Proxy {
        return super::proxy::on_port_67(req, cfg, kind);
    }
    match kind {
        MessageType::Discover => discover(req, cfg, table, mac, now),
        MessageType::Request => request(req, cfg, table, mac, now),
        MessageType::Decline => match (requested_ip(req), server_id(req)) {
            (Some(ip), Some(sid)) if sid == cfg.server => Decision {
                change: Some(Change::Decline {
                    ip,
                    until: now + DECLINE_QUARANTINE_SECS,
                }),
                ..Decision::silent(Outcome::Decline)
            },
            _ => Decision::silent(Outcome::DeclineIgnored),
        },
        MessageType::Release => {
            let ip = req.ciaddr();
            Decision {
                change: Some(Change::Release { ip, mac }),
                ..Decision::silent(Outcome::Release)
            }
        }
        MessageType::Inform => {
            let (mut reply, boot) = base_reply(req, cfg, MessageType::Ack, Ipv4Addr::UNSPECIFIED);
            reply.opts_mut().remove(OptionCode::AddressLeaseTime);
            reply.opts_mut().remove(OptionCode::Renewal);
            reply.opts_mut().remove(OptionCode::Rebinding);
            let dest = destination(req, false, Ipv4Addr::UNSPECIFIED);
            Decision {
                reply: Some((reply, dest)),
                change: None,
                outcome: Outcome::Inform,
                boot,
            }
        }
        _ => Decision::silent(Outcome::UnhandledType),
    }
}

fn discover(req: &Message, cfg: &Config, table: &Table, mac: Mac, now: u64) -> Decision {
    let a = cfg.pool.assign(table, mac, requested_ip(req), now);
    let Some(ip) = a.ip() else {
        return Decision::silent(Outcome::PoolExhausted);
    };
    let (reply, boot) = base_reply(req, cfg, MessageType::Offer, ip);
    let dest = destination(req, false, ip);
    // A client that holds this address already (bound, asking again)
    // keeps its lease's end: an offer never shortens a binding.
    let bound = table
        .by_ip(ip)
        .filter(|l| l.mac == mac)
        .map_or(0, |l| l.expires);
    let hold = Lease {
        ip,
        mac,
        expires: (now + OFFER_HOLD_SECS).max(bound),
    };
    let change = (!matches!(a, Assignment::Reserved(_))).then_some(Change::Offer(hold));
    Decision {
        reply: Some((reply, dest)),
        change,
        outcome: Outcome::Offer,
        boot,
    }
}

fn request(req: &Message, cfg: &Config, table: &Table, mac: Mac, now: u64) -> Decision {
    if let Some(sid) = server_id(req) {
        if sid != cfg.server {
            // The client took another server's offer: the address offered
            // here is free again (for every server, with a shared store).
            let offered = table
                .by_mac(mac)
                .filter(|l| l.expires > now && l.expires <= now + OFFER_HOLD_SECS);
            return Decision {
                change: offered.map(|l| Change::Release { ip: l.ip, mac }),
                ..Decision::silent(Outcome::ChoseAnotherServer)
            };
        }
    }
    // SELECTING and INIT-REBOOT name the address in option 50; RENEWING
    // and REBINDING in ciaddr.
    let wanted =
        requested_ip(req).or_else(|| (!req.ciaddr().is_unspecified()).then_some(req.ciaddr()));
    let Some(wanted) = wanted else {
        return Decision::silent(Outcome::RequestWithoutAddress);
    };
    let a = cfg.pool.assign(table, mac, Some(wanted), now);
    if a.ip() != Some(wanted) {
        // RFC 2131 4.3.2: a NAK carries no ciaddr; reply_to echoes
        // option 82 for a relay, as RFC 3046 asks of every reply.
        let mut nak = reply_to(req, MessageType::Nak, cfg.server, Ipv4Addr::UNSPECIFIED);
        nak.set_ciaddr(Ipv4Addr::UNSPECIFIED);
        nak.opts_mut().insert(DhcpOption::Message(format!(
            "{wanted} is not yours: ask again"
        )));
        let dest = destination(req, true, Ipv4Addr::UNSPECIFIED);
        return Decision {
            reply: Some((nak, dest)),
            change: None,
            outcome: Outcome::Nak,
            boot: None,
        };
    }
    let (reply, boot) = base_reply(req, cfg, MessageType::Ack, wanted);
    let dest = destination(req, false, wanted);
    let lease = Lease {
        ip: wanted,
        mac,
        expires: now + u64::from(cfg.lease_secs),
    };
    Decision {
        reply: Some((reply, dest)),
        change: Some(Change::Bind(lease)),
        outcome: Outcome::Ack,
        boot,
    }
}

/// A reply of type `kind` to `req` from `server`, giving `yiaddr`: the
/// header echoed from the request (xid, ciaddr, giaddr, chaddr, flags),
/// options 53 and 54, and option 82 echoed for relays.
pub(super) fn reply_to(
    req: &Message,
    kind: MessageType,
    server: Ipv4Addr,
    yiaddr: Ipv4Addr,
) -> Message {
    let mut m = Message::new_with_id(
        req.xid(),
        req.ciaddr(),
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        req.giaddr(),
        req.chaddr(),
    );
    m.set_opcode(Opcode::BootReply);
    m.set_htype(req.htype());
    m.set_flags(req.flags());
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(server));
    if let Some(relay) = req.opts().get(OptionCode::RelayAgentInformation) {
        o.insert(relay.clone());
    }
    m
}

/// An OFFER or ACK for `yiaddr` with the network and boot options.
fn base_reply(
    req: &Message,
    cfg: &Config,
    kind: MessageType,
    yiaddr: Ipv4Addr,
) -> (Message, Option<Choice>) {
    let mut m = reply_to(req, kind, cfg.server, yiaddr);
    let o = m.opts_mut();
    o.insert(DhcpOption::AddressLeaseTime(cfg.lease_secs));
    o.insert(DhcpOption::Renewal(cfg.lease_secs / 2));
    o.insert(DhcpOption::Rebinding(cfg.lease_secs / 8 * 7));
    o.insert(DhcpOption::SubnetMask(cfg.subnet.netmask()));
    if let Some(gw) = cfg.gateway {
        o.insert(DhcpOption::Router(vec![gw]));
    }
    if !cfg.dns.is_empty() {
        o.insert(DhcpOption::DomainNameServer(cfg.dns.clone()));
    }
    let client = Client::from_request(req);
    let choice = choose(&client, &cfg.boot);
    if let Some(c) = &choice {
        add_boot_options(&mut m, req, cfg, &client, c);
    }
    (m, choice)
}

pub(super) fn add_boot_options(
    m: &mut Message,
    req: &Message,
    cfg: &Config,
    client: &Client,
    c: &Choice,
) {
    m.set_siaddr(cfg.server);
    m.set_fname_str(c.file.as_str());
    let o = m.opts_mut();
    if let BootFile::Tftp(_) = c.file {
        o.insert(DhcpOption::TFTPServerName(
            cfg.server.to_string().into_bytes(),
        ));
    }
    o.insert(DhcpOption::BootfileName(
        c.file.as_str().as_bytes().to_vec(),
    ));
    if c.http_client {
        o.insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
    } else if client.pxe_client {
        o.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
        // PXE discovery control: take the boot file from this offer, skip
        // boot-server discovery (sub-option 6 = 8).
        o.insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
    }
    if client.ipxe {
        // iPXE: no ProxyDHCP wait (option 175, sub-option 176 = 1).
        o.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::Unknown(175),
            vec![176, 1, 1],
        )));
    }
    if let Some(uuid) = req.opts().get(OptionCode::ClientMachineIdentifier) {
        o.insert(uuid.clone());
    }
}

/// RFC 2131 4.1: relays by unicast to giaddr:67; NAKs by broadcast;
/// bound clients to their address; clients that ask for it (broadcast
/// bit) by broadcast; else a client getting the new address `yiaddr` to its hardware
/// address. Broadcasting that last case too would work, but every machine
/// on the segment would wake for every other's OFFER and ACK, and the
/// server would have to ARP for each new address before its first TFTP
/// packet: in a 200-machine boot storm, that was most of the DHCP and TFTP
/// time (bench/storm.sh).
pub(super) fn destination(req: &Message, nak: bool, yiaddr: Ipv4Addr) -> Dest {
    if !req.giaddr().is_unspecified() {
        return Dest::Relay(req.giaddr());
    }
    if nak {
        return Dest::Broadcast;
    }
    if !req.ciaddr().is_unspecified() {
        return Dest::Client(req.ciaddr());
    }
    if req.flags().broadcast() {
        return Dest::Broadcast;
    }
    match client_mac(req) {
        Some(mac) if !yiaddr.is_unspecified() && !mac.is_multicast() => Dest::Hardware(yiaddr, mac),
        _ => Dest::Broadcast,
    }
}

#[cfg(test)]
pub(crate) mod tests;
