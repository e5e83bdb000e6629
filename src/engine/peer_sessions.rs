//! A peer's access to its sessions: finding the one a packet belongs to, making one, moving
//! traffic to a newer one and retiring old ones. The sessions themselves are `session.rs`'s.

use super::peer::Peer;
use super::session::{slot_of, Session, SessionGuard, SessionKeys, Sessions};
use crate::core::key::PublicKey;
use boringtun::noise::Tunn;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

impl Peer {
    /// The active session (derefs to its `Tunn`), if the peer is not idle. Held only for one
    /// `Tunn` call: never across an await.
    pub fn active(&self) -> Option<SessionGuard<'_>> {
        let guard = self.sessions();
        guard.active.as_ref()?;
        Some(SessionGuard::new(guard, None))
    }

    /// The active session, made by `make` (from a fresh generation number) if the peer is idle;
    /// also whether it was made, so the caller can start the peer's timers.
    pub(super) fn active_or_make(
        &self,
        make: impl FnOnce(u32) -> Session,
    ) -> (SessionGuard<'_>, bool) {
        let mut guard = self.sessions();
        let made = guard.active.is_none();
        if made {
            let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
            guard.active = Some(Box::new(make(generation)));
            guard.quiet_since = None;
        }
        (SessionGuard::new(guard, None), made)
    }

    /// The session whose slot is `slot`.
    pub fn session_by_slot(&self, slot: u32) -> Option<SessionGuard<'_>> {
        self.find_session(|s| s.slot == slot)
    }

    /// The session made for `keys`.
    pub fn session_by_keys(&self, keys: SessionKeys) -> Option<SessionGuard<'_>> {
        self.find_session(|s| s.keys() == keys)
    }

    fn find_session(&self, want: impl Fn(&Session) -> bool) -> Option<SessionGuard<'_>> {
        let guard = self.sessions();
        if guard.active.as_deref().is_some_and(&want) {
            return Some(SessionGuard::new(guard, None));
        }
        let i = guard.others.iter().position(want)?;
        Some(SessionGuard::new(guard, Some(i)))
    }

    pub(super) fn sessions(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding the lock leaves `Tunn` consistent enough to keep going:
        // every method of it completes its own state change before returning.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a session for `keys` unless one exists; `make` builds its `Tunn` from the slot.
    /// An idle peer gets it as its active session. Returns whether it was created.
    pub fn ensure_session(&self, keys: SessionKeys, make: impl FnOnce(u32) -> Tunn) -> bool {
        let mut guard = self.sessions();
        if guard.iter().any(|s| s.keys() == keys) {
            return false;
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let slot = slot_of(self.slot, generation, keys.epoch);
        let session = Session::new(make(slot), self.slot, generation, keys);
        if guard.active.is_none() {
            guard.active = Some(Box::new(session));
            guard.quiet_since = None;
        } else {
            guard.others.push(session);
        }
        true
    }

    /// The session `slot` completed a handshake: if it is newer than the active one, outgoing
    /// traffic moves to it now.
    pub fn on_established(&self, slot: u32) {
        let mut guard = self.sessions();
        let Sessions { active, others, .. } = &mut *guard;
        let Some(active) = active.as_deref_mut() else {
            return;
        };
        if active.slot == slot {
            return;
        }
        let Some(i) = others.iter().position(|s| s.slot == slot) else {
            return;
        };
        if others[i].generation > active.generation {
            std::mem::swap(active, &mut others[i]);
            tracing::debug!(peer = %self.name(), slot, "traffic moved to the new session");
        }
    }

    /// Drops every session that uses a retired key (ours or theirs). If the active one goes,
    /// the newest remaining session takes over even before its handshake completes: the old
    /// key is refused from now on. Keeps at least one session.
    pub fn retire_sessions(&self, retired: &PublicKey) {
        self.retire_where(|s| s.ours == *retired || s.theirs == *retired);
    }

    /// Drops the sessions of PSK epochs before `epoch` (as [`retire_sessions`](Self::retire_sessions)).
    pub fn retire_epochs_before(&self, epoch: u64) {
        self.retire_where(|s| s.epoch < epoch);
    }

    fn retire_where(&self, uses: impl Fn(&Session) -> bool) {
        let mut guard = self.sessions();
        let Sessions { active, others, .. } = &mut *guard;
        let Some(active) = active.as_deref_mut() else {
            return;
        };
        if uses(active) {
            let newest = others
                .iter()
                .enumerate()
                .filter(|(_, s)| !uses(s))
                .max_by_key(|(_, s)| s.generation)
                .map(|(i, _)| i);
            let Some(i) = newest else { return };
            std::mem::swap(active, &mut others[i]);
        }
        others.retain(|s| {
            if uses(s) {
                self.retire_counters(s);
            }
            !uses(s)
        });
    }

    /// Keeps a dropped session's byte counts in the peer's totals.
    pub(super) fn retire_counters(&self, s: &Session) {
        let (_, tx, rx, _, _) = s.stats();
        self.retired_tx.fetch_add(tx as u64, Ordering::Relaxed);
        self.retired_rx.fetch_add(rx as u64, Ordering::Relaxed);
    }

    /// Every session's slot and keys, active first.
    pub fn session_keys(&self) -> Vec<(u32, PublicKey, PublicKey)> {
        self.sessions()
            .iter()
            .map(|s| (s.slot, s.ours, s.theirs))
            .collect()
    }

    /// Sum of a `Tunn` counter over live and retired sessions: (tx, rx) bytes.
    pub(super) fn transfer(&self) -> (u64, u64) {
        let mut tx = self.retired_tx.load(Ordering::Relaxed);
        let mut rx = self.retired_rx.load(Ordering::Relaxed);
        for s in self.sessions().iter() {
            let (_, t, r, _, _) = s.stats();
            tx += t as u64;
            rx += r as u64;
        }
        (tx, rx)
    }
}
