//! Idle peers. A configured peer is a compact record (keys, AllowedIPs, endpoint, path);
//! its `Tunn` (11 KiB, with buffers and timers) exists only while the peer is *awake*:
//! made by the first packet for it, or the first handshake from it, and given back when the
//! peer has been quiet and its keys can no longer carry data. A hub with 10,000 configured
//! spokes, most of them idle, so holds 10,000 small records and a few sessions.
//!
//! Timers run only for awake peers: the device keeps their slots in one set, and a tick walks
//! that set, never the whole peer table. An idle peer costs no task, no timer and no tick.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Which peers are awake, and when idle ones are given back.
#[derive(Default)]
pub(super) struct Idle {
    /// Slots of the peers that hold session state.
    awake: Mutex<HashSet<u32>>,
    /// Sessions released since start.
    releases: AtomicU64,
    /// Quiet time after which idle peers are released even with usable keys (0: never).
    release_after_ms: AtomicU64,
}

impl Idle {
    /// The awake set. Changed under the peer's session lock by whoever makes or releases its
    /// last session, so a wake after a release always re-inserts the slot.
    pub fn awake(&self) -> MutexGuard<'_, HashSet<u32>> {
        self.awake.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn woke(&self, slot: u32) {
        self.awake().insert(slot);
    }

    pub fn awake_count(&self) -> usize {
        self.awake().len()
    }

    /// `slot` gave its sessions back.
    pub fn released(&self, slot: u32) {
        self.awake().remove(&slot);
        self.releases.fetch_add(1, Ordering::Relaxed);
    }

    pub fn releases(&self) -> u64 {
        self.releases.load(Ordering::Relaxed)
    }

    /// Quiet time after which a peer is released even while its keys are still usable
    /// (`None`: only once they are not). Set by the daemon's `release_idle_after`.
    pub fn release_after(&self) -> Option<Duration> {
        match self.release_after_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub fn set_release_after(&self, after: Option<Duration>) {
        let ms = after.map_or(0, |d| d.as_millis().clamp(1, u128::from(u64::MAX)) as u64);
        self.release_after_ms.store(ms, Ordering::Relaxed);
    }
}

/// What decides whether an awake peer goes idle now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Quiet {
    /// How long no data packet went either way.
    pub quiet: Duration,
    /// Every session expired (boringtun gave up on it).
    pub expired: bool,
    /// No session has keys fresh enough to carry data.
    pub keys_dead: bool,
    /// Keepalives are configured: the peer must stay reachable.
    pub keepalive: bool,
    /// The peer is rotating its static key: its sessions must outlive the switch.
    pub rotating: bool,
}

impl Quiet {
    /// Released when expired; else, without keepalives or a rotation, once the keys are dead
    /// and the peer was quiet for `RELEASE_QUIET`, or quiet for `release_after` when set.
    pub fn release(self, release_after: Option<Duration>) -> bool {
        self.expired
            || (!self.keepalive
                && !self.rotating
                && ((self.keys_dead && self.quiet >= crate::constants::RELEASE_QUIET)
                    || release_after.is_some_and(|after| self.quiet >= after)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::RELEASE_QUIET;

    #[test]
    fn a_peer_is_released_only_when_nothing_still_needs_its_sessions() {
        let q = |quiet: Duration, expired, keys_dead, keepalive, rotating| Quiet {
            quiet,
            expired,
            keys_dead,
            keepalive,
            rotating,
        };
        let long = RELEASE_QUIET;
        let short = RELEASE_QUIET / 4;
        let early = Some(short);
        // (state, release_after, released)
        let table = [
            (q(Duration::ZERO, true, false, true, true), None, true),
            (q(long, false, true, false, false), None, true),
            (q(short, false, true, false, false), None, false),
            (q(long, false, false, false, false), None, false),
            (q(short, false, false, false, false), early, true),
            (q(long, false, true, true, false), None, false),
            (q(long, false, true, false, true), early, false),
        ];
        for (i, (state, after, want)) in table.into_iter().enumerate() {
            assert_eq!(
                state.release(after),
                want,
                "row {i}: {state:?} after {after:?}"
            );
        }
    }
}
