//! The device's clock-driven work, called every [`TIMER_TICK`](crate::constants::TIMER_TICK):
//! path probes, liveness, rotations, PSK epochs, and the timers of awake peers' sessions.

use super::counters::DropReason;
use super::device::Device;
use super::peer::Peer;
use super::scratch::Scratch;
use super::sink::Sink;
use crate::core::liveness::{Answers, Health};
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::TunnResult;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

impl Device {
    /// Drives every awake peer's timers at `now`: handshake retries, keepalives, rekeying,
    /// session expiry, path-MTU and liveness probes, rotations. `wall` is the same moment on
    /// the wall clock, which PSK epochs follow. (boringtun's own timers read the clock
    /// themselves: see `session.rs`.)
    pub fn tick(
        &self,
        now: Instant,
        wall: SystemTime,
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        // one look at the awake set per tick: idle peers hold no session to probe, announce
        // in or time out
        let awake = self.awake_peers();
        self.tick_paths(&awake, now, scratch, sink);
        tick_liveness(&awake, now, |peer, id| {
            let probe = super::control_message::Message::Probe { id };
            self.send_control(peer, &probe, 0, scratch.packet_mut(), sink);
        });
        self.tick_candidates(&awake, now, scratch, sink);
        self.tick_punch(now, scratch, sink);
        self.tick_rotation(&awake, now, scratch, sink);
        self.tick_psk(&awake, wall, scratch, sink);
        self.tick_sessions(&awake, now, scratch, sink);
    }

    /// Moves a `Down` peer to its next endpoint, and probes the better endpoints of a peer
    /// reached over a worse one (see `candidates.rs`).
    fn tick_candidates(
        &self,
        awake: &[std::sync::Arc<Peer>],
        now: Instant,
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        for peer in awake {
            let health = peer.liveness.health();
            peer.candidates.heard(peer.liveness.heard_count(), now);
            if let Some(next) = peer.candidates.failover(now, health) {
                tracing::warn!(peer = %peer.name(), was = ?peer.endpoint(), %next, "peer does not answer at its endpoint; trying the next one");
                peer.set_endpoint(next);
                let established = peer
                    .handshake_age()
                    .is_some_and(|a| a < crate::constants::SESSION_FRESH);
                if !established {
                    // no session to carry data there: the handshake is the question, asked
                    // there now rather than at boringtun's next retry
                    self.initiate_at(peer, next, scratch, sink);
                }
            }
            for to in peer.candidates.upgrade_due(now, health) {
                let probe = super::control_message::Message::Probe {
                    id: super::liveness::LIVENESS_ID,
                };
                self.send_control_to(peer, Some(to), &probe, 0, scratch.packet_mut(), sink);
            }
        }
    }

    pub(super) fn timer_result(&self, peer: &Peer, result: TunnResult<'_>, sink: &mut impl Sink) {
        match result {
            TunnResult::WriteToNetwork(d) => match peer.endpoint() {
                Some(to) => sink.send(to, d),
                None => self.drop_packet(DropReason::NoEndpoint),
            },
            TunnResult::Err(WireGuardError::ConnectionExpired) => {}
            TunnResult::Err(e) => {
                tracing::debug!(peer = %peer.name(), error = ?e, "timer error")
            }
            _ => {}
        }
    }
}

/// Judges every awake peer once, calling `probe` for each probe to send.
fn tick_liveness(awake: &[std::sync::Arc<Peer>], now: Instant, mut probe: impl FnMut(&Peer, u32)) {
    for peer in awake {
        let established = peer
            .handshake_age()
            .is_some_and(|a| a < crate::constants::SESSION_FRESH);
        let answers = match (established, peer.path.view().speaks_control) {
            (false, _) => Answers::Handshake,
            (true, true) => Answers::Probes,
            (true, false) => Answers::Unknown,
        };
        let sent = peer.tx_packets.load(Ordering::Relaxed);
        let (verdict, id) = peer.liveness.tick(now, sent, answers);
        match verdict.changed {
            Some((_, Health::Down)) => tracing::warn!(
                peer = %peer.name(),
                "peer stopped answering; traffic it shares with other carriers moves to them"
            ),
            Some((_, Health::Returning)) => {
                tracing::info!(peer = %peer.name(), "peer answers again; watching it before use")
            }
            Some((_, Health::Up)) => {
                tracing::info!(peer = %peer.name(), "peer is back in use")
            }
            None => {}
        }
        if let Some(id) = id {
            probe(peer, id);
        }
    }
}
