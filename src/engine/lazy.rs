//! Lazy peer state. A configured peer is a compact record (keys, AllowedIPs, endpoint, path);
//! its `Tunn` (11 KiB, with buffers and timers) exists only while the peer is *awake*:
//! made by the first packet for it, or the first handshake from it, and given back when the
//! peer has been quiet and its keys can no longer carry data. A hub with 10,000 configured
//! spokes, most of them idle, so holds 10,000 small records and a few sessions.
//!
//! Timers run only for awake peers: the device keeps their slots in one set, and a tick walks
//! that set, never the whole peer table. An idle peer costs no task, no timer and no tick.

use super::device::Device;
use super::peer::Peer;
use super::scratch::Scratch;
use super::session::{slot_of, Session, SessionGuard};
use super::sink::Sink;
use crate::constants::{RELEASE_QUIET, SESSION_FRESH};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Slots of the peers that hold session state.
#[derive(Default)]
pub(super) struct Awake {
    slots: Mutex<HashSet<u32>>,
}

impl Awake {
    fn lock(&self) -> MutexGuard<'_, HashSet<u32>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn insert(&self, slot: u32) {
        self.lock().insert(slot);
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Device {
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
            self.awake.insert(peer.slot);
            tracing::trace!(peer = %peer.name(), "peer woke");
        }
        guard
    }

    /// Removes the session for `keys` that was made for nothing (a wrong guess); a peer left
    /// without any session is idle again.
    pub(super) fn unmake_session(&self, peer: &Peer, keys: super::session::SessionKeys) {
        let mut sessions = peer.sessions();
        sessions.others.retain(|s| s.keys() != keys);
        if sessions.active.as_ref().is_some_and(|s| s.keys() == keys) {
            sessions.active = sessions.others.pop().map(Box::new);
        }
        if sessions.active.is_none() {
            // under the peer's lock, as a release does
            self.awake.lock().remove(&peer.slot);
        }
    }

    /// Peers holding session state now, for the timers and for rotations (an idle peer gets
    /// the newest keys and epoch when it wakes; it needs no announcement).
    pub(super) fn awake_peers(&self) -> Vec<Arc<Peer>> {
        let table = self.table.load();
        let mut gone = Vec::new();
        let mut out = Vec::new();
        let mut slots = self.awake.lock();
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

    /// How many peers hold session state now.
    pub fn awake_count(&self) -> usize {
        self.awake.len()
    }

    /// Sessions released since start (for metrics).
    pub fn releases(&self) -> u64 {
        self.releases.load(Ordering::Relaxed)
    }

    /// Drives the timers of awake peers' sessions, and releases the peers that went idle.
    pub(super) fn tick_sessions(
        &self,
        awake: &[Arc<Peer>],
        now: Instant,
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        let release_after = self.release_after();
        for peer in awake {
            let mut sessions = peer.sessions();
            for s in sessions.iter_mut() {
                let result = s.update_timers(scratch.a_mut());
                self.timer_result(peer, result, sink);
                if s.wait_expired(now) {
                    self.send_waiting(peer, s, scratch.a_mut(), sink);
                }
            }
            let packets =
                peer.rx_packets.load(Ordering::Relaxed) + peer.tx_packets.load(Ordering::Relaxed);
            if packets != sessions.seen_packets || sessions.quiet_since.is_none() {
                sessions.seen_packets = packets;
                sessions.quiet_since = Some(now);
                continue;
            }
            let quiet = sessions
                .quiet_since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            let expired = sessions.iter_mut().all(|s| s.is_expired());
            let keys_dead = sessions.iter_mut().all(|s| {
                s.time_since_last_handshake()
                    .is_none_or(|a| a >= SESSION_FRESH)
            });
            let keepalive = peer.config().persistent_keepalive.is_some();
            let rotating = peer.keys().accepted().len() > 1;
            let release = expired
                || (!keepalive
                    && !rotating
                    && ((keys_dead && quiet >= RELEASE_QUIET)
                        || release_after.is_some_and(|after| quiet >= after)));
            if !release {
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
            self.awake.lock().remove(&peer.slot);
            drop(sessions);
            self.releases.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %peer.name(), quiet_secs = quiet.as_secs(), "peer idle: session state released");
        }
    }

    /// Quiet time after which a peer is released even while its keys are still usable
    /// (`None`: only once they are not). Set by the daemon's `release_idle_after`.
    pub(super) fn release_after(&self) -> Option<Duration> {
        match self.release_after_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Releases idle peers after `after` of quiet even while their keys are usable. Their side
    /// may still send on the old session; such a packet is dropped and answered with a new
    /// handshake, so a sparse flow loses the packet that found the session gone.
    pub fn set_release_after(&self, after: Option<Duration>) {
        let ms = after.map_or(0, |d| d.as_millis().clamp(1, u128::from(u64::MAX)) as u64);
        self.release_after_ms.store(ms, Ordering::Relaxed);
    }
}
