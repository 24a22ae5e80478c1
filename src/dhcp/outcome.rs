//! What the DHCP server did with a request: one name per case, matched as
//! an enum wherever it matters (enrolment, the boot timeline, a withdrawn
//! offer's claim) so that renaming one cannot silently stop another part
//! from seeing it; its `name` is the label in logs and metrics.

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Offer,
    Ack,
    /// A renewal ACKed while a shared store was away (for the time the
    /// lease has left).
    AckUnstored,
    Nak,
    Inform,
    ProxyOffer,
    ProxyAck,
    /// A machine not in the spec, and no `[enrolment]`.
    UnknownRefused,
    NotARequest,
    NoMac,
    NoMessageType,
    RelayFromUnservedSubnet,
    /// A node of the spec asked from another segment than the one its
    /// address lies in.
    WrongSegment,
    Decline,
    DeclineIgnored,
    Release,
    UnhandledType,
    PoolExhausted,
    /// The client's REQUEST names another server: this one's offer is
    /// withdrawn.
    ChoseAnotherServer,
    RequestWithoutAddress,
    ProxyNotOurs,
    ProxyNotPxe,
}

impl Outcome {
    /// The label in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Offer => "offer",
            Outcome::Ack => "ack",
            Outcome::AckUnstored => "ack_unstored",
            Outcome::Nak => "nak",
            Outcome::Inform => "inform",
            Outcome::ProxyOffer => "proxy_offer",
            Outcome::ProxyAck => "proxy_ack",
            Outcome::UnknownRefused => "unknown_refused",
            Outcome::NotARequest => "not_a_request",
            Outcome::NoMac => "no_mac",
            Outcome::NoMessageType => "no_message_type",
            Outcome::RelayFromUnservedSubnet => "relay_from_unserved_subnet",
            Outcome::WrongSegment => "wrong_segment",
            Outcome::Decline => "decline",
            Outcome::DeclineIgnored => "decline_ignored",
            Outcome::Release => "release",
            Outcome::UnhandledType => "unhandled_type",
            Outcome::PoolExhausted => "pool_exhausted",
            Outcome::ChoseAnotherServer => "chose_another_server",
            Outcome::RequestWithoutAddress => "request_without_address",
            Outcome::ProxyNotOurs => "proxy_not_ours",
            Outcome::ProxyNotPxe => "proxy_not_pxe",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
