//! The device's side of pre-shared keys (`core::psk` decides them): every session is made for
//! one PSK epoch; when the epoch turns, each peer gets a session for the new one (traffic moves
//! to it once its handshake completes, as in a key rotation), and sessions older than the
//! previous epoch are dropped. A responder answers in the initiator's epoch when it is within
//! one of its own, so clocks may disagree by up to one epoch.

use super::device::Device;
use super::identity::OwnKey;
use super::peer::Peer;
use super::scratch::Scratch;
use super::session::SessionKeys;
use super::sink::Sink;
use crate::core::key::PublicKey;
use crate::core::psk::{self, MeshSecret};
use boringtun::noise::Tunn;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Where pre-shared keys come from.
#[derive(Debug, Clone)]
pub struct PskSettings {
    pub secret: MeshSecret,
    /// How long one PSK epoch lasts.
    pub epoch_len: std::time::Duration,
    /// Added to this machine's clock when computing epochs (tests simulate skew with it).
    pub clock_offset: std::time::Duration,
    /// Whether `clock_offset` is subtracted instead of added.
    pub clock_behind: bool,
}

impl PskSettings {
    pub(super) fn epoch(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let now = if self.clock_behind {
            now.saturating_sub(self.clock_offset)
        } else {
            now + self.clock_offset
        };
        psk::epoch_at(now, self.epoch_len)
    }
}

impl Device {
    /// The current PSK epoch (0 without a mesh secret).
    pub(super) fn epoch(&self) -> u64 {
        self.psk.as_ref().map_or(0, |p| p.epoch())
    }

    /// A `Tunn` for `keys` at `slot`, with the pair's PSK for the keys' epoch.
    pub(super) fn new_tunn(
        &self,
        own: &OwnKey,
        keys: SessionKeys,
        keepalive: Option<u16>,
        slot: u32,
    ) -> Tunn {
        let psk = self
            .psk
            .as_ref()
            .map(|p| psk::pair_psk(&p.secret, keys.epoch, &keys.ours, &keys.theirs));
        Tunn::new(
            own.private.secret().clone(),
            keys.theirs.to_x25519(),
            psk,
            keepalive,
            slot,
            Some(own.mac1_only.clone()),
        )
    }

    /// Ensures `peer` has a session for `keys` (an idle peer wakes with it); whether it had to
    /// be made.
    pub(super) fn ensure_session_for(&self, peer: &Peer, own: &OwnKey, keys: SessionKeys) -> bool {
        let keepalive = peer.config().persistent_keepalive;
        let made = peer.ensure_session(keys, |slot| self.new_tunn(own, keys, keepalive, slot));
        if made {
            self.awake.insert(peer.slot);
        }
        made
    }

    /// The session keys a handshake initiation from `theirs` to our key `own` should meet:
    /// with a mesh secret, the initiator's epoch (`bits` are its low two bits) if within one
    /// of ours. The session is made if missing (an idle peer wakes); `None` when no nearby
    /// epoch fits.
    pub(super) fn responder_keys(
        &self,
        peer: &Peer,
        own: &Arc<OwnKey>,
        theirs: PublicKey,
        bits: u32,
    ) -> Option<SessionKeys> {
        let keys = self.initiation_keys(own, theirs, bits)?;
        self.ensure_session_for(peer, own, keys);
        Some(keys)
    }

    /// The session keys of an initiation from `theirs` to `own` (see
    /// [`responder_keys`](Self::responder_keys)), without making the session.
    pub(super) fn initiation_keys(
        &self,
        own: &OwnKey,
        theirs: PublicKey,
        bits: u32,
    ) -> Option<SessionKeys> {
        let epoch = match &self.psk {
            None => 0,
            Some(p) => psk::epoch_near(p.epoch(), bits)?,
        };
        Some(SessionKeys {
            ours: own.public,
            theirs,
            epoch,
        })
    }

    /// At an epoch change: a session for the new epoch with every peer, started now; sessions
    /// before the previous epoch dropped.
    pub(super) fn tick_psk(&self, scratch: &mut Scratch, sink: &mut impl Sink) {
        let Some(p) = &self.psk else { return };
        let epoch = p.epoch();
        if self.psk_epoch.swap(epoch, Ordering::Relaxed) == epoch {
            return;
        }
        tracing::debug!(epoch, "PSK epoch changed");
        // idle peers wake in the new epoch by themselves
        for peer in self.awake_peers().iter() {
            self.ensure_newest_session(peer);
            self.initiate_newest(peer, scratch.a_mut(), sink);
            peer.retire_epochs_before(epoch.saturating_sub(1));
        }
    }
}
