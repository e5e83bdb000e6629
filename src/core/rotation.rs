//! Static-key rotation as a sans-IO state machine: time is an argument, nothing is sent here.
//!
//! ## A node rotating its own key ([`NodeRotation`])
//!
//! ```text
//!  Stable{key} ──start(new)──► Announced{old,new,at} ──every peer acked, or──► Switched{old,new,grace_until}
//!                                                      announce_timeout                 │
//!  Stable{new} ◄───────────────────────── grace_until passed ─────────────────────────────┘
//! ```
//!
//! - **Announced**: the new public key goes to every peer inside the existing (authenticated)
//!   sessions; traffic still uses the old key. Handshakes addressed to the new key are already
//!   accepted, so a peer that learnt it may start a session under it at once.
//! - **Switched**: new sessions are under the new key; handshakes to either key are accepted
//!   and old sessions still decrypt packets in flight.
//! - **Stable{new}**: the old key is refused: whoever holds only the old private key can no
//!   longer complete a handshake.
//!
//! Timers: `announce_retry` (re-announce to peers that have not acked), `announce_timeout`
//! (switch without the stragglers, e.g. a stock WireGuard peer that never answers) and `grace`
//! (how long the old key stays accepted after the switch).
//!
//! ## A peer learning a node's new key ([`PeerKeys`])
//!
//! A peer accepts an announced key for node N only when the announcement arrived over a session
//! authenticated with one of N's keys; it then accepts both keys for N until the announced
//! grace window ends ([`PeerKeys::poll`] retires the old one).
//!
//! Call order for both: `handle_*` as inputs arrive, then `poll(now)` until it returns `None`.

use crate::core::key::PublicKey;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long each phase of a rotation lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationTiming {
    /// How long the old key stays accepted after the switch.
    pub grace: Duration,
    /// The longest wait for acknowledgements before switching anyway.
    pub announce_timeout: Duration,
    /// How often the announcement is repeated to peers that have not acknowledged it.
    pub announce_retry: Duration,
}

impl Default for RotationTiming {
    fn default() -> Self {
        Self {
            grace: crate::constants::ROTATION_GRACE,
            announce_timeout: crate::constants::ROTATION_ANNOUNCE_TIMEOUT,
            announce_retry: crate::constants::ROTATION_ANNOUNCE_RETRY,
        }
    }
}

/// Where a node's own rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Stable {
        key: PublicKey,
    },
    Announced {
        old: PublicKey,
        new: PublicKey,
        at: Instant,
    },
    Switched {
        old: PublicKey,
        new: PublicKey,
        grace_until: Instant,
    },
}

/// What the driver must do for a node's rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// Send `KeyAnnounce{new, effective}` to these peers inside their current sessions.
    Announce {
        peers: Vec<String>,
        new: PublicKey,
        effective: Duration,
    },
    /// Start sessions under the new key with every peer that has none yet, and tell every
    /// peer the exact remaining window: `KeyAnnounce{new, grace}`.
    Switch {
        old: PublicKey,
        new: PublicKey,
        grace: Duration,
    },
    /// Forget the old key: refuse handshakes to it, drop its sessions.
    Retire { old: PublicKey },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("a key rotation is already under way (old key {old}, new key {new})")]
    Busy { old: PublicKey, new: PublicKey },
    #[error("the new key {0} is the current key")]
    SameKey(PublicKey),
}

/// One node's rotation of its own static key. See the module doc for states and timers.
#[derive(Debug, Clone)]
pub struct NodeRotation {
    state: NodeState,
    timing: RotationTiming,
    unacked: BTreeSet<String>,
    next_announce: Option<Instant>,
    completed: u64,
}

impl NodeRotation {
    /// A node with `key`, not rotating (also the state after a restart: the key file holds
    /// whatever key was newest, and the old one is gone with the process).
    pub fn new(key: PublicKey, timing: RotationTiming) -> Self {
        Self {
            state: NodeState::Stable { key },
            timing,
            unacked: BTreeSet::new(),
            next_announce: None,
            completed: 0,
        }
    }

    pub fn state(&self) -> NodeState {
        self.state
    }

    pub fn timing(&self) -> RotationTiming {
        self.timing
    }

    /// Rotations started since this process began.
    pub fn rotations(&self) -> u64 {
        self.completed
    }

    /// The key new sessions should use.
    pub fn newest(&self) -> PublicKey {
        match self.state {
            NodeState::Stable { key } => key,
            NodeState::Announced { new, .. } | NodeState::Switched { new, .. } => new,
        }
    }

    /// Keys a handshake may be addressed to, newest first.
    pub fn accepted(&self) -> Vec<PublicKey> {
        match self.state {
            NodeState::Stable { key } => vec![key],
            NodeState::Announced { old, new, .. } | NodeState::Switched { old, new, .. } => {
                vec![new, old]
            }
        }
    }

    /// Peers that have not acknowledged the current announcement.
    pub fn unacked(&self) -> impl Iterator<Item = &str> {
        self.unacked.iter().map(String::as_str)
    }

