//! The device: one node's identity, its peers, and the packet decisions.

use super::control;
use super::identity::{Identity, OwnKey};
use super::lazy::Awake;
use super::peer::{Peer, PeerConfig};
use super::psk::PskSettings;
use super::session::{epoch_bits, SessionKeys, BASE_SLOT_MASK};
use super::sink::Sink;
use super::table::PeerTable;
use crate::constants::MAX_DATAGRAM;
use crate::core::key::{PrivateKey, PublicKey};
use crate::core::plan::Plan;
use crate::core::rotation::{NodeRotation, RotationTiming};
use crate::core::routing::PrefixTable;
use crate::core::{icmp, mss, packet};
use arc_swap::ArcSwap;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Why a packet was dropped; each has a counter (for metrics and `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// From the tun device, to an address no peer carries.
    NoRoute,
    /// The peer has no known endpoint yet.
    NoEndpoint,
    /// Decrypted fine, but the inner source is outside the sending peer's AllowedIPs.
    SourceNotAllowed,
    /// Unparseable, unauthenticated, replayed or for an unknown session.
    Decrypt,
    /// A handshake from a key that is not a configured peer.
    UnknownPeer,
    /// Handshake flood: answered with a cookie instead.
    RateLimited,
    /// Forwarding would loop or the TTL ran out.
    Ttl,
    /// Larger than the path's MTU with fragmentation forbidden; a "too big" error went back.
    TooBig,
    /// A key announcement that did not come from the announcing node's own session.
    ForgedAnnouncement,
    /// Data for a session this node had released as idle (a new handshake was started).
    StaleSession,
}

impl DropReason {
    pub const ALL: [DropReason; 10] = [
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::SourceNotAllowed,
        DropReason::Decrypt,
        DropReason::UnknownPeer,
        DropReason::RateLimited,
        DropReason::Ttl,
        DropReason::TooBig,
        DropReason::ForgedAnnouncement,
        DropReason::StaleSession,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::SourceNotAllowed => "source_not_allowed",
            DropReason::Decrypt => "decrypt_failure",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::RateLimited => "rate_limited",
            DropReason::Ttl => "ttl",
            DropReason::TooBig => "too_big",
            DropReason::ForgedAnnouncement => "forged_key_announcement",
            DropReason::StaleSession => "stale_session",
        }
    }
}

/// Per-call working memory of one I/O loop: two datagram-sized buffers, so a packet can be
/// decrypted into one and a rewritten copy (MSS clamp, control reply) built in the other
/// without allocating. Data packets are encrypted straight into the sink.
pub struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
}

/// Room beyond the packet's length for the data header, the tag and padding; also fits a
/// handshake initiation (148 bytes), which `encapsulate` writes instead while no session exists.
const DATAGRAM_SPACE_EXTRA: usize = 160;

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub(super) fn a_mut(&mut self) -> &mut [u8] {
        &mut self.a
    }

    pub fn new() -> Self {
        Self {
            a: vec![0; MAX_DATAGRAM],
            b: vec![0; MAX_DATAGRAM],
        }
    }
}

pub struct Device {
    pub(super) identity: ArcSwap<Identity>,
    /// This node's own key rotation; also serialises table rebuilds.
    pub(super) rotation: std::sync::Mutex<NodeRotation>,
    /// When the newest own key came into use.
    pub(super) key_since: std::sync::Mutex<Instant>,
    /// Pair PSKs per epoch, when the mesh has a secret.
    pub(super) psk: Option<PskSettings>,
    /// The PSK epoch sessions were last started for.
    pub(super) psk_epoch: AtomicU64,
    pub(super) table: ArcSwap<PeerTable>,
    /// This node's own pod CIDRs: packets for them go to the tun device, never to a peer.
    local: ArcSwap<PrefixTable<()>>,
    next_slot: AtomicU32,
    drops: [AtomicU64; DropReason::ALL.len()],
    pub forwarded: AtomicU64,
    listen_port: AtomicU32,
    /// The plan's tunnel MTU, for metrics and status (the tun device is set to it).
    mtu: AtomicU32,
    /// This node's own overlay addresses: control messages to them are consumed here.
    pub(super) own_addrs: ArcSwap<Vec<IpAddr>>,
    /// Path-MTU discovery settings of the current plan.
    pub(super) discovery: ArcSwap<DiscoverySettings>,
    /// MTU changes waiting for the daemon (routes, logs).
    pub(super) events: std::sync::Mutex<Vec<super::PathEvent>>,
    /// Peers holding session state (their timers run).
    pub(super) awake: Awake,
    pub(super) releases: AtomicU64,
    /// Quiet time after which idle peers are released even with usable keys (0: never).
    pub(super) release_after_ms: AtomicU64,
}

/// What the plan says about probing.
#[derive(Debug, Clone, Copy)]
pub(super) struct DiscoverySettings {
    pub enabled: bool,
    /// Largest outer packet the local underlay carries.
    pub ceiling: u16,
}

impl DiscoverySettings {
    fn of(plan: &Plan) -> Self {
        Self {
            enabled: plan.discover_mtu,
            ceiling: plan.underlay_mtu,
        }
    }
}

fn local_table(cidrs: &[IpNet]) -> PrefixTable<()> {
    let mut t = PrefixTable::new();
    for c in cidrs {
        t.insert(*c, ());
    }
    t
}

impl Device {
    pub fn new(private: PrivateKey, plan: &Plan) -> Self {
        Self::with_rotation(private, plan, RotationTiming::default())
    }

    /// A device whose key rotations follow `timing`.
    pub fn with_rotation(private: PrivateKey, plan: &Plan, timing: RotationTiming) -> Self {
        Self::with_options(private, plan, timing, None)
    }

    /// A device whose key rotations follow `timing`, with pair PSKs from `psk` when given.
    pub fn with_options(
        private: PrivateKey,
        plan: &Plan,
        timing: RotationTiming,
        psk: Option<PskSettings>,
    ) -> Self {
        let own = Arc::new(OwnKey::new(private));
        let epoch = psk.as_ref().map_or(0, PskSettings::epoch);
        let dev = Device {
            psk,
            psk_epoch: AtomicU64::new(epoch),
            rotation: std::sync::Mutex::new(NodeRotation::new(own.public, timing)),
            key_since: std::sync::Mutex::new(Instant::now()),
            identity: ArcSwap::from_pointee(Identity { keys: vec![own] }),
            table: ArcSwap::from_pointee(PeerTable::default()),
            local: ArcSwap::from_pointee(local_table(&plan.pod_cidrs)),
            next_slot: AtomicU32::new(1),
            drops: Default::default(),
            forwarded: AtomicU64::new(0),
            listen_port: AtomicU32::new(u32::from(plan.listen_port)),
            mtu: AtomicU32::new(u32::from(plan.mtu)),
            own_addrs: ArcSwap::from_pointee(plan.addresses.clone()),
            discovery: ArcSwap::from_pointee(DiscoverySettings::of(plan)),
            events: std::sync::Mutex::new(Vec::new()),
            awake: Awake::default(),
            releases: AtomicU64::new(0),
            release_after_ms: AtomicU64::new(0),
        };
        dev.apply(plan);
        dev
    }

    /// The newest own public key (the one new sessions use).
    /// The pre-shared-key epoch in use, when a mesh secret is configured.
    pub fn psk_epoch(&self) -> Option<u64> {
        self.psk
            .as_ref()
            .map(|_| self.psk_epoch.load(Ordering::Relaxed))
    }

    pub fn public_key(&self) -> PublicKey {
        self.identity.load().newest().public
    }

    /// The newest own private key.
    pub fn private_key(&self) -> PrivateKey {
        self.identity.load().newest().private.clone()
    }

    pub fn listen_port(&self) -> u16 {
        self.listen_port.load(Ordering::Relaxed) as u16
    }

    /// The tunnel MTU of the current plan.
    pub fn mtu(&self) -> u16 {
        self.mtu.load(Ordering::Relaxed) as u16
    }

    pub fn peers(&self) -> Arc<PeerTable> {
        self.table.load_full()
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }

    fn drop_packet(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Makes the peer set match `plan`. Peers whose key is unchanged keep their sessions; new
    /// keys get an idle record (no session until traffic or a handshake needs one); missing
    /// keys are dropped. Returns the peers created, so the caller can start their handshakes.
    pub fn apply(&self, plan: &Plan) -> Vec<Arc<Peer>> {
        let _writer = self.rotation();
        let old = self.table.load_full();
        let mut created = Vec::new();
        let mut peers = Vec::with_capacity(plan.peers.len());
        for p in &plan.peers {
            let config = PeerConfig {
                name: p.name.clone(),
                endpoint: p.endpoint.clone(),
                allowed_ips: p.allowed_ips.clone(),
                persistent_keepalive: p.persistent_keepalive,
                overlay_addrs: p.overlay_addrs.clone(),
                mtu: p.mtu,
            };
            match old.by_key(&p.public_key) {
                Some(existing) => {
                    existing.reconfigure(config);
                    peers.push(existing.clone());
                }
                None => {
                    let slot = self.next_slot.fetch_add(1, Ordering::Relaxed) & BASE_SLOT_MASK;
                    let peer = Arc::new(Peer::new(slot, p.public_key, config));
                    created.push(peer.clone());
                    peers.push(peer);
                }
            }
        }
        self.local.store(Arc::new(local_table(&plan.pod_cidrs)));
        self.listen_port
            .store(u32::from(plan.listen_port), Ordering::Relaxed);
        self.mtu.store(u32::from(plan.mtu), Ordering::Relaxed);
        self.own_addrs.store(Arc::new(plan.addresses.clone()));
        self.discovery.store(Arc::new(DiscoverySettings::of(plan)));
        self.table.store(Arc::new(PeerTable::new(peers)));
        created
    }

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
            self.drop_packet(DropReason::TooBig);
            // From the packet's destination: an ICMP whose source is one of our own addresses
            // would be dropped by the kernel as a martian.
            if let Some(err) = icmp::too_big(pkt, mtu, dst) {
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
    fn encapsulate_to(&self, peer: &Peer, pkt: &[u8], sink: &mut impl Sink) {
        let space = sink.datagram_space(pkt.len() + DATAGRAM_SPACE_EXTRA);
        let start = space.as_ptr();
        let len = match self.wake(peer).encapsulate(pkt, space) {
            // boringtun writes from the start of the buffer it is given
            TunnResult::WriteToNetwork(d) if d.as_ptr() == start => Some(d.len()),
            TunnResult::WriteToNetwork(_) => unreachable!("Tunn wrote elsewhere"),
            TunnResult::Err(e) => {
                tracing::debug!(peer = %peer.name(), error = ?e, "encapsulate failed");
                None
            }
            // Queued inside the Tunn until a handshake completes.
            _ => None,
        };
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

    /// A datagram from the underlay: find its peer, decrypt, check, deliver or forward.
    pub fn handle_datagram(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        // the clock is read only if a control message needs it, never per data packet
        self.receive(None, from, datagram, scratch, sink)
    }

    /// [`handle_datagram`](Self::handle_datagram) at a given time (control messages are timed).
    pub fn handle_datagram_at(
        &self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        self.receive(Some(now), from, datagram, scratch, sink)
    }

    fn receive(
        &self,
        now: Option<Instant>,
        from: SocketAddr,
        datagram: &[u8],
        scratch: &mut Scratch,
        sink: &mut impl Sink,
    ) {
        let table = self.table.load();
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
        // data and handshake responses complete a session, so they may move traffic to it
        let completes = matches!(
            parsed,
            Ok(Packet::PacketData(_) | Packet::HandshakeResponse(_))
        );
        let peer = match parsed {
            Ok(Packet::HandshakeInit(init)) => {
                let id = self.identity.load();
                // the initiator's PSK epoch, from the slot bits of its sender index
                let sender =
                    u32::from_le_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
                // newest key first: during a rotation either may be addressed
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
                        let keys = self.responder_keys(peer, own, theirs, epoch_bits(sender))?;
                        Some((peer, Target::Keys(keys)))
                    })
                    .ok_or(DropReason::UnknownPeer)
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
                if first && data && self.release_after().is_some() && !peer.is_awake() {
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
            let result = session.decapsulate(Some(from.ip()), input, &mut scratch.a);
            drop(session);
            if first && inactive && completes && !matches!(result, TunnResult::Err(_)) {
                peer.on_established(slot);
            }
            match result {
                TunnResult::Done => {
                    if first {
                        // an authenticated keepalive or handshake completion
                        peer.set_endpoint(from);
                    }
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
                    if first {
                        peer.set_endpoint(from);
                    }
                    let to = peer.endpoint().unwrap_or(from);
                    sink.send(to, d);
                }
                TunnResult::WriteToTunnelV4(p, src) => {
                    peer.set_endpoint(from);
                    let len = p.len();
                    self.deliver(
                        now,
                        &peer,
                        IpAddr::V4(src),
                        &mut scratch.a[..len],
                        &mut scratch.b,
                        sink,
                    );
                    // boringtun has nothing queued after delivering data
                    break;
                }
                TunnResult::WriteToTunnelV6(p, src) => {
                    peer.set_endpoint(from);
                    let len = p.len();
                    self.deliver(
                        now,
                        &peer,
                        IpAddr::V6(src),
                        &mut scratch.a[..len],
                        &mut scratch.b,
                        sink,
                    );
                    break;
                }
            }
            first = false;
        }
    }

    /// A decrypted packet: check its source, then hand it to the tun device or, on a hub,
    /// straight to the next peer without a trip through the kernel.
    fn deliver(
        &self,
        now: Option<Instant>,
        from_peer: &Arc<Peer>,
        src: IpAddr,
        pkt: &mut [u8],
        out: &mut [u8],
        sink: &mut impl Sink,
    ) {
        if !self.table.load().allows(from_peer, src) {
            self.drop_packet(DropReason::SourceNotAllowed);
            return;
        }
        from_peer.rx_packets.fetch_add(1, Ordering::Relaxed);
        let Some(dst) = packet::destination(pkt) else {
            self.drop_packet(DropReason::Decrypt);
            return;
        };
        if let Some(payload) = control::payload(pkt) {
            if self.own_addrs.load().contains(&dst) {
                if let Some(msg) = control::Message::parse(payload) {
                    let len = pkt.len();
                    let now = now.unwrap_or_else(Instant::now);
                    self.handle_control(from_peer, src, msg, len, now, out, sink);
                }
                return;
            }
        }
        if self.local.load().lookup(dst).is_none() {
            let table = self.table.load();
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
                if icmp::needs_too_big(pkt, mtu) {
                    // tell the sender, back through the peer it came from
                    self.drop_packet(DropReason::TooBig);
                    // From the packet's destination: an ICMP whose source is one of our own addresses
                    // would be dropped by the kernel as a martian.
                    if let Some(err) = icmp::too_big(pkt, mtu, dst) {
                        self.encapsulate_to(from_peer, &err, sink);
                    }
                    return;
                }
                mss::clamp(pkt, mtu);
                self.forwarded.fetch_add(1, Ordering::Relaxed);
                self.encapsulate_to(next, pkt, sink);
                return;
            }
        }
        mss::clamp(pkt, from_peer.path.mtu());
        sink.write_tun(pkt);
    }

    /// Drives every peer's timers: handshake retries, keepalives, rekeying, session expiry,
    /// and path-MTU probes.
    pub fn tick(&self, scratch: &mut Scratch, sink: &mut impl Sink) {
        self.tick_at(Instant::now(), scratch, sink)
    }

    /// [`tick`](Self::tick) at a given time. boringtun's own timers read the clock themselves.
    pub fn tick_at(&self, now: Instant, scratch: &mut Scratch, sink: &mut impl Sink) {
        self.tick_paths(now, scratch, sink);
        self.tick_rotation(now, scratch, sink);
        self.tick_psk(scratch, sink);
        self.tick_sessions(now, scratch, sink);
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

    /// The handshake rate limiters count per second; their owner must reset them.
    pub fn reset_rate_limiter(&self) {
        for own in &self.identity.load().keys {
            own.limiter.reset_count();
        }
    }

    /// Counts a drop (for the rotation code next door).
    pub(super) fn count_drop(&self, reason: DropReason) {
        self.drop_packet(reason);
    }

    /// Drop counters by reason.
    pub fn drop_counts(&self) -> HashMap<DropReason, u64> {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops(*r)))
            .collect()
    }
}

/// Where an incoming datagram goes within its peer.
#[derive(Clone, Copy)]
enum Target {
    Slot(u32),
    Keys(SessionKeys),
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
