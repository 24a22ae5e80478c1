//! A site of several network segments, pure: which segment a request is
//! for, and whether the machine that sent it may be answered there.
//!
//! The segment comes from where the request came: for a relayed request
//! (giaddr set), the link selection sub-option of option 82 (RFC 3527),
//! else option 118 (RFC 3011), else giaddr (RFC 2131 4.3.1), whichever
//! segment's subnet holds that address; for a broadcast, the direct
//! segment whose interface it arrived on (the shell says which). Each
//! segment is then decided by [`super::policy`] with its own
//! configuration: its subnet, server address, pool and its own nodes'
//! reservations. A node of the spec asking from another segment than the
//! one its address lies in gets nothing.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use dhcproto::v4::relay::{RelayCode, RelayInfo};
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};

use super::outcome::Outcome;
use super::policy::{Config, Decision, client_mac, decide, message_type};
use super::pool::Table;

/// Every segment's configuration, and where the spec puts each node.
#[derive(Debug, Clone)]
pub struct Site {
    /// In spec order: `[network]`'s first.
    pub segments: Vec<Config>,
    /// Each node of the spec (and enrolled machine): the index of the
    /// segment its address lies in.
    pub home: HashMap<crate::spec::Mac, usize>,
    /// Seconds a lease is kept after it expired (the same site-wide).
    pub keep_expired_secs: u64,
}

/// The segment a request is for, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    Segment(usize),
    /// Relayed from (or selecting) an address in no segment.
    Unserved(Ipv4Addr),
    /// A broadcast on a socket of no direct segment.
    Nowhere,
}

/// What a relay or the client names as the client's link: option 82's
/// link selection, option 118, or giaddr; `None` when not relayed.
pub fn link_address(req: &Message) -> Option<Ipv4Addr> {
    if req.giaddr().is_unspecified() {
        return None;
    }
    if let Some(DhcpOption::RelayAgentInformation(info)) =
        req.opts().get(OptionCode::RelayAgentInformation)
    {
        if let Some(RelayInfo::LinkSelection(ip)) = info.get(RelayCode::LinkSelection) {
            return Some(*ip);
        }
    }
    if let Some(DhcpOption::SubnetSelection(ip)) = req.opts().get(OptionCode::SubnetSelection) {
        return Some(*ip);
    }
    Some(req.giaddr())
}

impl Site {
    /// A site of one segment.
    pub fn one(cfg: Config) -> Site {
        let home = cfg.pool.reservations.keys().map(|m| (*m, 0)).collect();
        let keep_expired_secs = cfg.keep_expired_secs;
        Site {
            segments: vec![cfg],
            home,
            keep_expired_secs,
        }
    }

    /// The segment whose subnet holds `ip`.
    pub fn segment_of(&self, ip: Ipv4Addr) -> Option<usize> {
        self.segments.iter().position(|s| s.subnet.contains(&ip))
    }

    /// The segment `req` is for: relayed, by its link address; else the
    /// direct segment it `arrived` on.
    pub fn select(&self, req: &Message, arrived: Option<usize>) -> Selected {
        match link_address(req) {
            Some(ip) => self
                .segment_of(ip)
                .map_or(Selected::Unserved(ip), Selected::Segment),
            None => arrived
                .filter(|i| *i < self.segments.len())
                .map_or(Selected::Nowhere, Selected::Segment),
        }
    }

    /// The segment a PXE boot-server request (port 4011, unicast from a
    /// client that has an address) is for: the one holding its address,
    /// else as [`Site::select`].
    pub fn select_4011(&self, req: &Message, arrived: Option<usize>) -> Selected {
        match self.segment_of(req.ciaddr()) {
            Some(i) if !req.ciaddr().is_unspecified() => Selected::Segment(i),
            _ => self.select(req, arrived),
        }
    }

    /// Whether `mac` is a node of the spec reserved `ip`.
    pub fn reserved(&self, mac: crate::spec::Mac, ip: Ipv4Addr) -> bool {
        self.home
            .get(&mac)
            .is_some_and(|i| self.segments[*i].pool.reservations.get(&mac) == Some(&ip))
    }
}

/// Decides `req`, which `arrived` on the socket of that direct segment
/// (`None`: a socket of no segment), at unix time `now`.
pub fn decide_site(
    req: &Message,
    site: &Site,
    arrived: Option<usize>,
    table: &Table,
    now: u64,
) -> (Decision, Selected) {
    let selected = site.select(req, arrived);
    let Selected::Segment(seg) = selected else {
        return (Decision::silent(Outcome::RelayFromUnservedSubnet), selected);
    };
    if let (Some(mac), Some(MessageType::Discover | MessageType::Request)) =
        (client_mac(req), message_type(req))
    {
        if site.home.get(&mac).is_some_and(|home| *home != seg) {
            return (Decision::silent(Outcome::WrongSegment), selected);
        }
    }
    (decide(req, &site.segments[seg], table, now), selected)
}

#[cfg(test)]
mod tests;
