//! This node's static keys: one, or two while it rotates (the new one first), with the state of
//! its own rotation and when the newest key came into use. Each key has its
//! own MAC checkers, because MAC1 is keyed by the responder's public key: an initiation
//! addressed to the new key fails a checker made for the old one. Admission (`admission.rs`)
//! uses them before any Diffie-Hellman and decides about load itself.

use crate::core::key::{PrivateKey, PublicKey};
use crate::core::rotation::{NodeRotation, RotationTiming};
use arc_swap::{ArcSwap, Guard};
use boringtun::noise::rate_limiter::RateLimiter;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// The keys the data path reads without a lock (swapped whole), and the rotation that changes
/// them.
pub(super) struct OwnKeys {
    identity: ArcSwap<Identity>,
    rotation: Mutex<NodeRotation>,
    /// When the newest key came into use.
    since: Mutex<Instant>,
}

impl OwnKeys {
    pub fn new(private: PrivateKey, timing: RotationTiming, now: Instant) -> Self {
        let own = Arc::new(OwnKey::new(private));
        Self {
            rotation: Mutex::new(NodeRotation::new(own.public, timing)),
            identity: ArcSwap::from_pointee(Identity { keys: vec![own] }),
            since: Mutex::new(now),
        }
    }

    /// The keys now, newest first.
    pub fn load(&self) -> Guard<Arc<Identity>> {
        self.identity.load()
    }

    pub fn newest(&self) -> Arc<OwnKey> {
        self.identity.load().newest().clone()
    }

    /// The own-rotation state machine.
    pub fn rotation(&self) -> MutexGuard<'_, NodeRotation> {
        self.rotation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Time since the newest key came into use.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*self.since.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `new` is the newest key from `now` on; the older ones stay until retired.
    pub fn add_newest(&self, new: Arc<OwnKey>, now: Instant) {
        let mut keys = vec![new];
        keys.extend(self.identity.load().keys.iter().cloned());
        self.identity.store(Arc::new(Identity { keys }));
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// Handshakes to `old` are refused from now on.
    pub fn forget(&self, old: &PublicKey) {
        let keys = self.identity.load().keys.clone();
        let keys = keys.into_iter().filter(|k| k.public != *old).collect();
        self.identity.store(Arc::new(Identity { keys }));
    }
}
