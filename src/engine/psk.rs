//! The device's side of pre-shared keys (`core::psk` decides them): every session is made for
//! one PSK epoch; when the epoch turns, each peer gets a session for the new one (traffic moves
//! to it once its handshake completes, as in a key rotation), and sessions older than the
//! previous epoch are dropped. A responder answers in the initiator's epoch when it is within
//! one of its own, so clocks may disagree by up to one epoch.

use super::session::SessionKeys;
use crate::core::psk::{self, MeshSecret};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Where pre-shared keys come from.
#[derive(Debug, Clone)]
pub struct PskSettings {
    pub secret: MeshSecret,
    /// How long one PSK epoch lasts.
    pub epoch_len: Duration,
}

impl PskSettings {
    /// The epoch at the wall-clock time `wall` (the driver's clock: epochs must agree across
    /// machines, so they follow the wall clock, never a monotonic one).
    pub fn epoch_at(&self, wall: SystemTime) -> u64 {
        let since_unix = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        psk::epoch_at(since_unix, self.epoch_len)
    }
}

/// The mesh secret, if any, and the epoch sessions are made for now. The epoch moves only
/// when the driver's wall clock is given to [`advance`](Self::advance) (every tick), so the
/// packet paths read one atomic and never a clock.
pub(super) struct PskEpochs {
    settings: Option<PskSettings>,
    current: AtomicU64,
}

impl PskEpochs {
    pub fn new(settings: Option<PskSettings>, wall: SystemTime) -> Self {
        let epoch = settings.as_ref().map_or(0, |p| p.epoch_at(wall));
        Self {
            settings,
            current: AtomicU64::new(epoch),
        }
    }

    /// The epoch in use, when a mesh secret is configured.
    pub fn configured(&self) -> Option<u64> {
        self.settings.as_ref().map(|_| self.epoch())
    }

    /// The epoch new sessions are made for (0 without a mesh secret).
    pub fn epoch(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    /// The epoch a handshake initiation whose sender index carries `bits` (the low two bits of
    /// its epoch) should be answered in: the initiator's, when within one of ours.
    pub fn near(&self, bits: u32) -> Option<u64> {
        match &self.settings {
            None => Some(0),
            Some(_) => psk::epoch_near(self.epoch(), bits),
        }
    }

    /// Moves to the epoch of `wall`; the new epoch when it changed.
    pub fn advance(&self, wall: SystemTime) -> Option<u64> {
        let epoch = self.settings.as_ref()?.epoch_at(wall);
        (self.current.swap(epoch, Ordering::Relaxed) != epoch).then_some(epoch)
    }

    /// The pair's PSK for a session made of `keys`.
    pub fn psk_for(&self, keys: &SessionKeys) -> Option<[u8; 32]> {
        self.settings
            .as_ref()
            .map(|p| psk::pair_psk(&p.secret, keys.epoch, &keys.ours, &keys.theirs))
    }
}
