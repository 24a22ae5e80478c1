//! proxyDHCP (PXE specification 2.1, section 2.2.3): another server hands
//! out addresses; bootfleet only tells PXE clients what to boot. Pure, like
//! [`super::policy`].
//!
//! - On port 67 a PXE client's DISCOVER (option 60 `PXEClient` or
//!   `HTTPClient`) gets an OFFER with no address (`yiaddr` 0), option 60
//!   echoed as the firmware expects of a proxy, and the boot file. Every
//!   other message on port 67 belongs to the real DHCP server and is left
//!   alone.
//! - On port 4011 a REQUEST (or INFORM) gets an ACK with the boot file,
//!   sent back to the port it came from.
//!
//! Option 43 tells the client to take the boot file from the offer
//! (discovery control 8), so most ROMs never need port 4011; some
//! firmware asks there anyway.

use std::net::Ipv4Addr;

use dhcproto::v4::{Message, MessageType, Opcode};

use super::boot::{Client, choose};
use super::outcome::Outcome;
use super::policy::{
    Config, Decision, Dest, add_boot_options, client_mac, destination, message_type,
    refused_unknown, reply_to,
};

/// The answer to `req` received on port 67 in proxy mode.
pub fn on_port_67(req: &Message, cfg: &Config, kind: MessageType) -> Decision {
    if kind != MessageType::Discover {
        return Decision::silent(Outcome::ProxyNotOurs);
    }
    reply(
        req,
        cfg,
        MessageType::Offer,
        // No address is given, so no unicast to one.
        destination(req, false, Ipv4Addr::UNSPECIFIED),
        Outcome::ProxyOffer,
    )
}

/// The answer to `req` received on port 4011 (the PXE boot server port).
pub fn on_port_4011(req: &Message, cfg: &Config) -> Decision {
    if req.opcode() != Opcode::BootRequest {
        return Decision::silent(Outcome::NotARequest);
    }
    let Some(mac) = client_mac(req) else {
        return Decision::silent(Outcome::NotARequest);
    };
    if refused_unknown(req, cfg, mac) {
        return Decision::silent(Outcome::UnknownRefused);
    }
    match message_type(req) {
        Some(MessageType::Request | MessageType::Inform) => {
            reply(req, cfg, MessageType::Ack, Dest::Sender, Outcome::ProxyAck)
        }
        Some(_) => Decision::silent(Outcome::UnhandledType),
        None => Decision::silent(Outcome::NoMessageType),
    }
}

fn reply(req: &Message, cfg: &Config, kind: MessageType, dest: Dest, outcome: Outcome) -> Decision {
    let client = Client::from_request(req);
    if !(client.pxe_client || client.http_client) {
        // Not PXE firmware: the real DHCP server's business.
        return Decision::silent(Outcome::ProxyNotPxe);
    }
    let Some(choice) = choose(&client, &cfg.boot) else {
        return Decision::silent(Outcome::ProxyNotPxe);
    };
    let mut m = reply_to(req, kind, cfg.server, Ipv4Addr::UNSPECIFIED);
    // A proxy offer must carry option 60 whatever the client is: iPXE and
    // PXE ROMs recognise a proxyDHCP offer by it.
    let proxied = Client {
        pxe_client: !choice.http_client,
        ..client
    };
    add_boot_options(&mut m, req, cfg, &proxied, &choice);
    Decision {
        reply: Some((m, dest)),
        change: None,
        outcome,
        boot: Some(choice),
    }
}

#[cfg(test)]
mod tests;
