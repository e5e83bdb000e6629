//! The responder's wait for confirmation. After answering a handshake initiation, the
//! responder may not send on the new session until the initiator's first packet arrives on it
//! (WireGuard's key confirmation). boringtun's `Tunn` forgets the handshake once it has answered,
//! so a packet sent in that window finds no session and no handshake in progress, and starts a
//! handshake of its own; when both sides started one (a mesh coming up), that second
//! initiation also discards the first one's state, and a third follows. WireGuard sends no
//! initiation within `REKEY_TIMEOUT` of a response for this reason (`lastSentHandshake` in
//! wireguard-go); here the session holds such packets, and sends them once confirmed.
//!
//! On a 64-node mesh starting at once, answered handshakes per pair went from 3.5 to 1.5 with
//! this alone (1.04 with the start-up order and the endpoint hint of `inbound.rs`).

use std::time::{Duration, Instant};

/// How long a responder waits for confirmation before it starts a handshake itself (the
/// protocol's `REKEY_TIMEOUT`).
pub const CONFIRM_WAIT: Duration = Duration::from_secs(5);

/// Packets held per session while unconfirmed; older ones are dropped first, as boringtun's own
/// queue does with its 256.
const HELD_MAX: usize = 64;

/// Per session: whether it answered an initiation that is not confirmed yet, what waits for
/// that, and whether the `Tunn` queued packets of its own (it does while its own initiation is
/// out, and sends them only when asked again).
#[derive(Default)]
pub struct Confirm {
    responded: Option<Instant>,
    held: Vec<Vec<u8>>,
    queued: bool,
}

impl Confirm {
    /// The session answered an initiation at `now`.
    pub(super) fn responded(&mut self, now: Instant) {
        self.responded = Some(now);
    }

    /// Holds `pkt` if the session is waiting for the initiator's confirmation at `now` and has
    /// no confirmed keys to send it under (`confirmed` asks the `Tunn`, only while waiting: it
    /// reads a clock); returns whether it did.
    pub(super) fn hold(
        &mut self,
        pkt: &[u8],
        now: Instant,
        confirmed: impl FnOnce() -> bool,
    ) -> bool {
        let Some(at) = self.responded else {
            return false;
        };
        if now.saturating_duration_since(at) >= CONFIRM_WAIT || confirmed() {
            return false;
        }
        if self.held.len() == HELD_MAX {
            self.held.remove(0);
        }
        self.held.push(pkt.to_vec());
        true
    }

    /// `encapsulate` queued the packet inside the `Tunn` (and maybe wrote an initiation).
    pub(super) fn note_queued(&mut self) {
        self.queued = true;
    }

    /// Whether packets wait (held here, or queued in the `Tunn`).
    pub(super) fn has_waiting(&self) -> bool {
        self.queued || !self.held.is_empty()
    }

    /// Whether the wait for confirmation ran out at `now` with packets still held.
    pub(super) fn wait_expired(&self, now: Instant) -> bool {
        !self.held.is_empty()
            && self
                .responded
                .is_none_or(|at| now.saturating_duration_since(at) >= CONFIRM_WAIT)
    }

    /// Ends the wait: the held packets, oldest first, for the caller to send now (the `Tunn`'s
    /// own queue is asked first, by the caller).
    pub(super) fn release(&mut self) -> Vec<Vec<u8>> {
        self.queued = false;
        self.responded = None;
        std::mem::take(&mut self.held)
    }
}

/// The message type of a transport data packet.
pub const DATA: u8 = 4;
