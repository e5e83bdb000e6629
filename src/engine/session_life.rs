//! The life of a peer's sessions, as the device decides it: made when traffic or a handshake
//! needs one (under which keys and PSK epoch), and given back when the peer has been quiet
//! (the rules are `idle.rs`'s). Timers run only for awake peers.

use super::device::Device;
use super::idle::Quiet;
use super::own_keys::OwnKey;
use super::peer::Peer;
use super::scratch::Scratch;
use super::session::{slot_of, Session, SessionGuard, SessionKeys};
use super::sink::Sink;
use crate::constants::SESSION_FRESH;
use crate::core::key::PublicKey;
use boringtun::noise::Tunn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

impl Device {
    /// A `Tunn` for `keys` at `slot`, with the pair's PSK for the keys' epoch.
    pub(super) fn new_tunn(
        &self,
        own: &OwnKey,
        keys: SessionKeys,
        keepalive: Option<u16>,
        slot: u32,
    ) -> Tunn {
        Tunn::new(
            own.private.secret().clone(),
            keys.theirs.to_x25519(),
            self.psk.psk_for(&keys),
            keepalive,
            slot,
            Some(own.mac1_only.clone()),
        )
    }

    /// The active session of `peer`, made now under the newest keys if the peer is idle.
    pub(super) fn wake<'p>(&self, peer: &'p Peer) -> SessionGuard<'p> {
        let (guard, made) = peer.active_or_make(|generation| {
            let (own, keys) = self.newest_keys(peer);
            let slot = slot_of(peer.slot, generation, keys.epoch);
            let keepalive = peer.config().persistent_keepalive;
            let tunn = self.new_tunn(&own, keys, keepalive, slot);
            Session::new(tunn, peer.slot, generation, keys)
        });
        if made {
            // after the session exists: a release can only remove what it saw (see `release`)
            self.idle.woke(peer.slot);
            tracing::trace!(peer = %peer.name(), "peer woke");
        }
        guard
    }

    /// Ensures `peer` has a session for `keys` (an idle peer wakes with it); whether it had to
    /// be made.
    pub(super) fn ensure_session_for(&self, peer: &Peer, own: &OwnKey, keys: SessionKeys) -> bool {
        let keepalive = peer.config().persistent_keepalive;
        let made = peer.ensure_session(keys, |slot| self.new_tunn(own, keys, keepalive, slot));
        if made {
            self.idle.woke(peer.slot);
        }
        made
    }

    /// Removes the session for `keys` that was made for nothing (a wrong guess); a peer left
    /// without any session is idle again.
    pub(super) fn unmake_session(&self, peer: &Peer, keys: SessionKeys) {
        let mut sessions = peer.sessions();
        sessions.others.retain(|s| s.keys() != keys);
        if sessions.active.as_ref().is_some_and(|s| s.keys() == keys) {
            sessions.active = sessions.others.pop().map(Box::new);
        }
        if sessions.active.is_none() {
            // under the peer's lock, as a release does
            self.idle.awake().remove(&peer.slot);
        }
    }

    /// Our newest key, the peer's newest key, the current PSK epoch.
    pub(super) fn newest_keys(&self, peer: &Peer) -> (Arc<OwnKey>, SessionKeys) {
        let own = self.keys.newest();
        let keys = SessionKeys {
            ours: own.public,
            theirs: peer.public_key(),
            epoch: self.psk.epoch(),
        };
        (own, keys)
    }

    /// A session between our newest key and the peer's newest key exists afterwards.
    pub(super) fn ensure_newest_session(&self, peer: &Peer) -> bool {
        let (own, keys) = self.newest_keys(peer);
        self.ensure_session_for(peer, &own, keys)
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
        Some(SessionKeys {
            ours: own.public,
            theirs,
            epoch: self.psk.near(bits)?,
        })
    }

    /// Peers holding session state now, for the timers and for rotations (an idle peer gets
    /// the newest keys and epoch when it wakes; it needs no announcement).
    pub(super) fn awake_peers(&self) -> Vec<Arc<Peer>> {
        let table = self.peers.load();
        let mut gone = Vec::new();
        let mut out = Vec::new();
        let mut slots = self.idle.awake();
        for &slot in slots.iter() {
            match table.by_slot(slot) {
                Some(p) => out.push(p.clone()),
                // removed by a reload
                None => gone.push(slot),
            }
        }
        for slot in gone {
            slots.remove(&slot);
        }
        out
    }

    /// At an epoch change: a session for the new epoch with every awake peer, started now;
    /// sessions before the previous epoch dropped.
    pub(super) fn tick_psk(
        &self,
        awake: &[Arc<Peer>],
        wall: SystemTime,
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        let Some(epoch) = self.psk.advance(wall) else {
            return;
        };
        tracing::debug!(epoch, "PSK epoch changed");
        // idle peers wake in the new epoch by themselves
        for peer in awake {
            self.ensure_newest_session(peer);
            self.initiate_newest(peer, scratch.packet_mut(), sink);
            peer.retire_epochs_before(epoch.saturating_sub(1));
        }
    }

    /// Drives the timers of awake peers' sessions, and releases the peers that went idle.
    pub(super) fn tick_sessions(
        &self,
        awake: &[Arc<Peer>],
        now: Instant,
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        let release_after = self.idle.release_after();
        for peer in awake {
            let mut sessions = peer.sessions();
            for s in sessions.iter_mut() {
                let result = s.update_timers(scratch.packet_mut());
                self.timer_result(peer, result, sink);
                if s.confirm.wait_expired(now) {
                    self.send_waiting(peer, s, scratch.packet_mut(), sink);
                }
            }
            let packets =
                peer.rx_packets.load(Ordering::Relaxed) + peer.tx_packets.load(Ordering::Relaxed);
            if packets != sessions.seen_packets || sessions.quiet_since.is_none() {
                sessions.seen_packets = packets;
                sessions.quiet_since = Some(now);
                continue;
            }
            let expired = sessions.iter_mut().all(|s| s.is_expired());
            let keys_dead = sessions.iter_mut().all(|s| {
                s.time_since_last_handshake()
                    .is_none_or(|a| a >= SESSION_FRESH)
            });
            let state = Quiet {
                quiet: sessions
                    .quiet_since
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
                expired,
                keys_dead,
                keepalive: peer.config().persistent_keepalive.is_some(),
                rotating: peer.keys().accepted().len() > 1,
            };
            if !state.release(release_after) {
                continue;
            }
            let handshake = sessions
                .active
                .as_ref()
                .and_then(|s| s.time_since_last_handshake())
                .and_then(|age| now.checked_sub(age));
            let dropped: Vec<Session> = sessions
                .active
                .take()
                .map(|b| *b)
                .into_iter()
                .chain(sessions.others.drain(..))
                .collect();
            for s in &dropped {
                peer.retire_counters(s);
            }
            sessions.quiet_since = None;
            if let Some(at) = handshake {
                peer.remember_handshake(at);
            }
            // still under the peer's lock: a wake after this re-inserts the slot
            self.idle.released(peer.slot);
            drop(sessions);
            tracing::debug!(peer = %peer.name(), quiet_secs = state.quiet.as_secs(), "peer idle: session state released");
        }
    }
}
