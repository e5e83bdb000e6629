//! Outbound: a packet from the tun device is encrypted for the peer that carries its
//! destination, straight into the send batch.

use super::confirm::DATA;
use super::device::Device;
use super::drops::DropReason;
use super::peer::Peer;
use super::scratch::Scratch;
use super::sink::Sink;
use crate::core::{mss, packet, too_big as icmp};
use boringtun::noise::TunnResult;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

/// Room beyond the packet's length for the data header, the tag and padding; also fits a
/// handshake initiation (148 bytes), which `encapsulate` writes instead while no session exists.
const DATAGRAM_SPACE_EXTRA: usize = 160;

impl Device {
    /// Sends a handshake initiation to `peer` now (instead of waiting for traffic), waking it.
    pub fn initiate(&self, peer: &Peer, scratch: &mut Scratch, sink: &mut impl Sink) {
        let Some(to) = peer.endpoint() else { return };
        if let TunnResult::WriteToNetwork(d) = self
            .wake(peer)
            .format_handshake_initiation(&mut scratch.a, false)
        {
            sink.send(to, d);
        }
    }

    /// Counts a packet too big for `mtu` and builds the ICMP error for its sender. The error
    /// comes from the packet's destination: one from our own address would be dropped by the
    /// kernel as a martian.
    pub(super) fn refuse_too_big(&self, pkt: &[u8], mtu: u16, dst: IpAddr) -> Option<Vec<u8>> {
        self.drop_packet(DropReason::TooBig);
        icmp::too_big(pkt, mtu, dst)
    }

    /// A packet read from the tun device: encrypt it for the peer that carries its destination.
    pub fn handle_tun_packet(&self, pkt: &[u8], scratch: &mut Scratch, sink: &mut impl Sink) {
        let Some(dst) = packet::destination(pkt) else {
            self.drop_packet(DropReason::NoRoute);
            return;
        };
        let table = self.table.load();
        let Some(peer) = table.route(dst) else {
            self.drop_packet(DropReason::NoRoute);
            return;
        };
        let mtu = peer.path.mtu();
        if icmp::needs_too_big(pkt, mtu) {
            if let Some(err) = self.refuse_too_big(pkt, mtu, dst) {
                sink.write_tun(&err);
            }
            return;
        }
        if is_tcp_syn(pkt) {
            // SYNs are rare: copy, so the common path keeps borrowing the caller's buffer
            let n = pkt.len();
            scratch.b[..n].copy_from_slice(pkt);
            mss::clamp(&mut scratch.b[..n], mtu);
            self.encapsulate_to(peer, &scratch.b[..n], sink);
            return;
        }
        self.encapsulate_to(peer, pkt, sink);
    }

    /// Encrypts straight into the sink's memory: the datagram is written once.
    pub(super) fn encapsulate_to(&self, peer: &Peer, pkt: &[u8], sink: &mut impl Sink) {
        let mut session = self.wake(peer);
        if session.hold(pkt) {
            return;
        }
        let space = sink.datagram_space(pkt.len() + DATAGRAM_SPACE_EXTRA);
        let start = space.as_ptr();
        let len = match session.encapsulate(pkt, space) {
            // boringtun writes from the start of the buffer it is given
            TunnResult::WriteToNetwork(d) if d.as_ptr() == start => {
                if d.first() != Some(&DATA) {
                    // an initiation went out instead; the packet waits in the Tunn
                    session.note_queued();
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
                session.note_queued();
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
