//! Control messages exchanged inside the tunnel (their format is `control_message.rs`), and
//! the path-MTU discovery they carry: hellos to find peers that
//! speak wiremesh control, probes sized to test the underlay path, and their answers.

use super::control_message::{self, Message};
use super::counters::DropReason;
use super::device::Device;
use super::path_mtu::PathEvent;
use super::peer::Peer;
use super::scratch::Scratch;
use super::sink::Sink;
use crate::constants::{MIN_TUNNEL_MTU, OVERHEAD_V4, OVERHEAD_V6, SESSION_FRESH};
use boringtun::noise::TunnResult;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

impl Device {
    /// Encrypts a control message for `peer`, padded to an inner size of `pad_to`.
    pub(super) fn send_control(
        &self,
        peer: &Peer,
        msg: &Message,
        pad_to: usize,
        out: &mut [u8],
        sink: &mut impl Sink,
    ) {
        self.send_control_to(peer, None, msg, pad_to, out, sink);
    }

    /// As [`Self::send_control`], to `to` rather than the peer's endpoint in use (a probe of
    /// a better candidate: see `candidates.rs`).
    pub(super) fn send_control_to(
        &self,
        peer: &Peer,
        to: Option<std::net::SocketAddr>,
        msg: &Message,
        pad_to: usize,
        out: &mut [u8],
        sink: &mut impl Sink,
    ) {
        let dsts = peer.config().overlay_addrs.clone();
        let node = self.node.load();
        let own = &node.own_addrs;
        // prefer IPv4 inner packets: they are the ones every peer carries
        let Some((src, dst)) = dsts.iter().find_map(|d| {
            own.iter()
                .find(|o| o.is_ipv4() == d.is_ipv4())
                .map(|o| (*o, *d))
        }) else {
            return;
        };
        let pkt = control_message::build(src, dst, msg, pad_to);
        let Some(to) = to.or_else(|| peer.endpoint()) else {
            return;
        };
        // only inside a session that exists: control never wakes an idle peer
        let Some(mut session) = peer.active() else {
            return;
        };
        if let TunnResult::WriteToNetwork(d) = session.encapsulate(&pkt, out) {
            sink.send(to, d);
        }
    }

    /// Hellos, probes and MTU changes for every awake peer with a live session.
    pub(super) fn tick_paths(
        &self,
        awake: &[Arc<Peer>],
        now: Instant,
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        let settings = self.node.load().discovery;
        if !settings.enabled {
            return;
        }
        for peer in awake {
            let live = peer.handshake_age().is_some_and(|a| a < SESSION_FRESH);
            if !live {
                continue;
            }
            if peer.path.hello_due(now) {
                let pad = if peer.path.hellos_sent() == 1 {
                    usize::from(settings.ceiling.saturating_sub(overhead_to(peer)))
                } else {
                    0
                };
                self.send_control(peer, &Message::Hello, pad, scratch.packet_mut(), sink);
            }
            self.probe(peer, now, scratch.packet_mut(), sink);
            if peer.path.view().speaks_control
                && peer.candidates.on_public()
                && self.reflexive.ask_due(peer.slot, now)
            {
                self.send_control(peer, &Message::Observe, 0, scratch.packet_mut(), sink);
            }
        }
    }

    fn probe(&self, peer: &Peer, now: Instant, out: &mut [u8], sink: &mut impl Sink) {
        let tx = peer.tx_packets.load(std::sync::atomic::Ordering::Relaxed);
        if let Some((id, inner)) = peer.path.poll_probe(now, tx) {
            self.send_control(peer, &Message::Probe { id }, inner, out, sink);
        }
        if let Some((mtu, was, cause)) = peer.path.poll_change() {
            self.path_events.push(PathEvent {
                peer: peer.name(),
                public_key: peer.public_key(),
                mtu,
                was,
                cause,
            });
        }
    }

    /// A control message that arrived inside `peer`'s session, as an inner packet of `len`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_control(
        &self,
        peer: &std::sync::Arc<Peer>,
        src: IpAddr,
        msg: Message,
        len: usize,
        now: Instant,
        out: &mut [u8],
        sink: &mut impl Sink,
    ) {
        if !peer.config().overlay_addrs.contains(&src) {
            // relayed (a hub), or sent by a process rather than the peer's engine: neither
            // speaks for the peer (the sender drops the latter too, see `outbound.rs`)
            if let Message::KeyAnnounce { .. } = msg {
                self.drop_packet(DropReason::ForgedAnnouncement);
                tracing::warn!(via = %peer.name(), %src, "key announcement from another address than the peer's own ignored");
            } else {
                self.drop_packet(DropReason::ForgedControl);
            }
            return;
        }
        let settings = self.node.load().discovery;
        let start = |peer: &Peer| {
            if settings.enabled {
                peer.path
                    .start(MIN_TUNNEL_MTU, settings.ceiling, overhead_to(peer));
            }
        };
        match msg {
            Message::Hello => {
                self.send_control(peer, &Message::HelloAck, 0, out, sink);
                start(peer);
            }
            Message::HelloAck => {
                start(peer);
                if settings.enabled {
                    if peer.path.hellos_sent() == 1 {
                        // the padded first hello got through
                        peer.path.delivered(settings.ceiling, now);
                    } else {
                        // it did not, but a later one did: the ceiling is likely too big
                        peer.path.unanswered(settings.ceiling);
                    }
                }
            }
            Message::Probe { id } => {
                let size = u16::try_from(len).unwrap_or(u16::MAX);
                self.send_control(peer, &Message::ProbeAck { id, size }, 0, out, sink);
            }
            Message::ProbeAck { id, .. } if super::liveness::is_liveness_id(id) => {
                // counted as heard on arrival; nothing else to do
            }
            Message::ProbeAck { id, .. } => {
                peer.path.on_ack(id, now);
                // the next step of a search goes out at once, not on the next tick
                self.probe(peer, now, out, sink);
            }
            Message::KeyAnnounce {
                new_public,
                effective_ms,
            } => {
                let effective = std::time::Duration::from_millis(u64::from(effective_ms));
                self.handle_key_announce(peer, new_public, effective, now, out, sink);
            }
            Message::KeyAnnounceAck { new_public } => self.handle_key_ack(peer, new_public),
            Message::Observe => {
                // where we send to is where its datagrams came from: the endpoint follows
                // the peer's source unless a private one is pinned, and an asker reaches
                // us at our public address, never a pinned private one of its
                if let Some(addr) = peer.endpoint() {
                    self.send_control(peer, &Message::Observed { addr }, 0, out, sink);
                }
            }
            Message::Observed { addr } => self.reflexive.answered(&peer.name(), addr, now),
            Message::Introduce { peer: target } => self.handle_introduce(peer, target, out, sink),
            Message::Punch { peer: target, addr } => {
                self.handle_punch(peer, target, addr, now, out, sink)
            }
        }
    }
}

/// Outer bytes WireGuard adds to an inner packet sent to `peer`, by its endpoint's family.
fn overhead_to(peer: &Peer) -> u16 {
    match peer.endpoint().map(|e| e.ip()) {
        Some(IpAddr::V6(_)) => OVERHEAD_V6,
        _ => OVERHEAD_V4,
    }
}
