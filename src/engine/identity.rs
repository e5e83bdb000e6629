//! This node's static keys: one, or two while it rotates (the new one first). Each key has its
//! own MAC checkers, because MAC1 is keyed by the responder's public key: an initiation
//! addressed to the new key fails a checker made for the old one. Admission (`admission.rs`)
//! uses them before any Diffie-Hellman and decides about load itself.

use crate::core::key::{PrivateKey, PublicKey};
use boringtun::noise::rate_limiter::RateLimiter;
use std::sync::Arc;

/// One of this node's static keys, with boringtun's MAC checkers bound to it (they check
/// MAC1, keyed by the responder's public key). boringtun's checker is a rate limiter with a
/// count of its own that must be reset every second; ours never rely on that count: one
/// never limits, the other always does.
pub(super) struct OwnKey {
    pub private: PrivateKey,
    pub public: PublicKey,
    /// Checks MAC1 only. Admission asks it first, and the sessions' `Tunn`s get it: admission
    /// already decided what reaches them.
    pub mac1_only: Arc<RateLimiter>,
    /// Checks MAC1 and MAC2 and answers a message without a valid MAC2 with a cookie reply:
    /// for admission once the node is under load.
    pub cookies: RateLimiter,
}

impl OwnKey {
    pub fn new(private: PrivateKey) -> Self {
        let public = private.public_key();
        Self {
            mac1_only: Arc::new(RateLimiter::new(&public.to_x25519(), u64::MAX)),
            cookies: RateLimiter::new(&public.to_x25519(), 0),
            private,
            public,
        }
    }
}

/// This node's static keys, newest first: one, or two during a rotation.
pub(super) struct Identity {
    pub keys: Vec<Arc<OwnKey>>,
}

impl Identity {
    pub fn newest(&self) -> &Arc<OwnKey> {
        &self.keys[0]
    }
}
