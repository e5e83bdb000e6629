//! A peer's sessions: normally one `Tunn`, two or three while a static key rotates.
//!
//! Each session is a `Tunn` bound to one pair of static keys (ours, theirs) with its own slot
//! (receiver index `slot << 8 | n`), so packets of the old and the new session are both
//! demultiplexed and none is lost during a switch. A peer's slots share the low 20 bits (its
//! base slot, what the peer table indexes); the top four bits are a generation counter.
//!
//! The *active* session carries outgoing traffic. A newer session becomes active as soon as it
//! has completed a handshake ([`Peer::on_established`]); the older ones stay to decrypt packets
//! still in flight until a key they use is retired ([`Peer::retire_sessions`]).
//!
//! A peer may have no session at all: a `Tunn` is 11 KiB, so an idle peer holds none (see
//! `lazy.rs`); the first packet or handshake either way makes one.

use super::confirm::Confirm;
use super::peer::Peer;
use crate::core::key::PublicKey;
use boringtun::noise::Tunn;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::Instant;

/// Bits of a slot that name the peer; the rest is the session generation.
pub const BASE_SLOT_MASK: u32 = 0x000f_ffff;
const GENERATION_SHIFT: u32 = 20;

/// One `Tunn` and the static keys it was made with.
pub struct Session {
    tunn: Tunn,
    /// The 24-bit index given to `Tunn::new`.
    pub slot: u32,
    /// Creation order within the peer: higher is newer.
    pub generation: u32,
    /// Our static public key in this session.
    pub ours: PublicKey,
    /// The peer's static public key in this session.
    pub theirs: PublicKey,
    /// The PSK epoch of this session (0 without a mesh secret).
    pub epoch: u64,
    /// Packets waiting for the session to be confirmed (see `confirm.rs`).
    pub(super) confirm: Confirm,
}

impl Session {
    /// `base` is the peer's base slot; the session's slot adds epoch and generation bits.
    pub fn new(tunn: Tunn, base: u32, generation: u32, keys: SessionKeys) -> Self {
        Self {
            tunn,
            slot: slot_of(base, generation, keys.epoch),
            generation,
            ours: keys.ours,
            theirs: keys.theirs,
            epoch: keys.epoch,
            confirm: Confirm::default(),
        }
    }

    pub(super) fn keys(&self) -> SessionKeys {
        SessionKeys {
            ours: self.ours,
            theirs: self.theirs,
            epoch: self.epoch,
        }
    }
}

/// What a session is made of: our key, their key, the PSK epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKeys {
    pub ours: PublicKey,
    pub theirs: PublicKey,
    pub epoch: u64,
}

/// The slot of a session of the peer with base slot `base`.
pub fn slot_of(base: u32, generation: u32, epoch: u64) -> u32 {
    let top = ((epoch & 3) as u32) << 2 | (generation & 3);
    (base & BASE_SLOT_MASK) | (top << GENERATION_SHIFT)
}

/// The low two bits of the PSK epoch of the session that chose `index` (a sender index).
pub fn epoch_bits(index: u32) -> u32 {
    (index >> (8 + GENERATION_SHIFT + 2)) & 3
}

impl Deref for Session {
    type Target = Tunn;
    fn deref(&self) -> &Tunn {
        &self.tunn
    }
}

impl DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Tunn {
        &mut self.tunn
    }
}

/// Every session of a peer, under one lock (so no lock order to keep).
pub struct Sessions {
    /// The session carrying outgoing traffic; `None` while the peer is idle.
    pub(super) active: Option<Box<Session>>,
    /// Older or not yet established sessions (during a key rotation).
    pub(super) others: Vec<Session>,
    /// Data packets either way when last looked at, and since when that count stood still:
    /// how long the peer has been quiet, for releasing its sessions.
    pub(super) seen_packets: u64,
    pub(super) quiet_since: Option<Instant>,
}

impl Sessions {
    pub(super) fn empty() -> Self {
        Self {
            active: None,
            others: Vec::new(),
            seen_packets: 0,
            quiet_since: None,
        }
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Session> {
        self.active
            .as_deref_mut()
            .into_iter()
            .chain(self.others.iter_mut())
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Session> {
        self.active.as_deref().into_iter().chain(self.others.iter())
    }
}

/// A locked session: the active one, or one of the others.
pub struct SessionGuard<'a> {
    guard: MutexGuard<'a, Sessions>,
    /// `None`: the active session (present: checked when the guard was made).
    other: Option<usize>,
}

impl Deref for SessionGuard<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        match self.other {
            Some(i) => &self.guard.others[i],
            // the guard is only made when the active session exists
            None => self.guard.active.as_deref().expect("active session"),
        }
    }
}

impl DerefMut for SessionGuard<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        match self.other {
            Some(i) => &mut self.guard.others[i],
            None => self.guard.active.as_deref_mut().expect("active session"),
        }
    }
}

impl SessionGuard<'_> {
    /// Whether this is the session carrying outgoing traffic.
    pub fn is_active(&self) -> bool {
        self.other.is_none()
    }
}

impl Peer {
    /// The active session (derefs to its `Tunn`), if the peer is not idle. Held only for one
    /// `Tunn` call: never across an await.
    pub fn active(&self) -> Option<SessionGuard<'_>> {
        let guard = self.sessions();
        guard.active.as_ref()?;
        Some(SessionGuard { guard, other: None })
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
        (SessionGuard { guard, other: None }, made)
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
            return Some(SessionGuard { guard, other: None });
        }
        let i = guard.others.iter().position(want)?;
        Some(SessionGuard {
            guard,
            other: Some(i),
        })
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
