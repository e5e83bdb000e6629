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

use super::peer::Peer;
use crate::core::key::PublicKey;
use boringtun::noise::Tunn;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

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
        }
    }

    fn keys(&self) -> SessionKeys {
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

/// A locked session: the active one, or one of the others.
pub enum SessionGuard<'a> {
    Active(MutexGuard<'a, Session>),
    Other(MutexGuard<'a, Vec<Session>>, usize),
}

impl Deref for SessionGuard<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        match self {
            SessionGuard::Active(g) => g,
            SessionGuard::Other(g, i) => &g[*i],
        }
    }
}

impl DerefMut for SessionGuard<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        match self {
            SessionGuard::Active(g) => &mut *g,
            SessionGuard::Other(g, i) => &mut g[*i],
        }
    }
}

impl Peer {
    /// The session whose slot is `slot`. Lock order everywhere: active, then others.
    pub fn session_by_slot(&self, slot: u32) -> Option<SessionGuard<'_>> {
        self.find_session(|s| s.slot == slot)
    }

    /// The session made for `keys`.
    pub fn session_by_keys(&self, keys: SessionKeys) -> Option<SessionGuard<'_>> {
        self.find_session(|s| s.keys() == keys)
    }

    fn find_session(&self, want: impl Fn(&Session) -> bool) -> Option<SessionGuard<'_>> {
        let active = self.tunn();
        if want(&active) {
            return Some(SessionGuard::Active(active));
        }
        // taken before the active lock goes, so a promotion cannot move the session between
        // the two looks
        let others = self.others();
        drop(active);
        let i = others.iter().position(want)?;
        Some(SessionGuard::Other(others, i))
    }

    pub(super) fn others(&self) -> MutexGuard<'_, Vec<Session>> {
        self.others.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a session for `keys` unless one exists; `make` builds its `Tunn` from the slot.
    /// Returns whether it was created.
    pub fn ensure_session(&self, keys: SessionKeys, make: impl FnOnce(u32) -> Tunn) -> bool {
        if self.session_by_keys(keys).is_some() {
            return false;
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let slot = slot_of(self.slot, generation, keys.epoch);
        let session = Session::new(make(slot), self.slot, generation, keys);
        self.others().push(session);
        true
    }

    /// The session `slot` completed a handshake: if it is newer than the active one, outgoing
    /// traffic moves to it now.
    pub fn on_established(&self, slot: u32) {
        let mut active = self.tunn();
        if active.slot == slot {
            return;
        }
        let mut others = self.others();
        let Some(i) = others.iter().position(|s| s.slot == slot) else {
            return;
        };
        if others[i].generation > active.generation {
            std::mem::swap(&mut *active, &mut others[i]);
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
        let mut active = self.tunn();
        let mut others = self.others();
        if uses(&active) {
            let newest = others
                .iter()
                .enumerate()
                .filter(|(_, s)| !uses(s))
                .max_by_key(|(_, s)| s.generation)
                .map(|(i, _)| i);
            let Some(i) = newest else { return };
            std::mem::swap(&mut *active, &mut others[i]);
        }
        others.retain(|s| {
            if uses(s) {
                let (_, tx, rx, _, _) = s.stats();
                self.retired_tx.fetch_add(tx as u64, Ordering::Relaxed);
                self.retired_rx.fetch_add(rx as u64, Ordering::Relaxed);
            }
            !uses(s)
        });
    }

    /// Every session's slot and keys, active first.
    pub fn session_keys(&self) -> Vec<(u32, PublicKey, PublicKey)> {
        let active = self.tunn();
        let mut out = vec![(active.slot, active.ours, active.theirs)];
        drop(active);
        out.extend(self.others().iter().map(|s| (s.slot, s.ours, s.theirs)));
        out
    }

    /// Sum of a `Tunn` counter over live and retired sessions: (tx, rx) bytes.
    pub(super) fn transfer(&self) -> (u64, u64) {
        let mut tx = self.retired_tx.load(Ordering::Relaxed);
        let mut rx = self.retired_rx.load(Ordering::Relaxed);
        let (_, t, r, _, _) = self.tunn().stats();
        tx += t as u64;
        rx += r as u64;
        for s in self.others().iter() {
            let (_, t, r, _, _) = s.stats();
            tx += t as u64;
            rx += r as u64;
        }
        (tx, rx)
    }
}
