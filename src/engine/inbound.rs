//! Inbound: a datagram from the underlay is matched to its peer and session, decrypted,
//! checked against the sender's AllowedIPs, then written to the tun device or, on a hub,
//! encrypted again for the next peer without a trip through the kernel.

use super::control_message;
use super::counters::DropReason;
use super::device::Device;
use super::firewall::{Direction, PolicyView};
use super::peer::Peer;
use super::scratch::Scratch;
use super::session::{epoch_bits, SessionKeys};
use super::sink::Sink;
use crate::core::key::PublicKey;
use crate::core::{mss, packet, too_big};
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl Device {
    /// A datagram from the underlay at `now`: admit it (handshakes: see `admission.rs`), find
    /// its peer, decrypt, check, deliver or forward.
    pub fn handle_datagram(
        &self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        let keys = &self.keys.load().keys;
        match self.admission.check(keys, now, from, datagram, sink) {
            Ok(()) => self.receive(now, from, datagram, true, scratch, sink),
            Err(reason) => self.drop_packet(reason),
        }
    }

    /// `hint`: an initiation may be tried first on the peer whose endpoint it came from.
    fn receive(
        &self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        hint: bool,
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        let table = self.peers.load();
        let parsed = Tunn::parse_incoming_packet(datagram);
        let handshake = matches!(
            parsed,
            Ok(Packet::HandshakeInit(_) | Packet::HandshakeResponse(_))
        );
        // Which peer, and which of its sessions: by the keys a handshake initiation reveals,
        // else by the slot in the receiver index.
        let by_slot = |idx: u32| {
            table
                .by_slot(idx >> 8)
                .map(|p| (p, Target::Slot(idx >> 8)))
                .ok_or(DropReason::Decrypt)
        };
        let data = matches!(parsed, Ok(Packet::PacketData(_)));
        let init = matches!(parsed, Ok(Packet::HandshakeInit(_)));
        // data and handshake responses complete a session, so they may move traffic to it
        let completes = matches!(
            parsed,
            Ok(Packet::PacketData(_) | Packet::HandshakeResponse(_))
        );
        // for a guessed sender (see `hinted_initiator`): its session's keys, and whether the
        // guess made that session
        let mut guessed: Option<(SessionKeys, bool)> = None;
        let peer = match parsed {
            Ok(Packet::HandshakeInit(init)) => {
                let id = self.keys.load();
                // the initiator's PSK epoch, from the slot bits of its sender index
                let sender =
                    u32::from_le_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
                let hinted = hint
                    .then(|| self.hinted_initiator(&table, &id, from, epoch_bits(sender)))
                    .flatten();
                guessed = hinted.map(|(_, keys, made)| (keys, made));
                // newest key first: during a rotation either may be addressed
                hinted
                    .map(|(p, keys, _)| Ok((p, Target::Keys(keys))))
                    .unwrap_or_else(|| {
                        id.keys
                            .iter()
                            .find_map(|own| {
                                let half = parse_handshake_anon(
                                    own.private.secret(),
                                    &own.public.to_x25519(),
                                    &init,
                                )
                                .ok()?;
                                let theirs = PublicKey::from_bytes(half.peer_static_public);
                                let peer = table.by_key(&theirs)?;
                                let keys =
                                    self.responder_keys(peer, own, theirs, epoch_bits(sender))?;
                                Some((peer, Target::Keys(keys)))
                            })
                            .ok_or(DropReason::UnknownPeer)
                    })
            }
            Ok(Packet::HandshakeResponse(p)) => by_slot(p.receiver_idx),
            Ok(Packet::PacketCookieReply(p)) => by_slot(p.receiver_idx),
            Ok(Packet::PacketData(p)) => by_slot(p.receiver_idx),
            Err(_) => Err(DropReason::Decrypt),
        };
        let (peer, target) = match peer {
            Ok((p, t)) => (p.clone(), t),
            Err(reason) => {
                self.drop_packet(reason);
                return;
            }
        };
        let mut first = true;
        loop {
            let input: &[u8] = if first { datagram } else { &[] };
            let session = match target {
                Target::Slot(slot) => peer.session_by_slot(slot),
                Target::Keys(keys) => peer.session_by_keys(keys),
            };
            let Some(mut session) = session else {
                if first && data && self.idle.release_after().is_some() && !peer.is_awake() {
                    // its session was released here early while the peer kept it: a new
                    // handshake moves the peer to a new one. (Released only when the keys
                    // were dead on both sides, no legitimate packet arrives for it: garbage
                    // then wakes nothing.)
                    self.drop_packet(DropReason::StaleSession);
                    self.initiate(&peer, scratch, sink);
                } else {
                    // a session of a retired key, or keys without a session
                    self.drop_packet(DropReason::UnknownPeer);
                }
                break;
            };
            let slot = session.slot;
            let inactive = !session.is_active();
            let result = session.decapsulate(Some(from.ip()), input, &mut scratch.packet);
            let ok = !matches!(result, TunnResult::Err(_));
            if first && ok {
                peer.heard_from(from, now);
                if init {
                    session.confirm.responded(now);
                }
            }
            if first
                && ok
                && completes
                && session.confirm.has_waiting()
                && session.time_since_last_handshake().is_some()
            {
                self.send_waiting(&peer, &mut session, &mut scratch.spare, sink);
            }
            drop(session);
            if let (true, false, Some((keys, made))) = (first, ok, guessed) {
                // the guessed session refused it and changed nothing; undo what the guess woke
                // (junk sent from a peer's address must not cost a session)
                if made {
                    self.unmake_session(&peer, keys);
                }
                if matches!(result, TunnResult::Err(WireGuardError::WrongKey)) {
                    // another peer's initiation from this address: find it by its keys
                    return self.receive(now, from, datagram, false, scratch, sink);
                }
            }
            if first && inactive && completes && ok {
                peer.on_established(slot);
            }
            let inner = match result {
                TunnResult::Done => {
                    break;
                }
                TunnResult::Err(e) => {
                    let reason = match e {
                        WireGuardError::UnderLoad => DropReason::RateLimited,
                        _ => DropReason::Decrypt,
                    };
                    tracing::trace!(peer = %peer.name(), error = ?e, "datagram refused");
                    if first && handshake && reason == DropReason::Decrypt {
                        peer.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    self.drop_packet(reason);
                    break;
                }
                TunnResult::WriteToNetwork(d) => {
                    // a handshake's answer goes where it came from, even while roaming there
                    // is refused: the peer may be trying that path after losing ours
                    let to = if first {
                        from
                    } else {
                        peer.endpoint().unwrap_or(from)
                    };
                    sink.send(to, d);
                    if init {
                        // the answer to an initiation: anything queued must wait for the
                        // initiator's confirmation (asking the `Tunn` now would start a
                        // handshake of our own; see `confirm.rs`)
                        break;
                    }
                    None
                }
                TunnResult::WriteToTunnelV4(p, src) => Some((p.len(), IpAddr::V4(src))),
                TunnResult::WriteToTunnelV6(p, src) => Some((p.len(), IpAddr::V6(src))),
            };
            if let Some((len, src)) = inner {
                let (pkt, out) = (&mut scratch.packet[..len], &mut scratch.spare);
                let view = &mut scratch.policy;
                self.deliver(now, &peer, src, pkt, (out, view), sink);
                // boringtun has nothing queued after delivering data
                break;
            }
            first = false;
        }
    }

    /// A decrypted packet: check its source, then hand it to the tun device or, on a hub,
    /// straight to the next peer without a trip through the kernel.
    fn deliver(
        &self,
        now: Instant,
        from_peer: &Arc<Peer>,
        src: IpAddr,
        pkt: &mut [u8],
        (out, view): (&mut [u8], &mut PolicyView),
        sink: &mut impl Sink,
    ) {
        let table = self.peers.load();
        if !table.allows(from_peer, src) {
            self.drop_packet(DropReason::SourceNotAllowed);
            return;
        }
        from_peer.rx_packets.fetch_add(1, Ordering::Relaxed);
        let Some(dst) = packet::destination(pkt) else {
            self.drop_packet(DropReason::Decrypt);
            return;
        };
        let node = self.node.load();
        if let Some(payload) = control_message::payload(pkt) {
            if node.own_addrs.contains(&dst) {
                if let Some(msg) = control_message::Message::parse(payload) {
                    let len = pkt.len();
                    self.handle_control(from_peer, src, msg, len, now, out, sink);
                }
                return;
            }
        }
        if node.local.lookup(dst).is_none() {
            if let Some(next) = table.route(dst) {
                if Arc::ptr_eq(next, from_peer) {
                    self.drop_packet(DropReason::Ttl);
                    return;
                }
                if !packet::decrement_ttl(pkt) {
                    self.drop_packet(DropReason::Ttl);
                    return;
                }
                let mtu = next.path.mtu();
                if too_big::needed(pkt, mtu) {
                    // tell the sender, back through the peer it came from
                    if let Some(err) = self.refuse_too_big(pkt, mtu, dst) {
                        self.encapsulate_to(from_peer, &err, now, sink);
                    }
                    return;
                }
                mss::clamp(pkt, mtu);
                self.counters.forwarded_one();
                self.encapsulate_to(next, pkt, now, sink);
                return;
            }
        }
        if let Err(answer) = self.judge(view, pkt, now, Direction::In) {
            if let Some(answer) = answer {
                // back to the sender, through the peer it came from
                self.encapsulate_to(from_peer, &answer, now, sink);
            }
            return;
        }
        mss::clamp(pkt, from_peer.path.mtu());
        sink.write_tun(pkt);
    }
}

/// Where an incoming datagram goes within its peer.
#[derive(Clone, Copy)]
enum Target {
    Slot(u32),
    Keys(SessionKeys),
}

impl Device {
    /// The peer an initiation from `from` most likely comes from, with the session keys it
    /// would use: the peer configured at that endpoint, while neither side is rotating its
    /// static key. Trying its session first spares the Diffie-Hellman that finding the sender by
    /// the initiation's keys costs (one of a responder's five); a wrong guess is refused by
    /// the session untouched, and the initiation is then matched by its keys.
    fn hinted_initiator<'t>(
        &self,
        table: &'t super::table::PeerTable,
        id: &super::own_keys::Identity,
        from: SocketAddr,
        epoch: u32,
    ) -> Option<(&'t Arc<Peer>, SessionKeys, bool)> {
        let [own] = &id.keys[..] else { return None };
        let peer = table.by_endpoint(from)?;
        let [theirs] = &peer.keys().accepted()[..] else {
            return None;
        };
        let keys = self.initiation_keys(own, *theirs, epoch)?;
        let made = self.ensure_session_for(peer, own, keys);
        Some((peer, keys, made))
    }
}
