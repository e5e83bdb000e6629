//! The device's own counters: packets dropped, by reason, and packets forwarded between peers.
//! Per-peer counters live on the peer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was dropped; each has a counter (for metrics and `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// From the tun device, to an address no peer carries.
    NoRoute,
    /// The peer has no known endpoint yet.
    NoEndpoint,
    /// Decrypted fine, but the inner source is outside the sending peer's AllowedIPs.
    SourceNotAllowed,
    /// Unparseable, unauthenticated, replayed or for an unknown session.
    Decrypt,
    /// A handshake from a key that is not a configured peer.
    UnknownPeer,
    /// Handshake flood: answered with a cookie instead.
    RateLimited,
    /// Forwarding would loop or the TTL ran out.
    Ttl,
    /// Larger than the path's MTU with fragmentation forbidden; a "too big" error went back.
    TooBig,
    /// A key announcement that did not come from the announcing node's own session.
    ForgedAnnouncement,
    /// Data for a session this node had released as idle (a new handshake was started).
    StaleSession,
    /// Denied by the network policy (docs/policy.md); its counters say which rule.
    Policy,
    /// A control message (port `CONTROL_PORT`) not made by the engine: from the tun device
    /// with one of this node's own addresses as source, or arriving with a source other than
    /// the sending peer's own address. Only engines speak control.
    ForgedControl,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::SourceNotAllowed,
        DropReason::Decrypt,
        DropReason::UnknownPeer,
        DropReason::RateLimited,
        DropReason::Ttl,
        DropReason::TooBig,
        DropReason::ForgedAnnouncement,
        DropReason::StaleSession,
        DropReason::Policy,
        DropReason::ForgedControl,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::SourceNotAllowed => "source_not_allowed",
            DropReason::Decrypt => "decrypt_failure",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::RateLimited => "rate_limited",
            DropReason::Ttl => "ttl",
            DropReason::TooBig => "too_big",
            DropReason::ForgedAnnouncement => "forged_key_announcement",
            DropReason::StaleSession => "stale_session",
            DropReason::Policy => "policy",
            DropReason::ForgedControl => "forged_control",
        }
    }
}

/// Counted on the data path with relaxed atomics: a counter is a tally, never a decision.
#[derive(Default)]
pub(super) struct Counters {
    drops: [AtomicU64; DropReason::ALL.len()],
    forwarded: AtomicU64,
}

impl Counters {
    pub fn drop_packet(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }

    pub fn drop_counts(&self) -> HashMap<DropReason, u64> {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops(*r)))
            .collect()
    }

    pub fn forwarded_one(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}
