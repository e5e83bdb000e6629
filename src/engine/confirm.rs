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

use super::device::Device;
use super::peer::Peer;
use super::session::Session;
use super::sink::Sink;
use boringtun::noise::TunnResult;
use std::sync::atomic::Ordering;
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

impl Session {
    /// This session answered an initiation now.
    pub(super) fn responded(&mut self, now: Instant) {
        self.confirm.responded = Some(now);
    }

    /// Holds `pkt` if the session is waiting for the initiator's confirmation and has no
    /// confirmed keys to send it under; returns whether it did.
    pub(super) fn hold(&mut self, pkt: &[u8]) -> bool {
        let Some(at) = self.confirm.responded else {
            return false;
        };
        if at.elapsed() >= CONFIRM_WAIT || self.time_since_last_handshake().is_some() {
            return false;
        }
        if self.confirm.held.len() == HELD_MAX {
            self.confirm.held.remove(0);
        }
        self.confirm.held.push(pkt.to_vec());
        true
    }

    /// `encapsulate` queued the packet inside the `Tunn` (and maybe wrote an initiation).
    pub(super) fn note_queued(&mut self) {
        self.confirm.queued = true;
    }

    /// Whether packets wait (held here, or queued in the `Tunn`).
    pub(super) fn has_waiting(&self) -> bool {
        self.confirm.queued || !self.confirm.held.is_empty()
    }

    /// Whether the wait for confirmation ran out with packets still held.
    pub(super) fn wait_expired(&self, now: Instant) -> bool {
        !self.confirm.held.is_empty()
            && self
                .confirm
                .responded
                .is_none_or(|at| now.saturating_duration_since(at) >= CONFIRM_WAIT)
    }
}

impl Device {
    /// Sends what waited for `session` (the `Tunn`'s queue first, then the held packets, in
    /// the order they came) once it can carry data; held packets whose wait ran out go too,
    /// starting a handshake as any packet without keys does.
    pub(super) fn send_waiting(
        &self,
        peer: &Peer,
        session: &mut Session,
        out: &mut [u8],
        sink: &mut impl Sink,
    ) {
        let Some(to) = peer.endpoint() else { return };
        session.confirm.queued = false;
        session.confirm.responded = None;
        while let TunnResult::WriteToNetwork(d) = session.decapsulate(None, &[], out) {
            sink.send(to, d);
        }
        for pkt in std::mem::take(&mut session.confirm.held) {
            match session.encapsulate(&pkt, out) {
                TunnResult::WriteToNetwork(d) => {
                    if d.first() == Some(&DATA) {
                        peer.tx_packets.fetch_add(1, Ordering::Relaxed);
                    } else {
                        session.confirm.queued = true;
                    }
                    sink.send(to, d);
                }
                _ => session.confirm.queued = true,
            }
        }
    }
}

/// The message type of a transport data packet.
pub const DATA: u8 = 4;
