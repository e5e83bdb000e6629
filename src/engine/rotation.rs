//! The device's side of static-key rotation (the decisions are `core::rotation`'s):
//! - rotating our own key: [`Device::rotate`] adds the new key (handshakes to it are accepted
//!   at once) and a session under it for every peer; `tick` announces it inside the old
//!   sessions, starts the new sessions at the switch and forgets the old key after the grace
//!   window;
//! - learning a peer's new key: an announcement is believed only from inside that peer's own
//!   session (its inner source is one of the peer's own overlay addresses, and the session's
//!   AllowedIPs check already passed); the peer then has a session under each key until its
//!   window closes.
//!
//! The caller of `rotate` must have written the new private key to disk first, so a restart
//! at any moment comes back with a key the peers accept.

use super::control_message::Message;
use super::counters::DropReason;
use super::device::Device;
use super::own_keys::OwnKey;
use super::peer::Peer;
use super::scratch::Scratch;
use super::sink::Sink;
use crate::core::key::{PrivateKey, PublicKey};
use crate::core::rotation::{AnnounceVerdict, NodeAction, NodeState, RotationError};
use boringtun::noise::TunnResult;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Device {
    /// Where this node's own rotation stands.
    pub fn rotation_state(&self) -> NodeState {
        self.keys.rotation().state()
    }

    /// Own-key rotations started since this process began.
    pub fn rotations(&self) -> u64 {
        self.keys.rotation().rotations()
    }

    /// Time since the newest own key came into use (since start, or since the last rotation).
    pub fn key_age(&self, now: Instant) -> Duration {
        self.keys.age(now)
    }

    /// Starts rotating this node's static key to `new`. The caller must have persisted `new`
    /// already: from now on handshakes addressed to it are accepted.
    pub fn rotate(&self, new: PrivateKey, now: Instant) -> Result<PublicKey, RotationError> {
        let own = Arc::new(OwnKey::new(new));
        // Only awake peers are told: an idle one wakes under the new key, and learns it from
        // the topology (as a peer that was down does).
        let awake = self.awake_peers();
        {
            let mut rotation = self.keys.rotation();
            rotation.start(own.public, awake.iter().map(|p| p.name()), now)?;
            self.keys.add_newest(own.clone(), now);
        }
        for peer in &awake {
            self.ensure_newest_session(peer);
        }
        tracing::info!(new_key = %own.public, "key rotation started");
        Ok(own.public)
    }

    /// Starts a handshake in the newest session of `peer`, unless it already has one.
    pub(super) fn initiate_newest(&self, peer: &Peer, out: &mut [u8], sink: &mut impl Sink) {
        let (_, keys) = self.newest_keys(peer);
        let Some(to) = peer.endpoint() else { return };
        let Some(mut session) = peer.session_by_keys(keys) else {
            return;
        };
        if session.time_since_last_handshake().is_some() {
            return;
        }
        if let TunnResult::WriteToNetwork(d) = session.format_handshake_initiation(out, false) {
            sink.send(to, d);
        }
    }

    /// Rotation timers: announcements, the switch, retiring old keys (ours and peers').
    pub(super) fn tick_rotation(
        &self,
        awake: &[Arc<Peer>],
        now: Instant,
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        loop {
            let action = self.keys.rotation().poll(now);
            match action {
                None => break,
                Some(NodeAction::Announce {
                    peers,
                    new,
                    effective,
                }) => {
                    let msg = Message::KeyAnnounce {
                        new_public: new,
                        effective_ms: u32::try_from(effective.as_millis()).unwrap_or(u32::MAX),
                    };
                    for peer in awake.iter().filter(|p| peers.contains(&p.name())) {
                        self.send_control(peer, &msg, 0, scratch.packet_mut(), sink);
                    }
                }
                Some(NodeAction::Switch { new, grace, .. }) => {
                    tracing::info!(new_key = %new, "key rotation: new sessions under the new key");
                    let msg = Message::KeyAnnounce {
                        new_public: new,
                        effective_ms: u32::try_from(grace.as_millis()).unwrap_or(u32::MAX),
                    };
                    for peer in awake {
                        self.ensure_newest_session(peer);
                        self.initiate_newest(peer, scratch.packet_mut(), sink);
                        self.send_control(peer, &msg, 0, scratch.packet_mut(), sink);
                    }
                }
                Some(NodeAction::Retire { old }) => {
                    tracing::info!(old_key = %old, "key rotation done: the old key is refused");
                    self.keys.forget(&old);
                    for peer in awake {
                        peer.retire_sessions(&old);
                    }
                }
            }
        }
        let mut changed = false;
        for peer in awake {
            let retired = peer.keys().poll(now);
            if let Some(old) = retired {
                tracing::info!(peer = %peer.name(), old_key = %old, "peer's old key retired");
                peer.retire_sessions(&old);
                changed = true;
            }
        }
        if changed {
            self.peers.reindex();
        }
    }

    /// `KeyAnnounce` from inside `peer`'s session, from the peer's own address (checked by
    /// `handle_control`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_key_announce(
        &self,
        peer: &Arc<Peer>,
        new: PublicKey,
        effective: Duration,
        now: Instant,
        out: &mut [u8],
        sink: &mut impl Sink,
    ) {
        let session_key = peer.public_key();
        let verdict = peer
            .keys()
            .handle_announce(session_key, new, effective, now);
        match verdict {
            AnnounceVerdict::Accepted => {
                tracing::info!(peer = %peer.name(), new_key = %new, "peer announced a new key");
                peer.key_changed(now);
                self.peers.reindex();
                self.ensure_newest_session(peer);
                self.initiate_newest(peer, out, sink);
            }
            AnnounceVerdict::Repeated => {}
            AnnounceVerdict::Refused => {
                self.drop_packet(DropReason::ForgedAnnouncement);
                return;
            }
        }
        let ack = Message::KeyAnnounceAck { new_public: new };
        self.send_control(peer, &ack, 0, out, sink);
    }

    /// `KeyAnnounceAck` from `peer`.
    pub(super) fn handle_key_ack(&self, peer: &Peer, new: PublicKey) {
        self.keys.rotation().handle_ack(&peer.name(), new);
    }
}
