//! Outbound: a packet from the tun device is encrypted for the peer that carries its
//! destination, straight into the send batch.

use super::confirm::DATA;
use super::control_message;
use super::counters::DropReason;
use super::device::Device;
use super::firewall::{Direction, Filtered, PolicyView};
use super::peer::Peer;
use super::scratch::Scratch;
use super::session::Session;
use super::sink::Sink;
use crate::core::{mss, packet, too_big};
use boringtun::noise::TunnResult;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Room beyond the packet's length for the data header, the tag and padding; also fits a
/// handshake initiation (148 bytes), which `encapsulate` writes instead while no session exists.
const DATAGRAM_SPACE_EXTRA: usize = 160;

impl Device {
    /// Sends a handshake initiation to `peer` now (instead of waiting for traffic), waking it.
    /// Sends a handshake initiation to `to` now, even while one is in flight elsewhere: the
    /// peer is being tried at another of its endpoints.
    pub(super) fn initiate_at(
        &self,
        peer: &Peer,
        to: std::net::SocketAddr,
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        if let TunnResult::WriteToNetwork(d) = self
            .wake(peer)
            .format_handshake_initiation(&mut scratch.packet, true)
        {
            sink.send(to, d);
        }
    }

    pub fn initiate(&self, peer: &Peer, scratch: &mut Scratch, sink: &mut impl Sink) {
        let Some(to) = peer.endpoint() else { return };
        if let TunnResult::WriteToNetwork(d) = self
            .wake(peer)
            .format_handshake_initiation(&mut scratch.packet, false)
        {
            sink.send(to, d);
        }
    }

    /// Counts a packet too big for `mtu` and builds the ICMP error for its sender. The error
    /// comes from the packet's destination: one from our own address would be dropped by the
    /// kernel as a martian.
    pub(super) fn refuse_too_big(&self, pkt: &[u8], mtu: u16, dst: IpAddr) -> Option<Vec<u8>> {
        self.drop_packet(DropReason::TooBig);
        too_big::error(pkt, mtu, dst)
    }

    /// The network policy's verdict on `pkt`: `Err` when it is refused (and counted), with
    /// the ICMP answer for its sender when the rule rejects.
    pub(super) fn judge(
        &self,
        view: &mut PolicyView,
        pkt: &[u8],
        now: Instant,
        dir: Direction,
    ) -> Result<(), Option<Vec<u8>>> {
        let refused = match self.firewall.filter(view, pkt, now, dir) {
            Filtered::Pass => return Ok(()),
            Filtered::Drop => None,
            Filtered::Reject(answer) => Some(answer),
        };
        self.drop_packet(DropReason::Policy);
        Err(refused)
    }

    /// A packet read from the tun device at `now`: encrypt it for the peer that carries its
    /// destination.
    pub fn handle_tun_packet(
        &self,
        now: Instant,
        pkt: &[u8],
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        let Some(dst) = packet::destination(pkt) else {
            self.drop_packet(DropReason::NoRoute);
            return;
        };
        let table = self.peers.load();
        let Some(peer) = table.route(dst) else {
            self.drop_packet(DropReason::NoRoute);
            return;
        };
        if self.is_forged_control(pkt) {
            self.drop_packet(DropReason::ForgedControl);
            return;
        }
        if let Err(answer) = self.judge(&mut scratch.policy, pkt, now, Direction::Out) {
            if let Some(answer) = answer {
                sink.write_tun(&answer);
            }
            return;
        }
        let mtu = peer.path.mtu();
        if too_big::needed(pkt, mtu) {
            if let Some(err) = self.refuse_too_big(pkt, mtu, dst) {
                sink.write_tun(&err);
            }
            return;
        }
        if is_tcp_syn(pkt) {
            // SYNs are rare: copy, so the common path keeps borrowing the caller's buffer
            let n = pkt.len();
            scratch.spare[..n].copy_from_slice(pkt);
            mss::clamp(&mut scratch.spare[..n], mtu);
            self.encapsulate_to(peer, &scratch.spare[..n], now, sink);
            return;
        }
        self.encapsulate_to(peer, pkt, now, sink);
    }

    /// A control message some process on this node wrote with one of the node's own addresses
    /// as its source: the peer would take it for this engine's (a key announcement among
    /// them), so only the engine may send those, never through the tun device. Control
    /// messages are not subject to policy; this is what keeps them the engine's.
    fn is_forged_control(&self, pkt: &[u8]) -> bool {
        control_message::payload(pkt).is_some()
            && packet::addresses(pkt)
                .is_some_and(|(src, _)| self.node.load().own_addrs.contains(&src))
    }

    /// Encrypts straight into the sink's memory: the datagram is written once. A session
    /// waiting for its initiator's confirmation at `now` holds the packet instead.
    pub(super) fn encapsulate_to(
        &self,
        peer: &Peer,
        pkt: &[u8],
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let mut session = self.wake(peer);
        if session.hold(pkt, now) {
            return;
        }
        let space = sink.datagram_space(pkt.len() + DATAGRAM_SPACE_EXTRA);
        let start = space.as_ptr();
        let len = match session.encapsulate(pkt, space) {
            // boringtun writes from the start of the buffer it is given
            TunnResult::WriteToNetwork(d) if d.as_ptr() == start => {
                if d.first() != Some(&DATA) {
                    // an initiation went out instead; the packet waits in the Tunn
                    session.confirm.note_queued();
                }
                Some(d.len())
            }
            TunnResult::WriteToNetwork(_) => unreachable!("Tunn wrote elsewhere"),
            TunnResult::Err(e) => {
                tracing::debug!(peer = %peer.name(), error = ?e, "encapsulate failed");
                None
            }
            // Queued inside the Tunn until a handshake completes.
            _ => {
                session.confirm.note_queued();
                None
            }
        };
        drop(session);
        if let Some(len) = len {
            match peer.endpoint() {
                Some(to) => {
                    peer.tx_packets.fetch_add(1, Ordering::Relaxed);
                    sink.commit_datagram(to, len);
                }
                None => self.drop_packet(DropReason::NoEndpoint),
            }
        }
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
        let held = session.confirm.release();
        while let TunnResult::WriteToNetwork(d) = session.decapsulate(None, &[], out) {
            sink.send(to, d);
        }
        for pkt in held {
            match session.encapsulate(&pkt, out) {
                TunnResult::WriteToNetwork(d) => {
                    if d.first() == Some(&DATA) {
                        peer.tx_packets.fetch_add(1, Ordering::Relaxed);
                    } else {
                        session.confirm.note_queued();
                    }
                    sink.send(to, d);
                }
                _ => session.confirm.note_queued(),
            }
        }
    }
}

/// A TCP segment with SYN set (IPv4 first fragment or IPv6 without extension headers).
fn is_tcp_syn(pkt: &[u8]) -> bool {
    match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= 40 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            pkt[9] == 6 && pkt.get(ihl + 13).is_some_and(|f| f & 0x02 != 0)
        }
        Some(6) if pkt.len() >= 60 => pkt[6] == 6 && pkt[53] & 0x02 != 0,
        _ => false,
    }
}
