//! This node's static keys: one, or two while it rotates (the new one first). Each key has its
//! own handshake rate limiter, because a limiter checks MAC1, which is keyed by the responder's
//! public key: an initiation addressed to the new key fails a limiter made for the old one.
//! The limiter decides in `admission.rs`, before any Diffie-Hellman; the sessions' `Tunn`s get
//! one that checks MAC1 and never limits, so a message is counted once and one cookie secret
//! is in use.

use crate::constants::HANDSHAKE_RATE_LIMIT;
use crate::core::key::{PrivateKey, PublicKey};
use boringtun::noise::rate_limiter::RateLimiter;
use std::sync::Arc;

/// One of this node's static keys, with the handshake rate limiter bound to it (a limiter
/// checks MAC1, which is keyed by the responder's public key).
pub(super) struct OwnKey {
    pub private: PrivateKey,
    pub public: PublicKey,
    /// Counts handshake messages and answers them with cookies past the limit (admission).
    pub limiter: Arc<RateLimiter>,
    /// For the sessions' `Tunn`s: admission already limited what reaches them, and a second
    /// count (with a cookie secret of its own) would refuse what admission let through.
    pub mac1_only: Arc<RateLimiter>,
}

impl OwnKey {
    pub fn new(private: PrivateKey) -> Self {
        let public = private.public_key();
        Self {
            limiter: Arc::new(RateLimiter::new(&public.to_x25519(), HANDSHAKE_RATE_LIMIT)),
            mac1_only: Arc::new(RateLimiter::new(&public.to_x25519(), u64::MAX)),
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
