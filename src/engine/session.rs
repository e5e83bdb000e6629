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
//! `idle.rs`); the first packet or handshake either way makes one.
//!
//! The one clock the engine does not get from its caller is boringtun's: a `Tunn` reads
//! `Instant::now()` itself for its handshake and session timers (`update_timers`,
//! `time_since_last_handshake`, `is_expired`), and has no entry point that takes the time.
//! Everything of the engine's own (confirmation waits, idle release, liveness, path probes,
//! rotation, PSK epochs, admission buckets) runs on the time it is given, so simulated-time
//! tests drive all of it; the `Tunn`'s timers run on real time even there.

use super::confirm::Confirm;
use crate::core::key::PublicKey;
use boringtun::noise::Tunn;
use std::ops::{Deref, DerefMut};
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

    /// Holds `pkt` while the session waits for its initiator's confirmation (see
    /// `confirm.rs`); whether it did.
    pub(super) fn hold(&mut self, pkt: &[u8], now: Instant) -> bool {
        let Session { confirm, tunn, .. } = self;
        confirm.hold(pkt, now, || tunn.time_since_last_handshake().is_some())
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

impl<'a> SessionGuard<'a> {
    /// The active session under `guard` (checked present by the caller), or `others[i]`.
    pub(super) fn new(guard: MutexGuard<'a, Sessions>, other: Option<usize>) -> Self {
        debug_assert!(other.is_some() || guard.active.is_some());
        Self { guard, other }
    }

    /// Whether this is the session carrying outgoing traffic.
    pub fn is_active(&self) -> bool {
        self.other.is_none()
    }
}