    /// Begins a rotation to `new`, announcing it to `peers` (by name).
    pub fn start(
        &mut self,
        new: PublicKey,
        peers: impl IntoIterator<Item = String>,
        now: Instant,
    ) -> Result<(), RotationError> {
        let old = match self.state {
            NodeState::Stable { key } if key == new => return Err(RotationError::SameKey(new)),
            NodeState::Stable { key } => key,
            NodeState::Announced { old, new, .. } | NodeState::Switched { old, new, .. } => {
                return Err(RotationError::Busy { old, new })
            }
        };
        self.state = NodeState::Announced { old, new, at: now };
        self.unacked = peers.into_iter().collect();
        self.next_announce = Some(now);
        self.completed += 1;
        Ok(())
    }

    /// `peer` acknowledged the key `new`; acknowledgements of any other key are stale.
    pub fn handle_ack(&mut self, peer: &str, new: PublicKey) {
        if self.newest() == new {
            self.unacked.remove(peer);
        }
    }

    /// How long, from `now`, the old key will still be accepted (what peers are told).
    pub fn effective(&self, now: Instant) -> Duration {
        match self.state {
            NodeState::Stable { .. } => Duration::ZERO,
            NodeState::Announced { at, .. } => {
                (at + self.timing.announce_timeout).saturating_duration_since(now)
                    + self.timing.grace
            }
            NodeState::Switched { grace_until, .. } => grace_until.saturating_duration_since(now),
        }
    }

    /// The next thing to do, if any; call until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<NodeAction> {
        match self.state {
            NodeState::Stable { .. } => None,
            NodeState::Announced { old, new, at } => {
                if self.unacked.is_empty() || now >= at + self.timing.announce_timeout {
                    self.state = NodeState::Switched {
                        old,
                        new,
                        grace_until: now + self.timing.grace,
                    };
                    self.next_announce = None;
                    return Some(NodeAction::Switch {
                        old,
                        new,
                        grace: self.timing.grace,
                    });
                }
                match self.next_announce {
                    Some(t) if now >= t => {
                        self.next_announce = Some(now + self.timing.announce_retry);
                        Some(NodeAction::Announce {
                            peers: self.unacked.iter().cloned().collect(),
                            new,
                            effective: self.effective(now),
                        })
                    }
                    _ => None,
                }
            }
            NodeState::Switched {
                old,
                new,
                grace_until,
            } => {
                if now < grace_until {
                    return None;
                }
                self.state = NodeState::Stable { key: new };
                self.unacked.clear();
                Some(NodeAction::Retire { old })
            }
        }
    }
}

/// How a peer took an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceVerdict {
    /// A new key for the node: both are accepted until the grace window ends.
    Accepted,
    /// A key already known (a repeated announcement): acknowledge again, change nothing.
    Repeated,
    /// Not from the node's own session: ignored (and counted by the driver).
    Refused,
}

/// What one peer knows of another node's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerKeys {
    current: PublicKey,
    next: Option<PublicKey>,
    retire_at: Option<Instant>,
}

impl PeerKeys {
    pub fn new(key: PublicKey) -> Self {
        Self {
            current: key,
            next: None,
            retire_at: None,
        }
    }

    /// The key new sessions should use.
    pub fn newest(&self) -> PublicKey {
        self.next.unwrap_or(self.current)
    }

    /// Every key accepted for the node now, newest first.
    pub fn accepted(&self) -> Vec<PublicKey> {
        self.next.into_iter().chain([self.current]).collect()
    }

    pub fn accepts(&self, key: &PublicKey) -> bool {
        self.current == *key || self.next == Some(*key)
    }

    /// An announcement of `new`, valid for `effective`, that arrived over a session
    /// authenticated with the node key `session_key`.
    pub fn handle_announce(
        &mut self,
        session_key: PublicKey,
        new: PublicKey,
        effective: Duration,
        now: Instant,
    ) -> AnnounceVerdict {
        if !self.accepts(&session_key) {
            return AnnounceVerdict::Refused;
        }
        if self.next == Some(new) {
            // the node's latest word on its window (it re-announces the exact grace when it
            // switches, earlier than its first estimate)
            self.retire_at = Some(now + effective);
            return AnnounceVerdict::Repeated;
        }
        if self.current == new {
            return AnnounceVerdict::Repeated;
        }
        if let Some(next) = self.next.take() {
            // a second rotation before the first one's window closed: the first one's old key
            // is certainly refused by now
            self.current = next;
        }
        self.next = Some(new);
        self.retire_at = Some(now + effective);
        AnnounceVerdict::Accepted
    }

    /// The key to retire once the grace window has passed: `Some(old)` exactly once.
    pub fn poll(&mut self, now: Instant) -> Option<PublicKey> {
        match (self.next, self.retire_at) {
            (Some(next), Some(t)) if now >= t => {
                let old = std::mem::replace(&mut self.current, next);
                self.next = None;
                self.retire_at = None;
                Some(old)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
