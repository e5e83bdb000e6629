//! One configured peer: its sessions, where to reach it, what it may send from, and counters.
//! An idle peer is this record alone; its `Tunn`s come and go (see `idle.rs`).

use super::candidates::PeerCandidates;
use super::liveness::PeerLiveness;
use super::path_mtu::PeerPath;
use super::session::Sessions;
use crate::core::key::PublicKey;
use crate::core::rotation::PeerKeys;
use crate::core::topology::{Candidate, Endpoint};
use arc_swap::ArcSwap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// Mutable settings of a peer that a reload may change without touching its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub name: String,
    pub endpoint: Option<Endpoint>,
    /// Every endpoint to try, best first (the plan's; `endpoint` is the first).
    pub candidates: Vec<Candidate>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
    /// The peer node's own overlay addresses, where control messages go.
    pub overlay_addrs: Vec<IpAddr>,
    /// Tunnel MTU to use until discovery knows better.
    pub mtu: u16,
}

pub struct Peer {
    /// Base slot: receiver indices of this peer's sessions are `slot' << 8 | n`, where `slot'`
    /// is this plus a generation in the top bits (see `session.rs`).
    pub slot: u32,
    /// The active session and, during a rotation, older or newer ones; none while idle.
    pub(super) sessions: Mutex<Sessions>,
    pub(super) next_generation: AtomicU32,
    /// The peer's static keys: one, or two during its rotation.
    keys: Mutex<PeerKeys>,
    /// When the peer's newest key was learnt (configured, or announced).
    key_since: Mutex<Instant>,
    /// Byte counters of sessions already dropped, so totals never go backwards.
    pub(super) retired_tx: AtomicU64,
    pub(super) retired_rx: AtomicU64,
    config: ArcSwap<PeerConfig>,
    /// Where datagrams go now: the configured address, a resolved DNS name, or where the peer
    /// last sent an authenticated packet from (roaming).
    endpoint: RwLock<Option<SocketAddr>>,
    /// Which of the peer's endpoints is in use, failover among them, and roaming's limits.
    pub candidates: PeerCandidates,
    pub rx_packets: AtomicU64,
    pub tx_packets: AtomicU64,
    pub endpoint_changes: AtomicU64,
    /// Control-message support and path MTU towards this peer.
    pub path: PeerPath,
    /// Whether the peer answers: decides among several carriers of a prefix.
    pub liveness: PeerLiveness,
    /// When the last handshake of a session since released completed (`wg show` still shows
    /// it while the peer is idle).
    last_handshake: Mutex<Option<Instant>>,
    /// Handshake messages from this peer that `Tunn` refused (bad MAC, stale timestamp, a
    /// response to no initiation): a wrong key or a replay shows here before anything else.
    pub handshake_failures: AtomicU64,
}

/// A point-in-time view of a peer, for status, UAPI and metrics.
#[derive(Debug, Clone)]
pub struct PeerSnapshot {
    pub name: String,
    pub public_key: PublicKey,
    pub endpoint: Option<SocketAddr>,
    pub configured_endpoint: Option<Endpoint>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
    pub last_handshake: Option<SystemTime>,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub endpoint_changes: u64,
    /// Tunnel MTU the data path enforces towards this peer (discovered, or the plan's).
    pub mtu: u16,
    /// Time since discovery last confirmed `mtu`; `None` while the plan's estimate applies.
    pub mtu_confirmed_age: Option<Duration>,
    pub handshake_failures: u64,
    /// Whether the peer answers what is sent to it.
    pub health: crate::core::liveness::Health,
    /// Times it stopped answering.
    pub downs: u64,
    /// Its endpoints, which one is in use, failovers and refused roams.
    pub candidates: super::candidates::CandidatesView,
    /// Hole punches towards it (`punch.rs`); filled by [`Device::peer_snapshot`], zero from
    /// [`Peer::snapshot`] alone.
    ///
    /// [`Device::peer_snapshot`]: super::Device::peer_snapshot
    pub punch: super::punch::PunchView,
}

impl Peer {
    /// An idle peer at base slot `slot`, configured at `now`: no session until traffic or a
    /// handshake needs one.
    pub fn new(slot: u32, public_key: PublicKey, config: PeerConfig, now: Instant) -> Self {
        let start_mtu = config.mtu;
        let endpoint = match &config.endpoint {
            Some(Endpoint::Addr(a)) => Some(*a),
            _ => None,
        };
        let candidates = PeerCandidates::new(&config.candidates, endpoint);
        // a peer we have no address for is not known to answer until it is heard from: where
        // relays share its ranges, they carry them meanwhile
        let liveness = if endpoint.is_none() && config.candidates.is_empty() {
            PeerLiveness::starting_down()
        } else {
            PeerLiveness::default()
        };
        Self {
            slot: slot & super::session::BASE_SLOT_MASK,
            candidates,
            next_generation: AtomicU32::new(0),
            sessions: Mutex::new(Sessions::empty()),
            keys: Mutex::new(PeerKeys::new(public_key)),
            key_since: Mutex::new(now),
            retired_tx: AtomicU64::new(0),
            retired_rx: AtomicU64::new(0),
            config: ArcSwap::from_pointee(config),
            endpoint: RwLock::new(endpoint),
            path: PeerPath::new(start_mtu),
            liveness,
            rx_packets: AtomicU64::new(0),
            tx_packets: AtomicU64::new(0),
            endpoint_changes: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
            last_handshake: Mutex::new(None),
        }
    }

    /// Whether the peer holds any session state now (an idle peer holds none).
    pub fn is_awake(&self) -> bool {
        self.sessions().active.is_some()
    }

    /// The peer's newest static key (the one new sessions use).
    pub fn public_key(&self) -> PublicKey {
        self.keys().newest()
    }

    /// What this peer's keys are (both during its rotation).
    pub fn keys(&self) -> MutexGuard<'_, PeerKeys> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the peer's newest key changed now (for the key age in `status`).
    pub(super) fn key_changed(&self, now: Instant) {
        *self.key_since.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// When the peer's newest key was learnt.
    pub fn key_since(&self) -> Instant {
        *self.key_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> Arc<PeerConfig> {
        self.config.load_full()
    }

    pub fn name(&self) -> String {
        self.config.load().name.clone()
    }

    /// Applies reloaded settings in place; the session is untouched. A changed configured IP
    /// endpoint replaces the current one; a DNS endpoint waits for the resolver. Returns
    /// whether the peer's AllowedIPs changed (the peer table must then be rebuilt); an
    /// unchanged peer is not touched at all.
    pub fn reconfigure(&self, config: PeerConfig) -> bool {
        let old = self.config.load_full();
        if *old == config {
            return false;
        }
        if old.candidates != config.candidates {
            self.candidates
                .configure(&config.candidates, self.endpoint());
        }
        if old.endpoint != config.endpoint {
            if let Some(Endpoint::Addr(a)) = &config.endpoint {
                self.set_endpoint(*a);
            }
        }
        if old.mtu != config.mtu {
            self.path.set_start_mtu(config.mtu);
        }
        let routes_changed = old.allowed_ips != config.allowed_ips;
        self.config.store(Arc::new(config));
        routes_changed
    }

    pub fn endpoint(&self) -> Option<SocketAddr> {
        *self.endpoint.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new underlay address for this peer; returns whether it changed.
    pub fn set_endpoint(&self, addr: SocketAddr) -> bool {
        if self.endpoint() == Some(addr) {
            return false;
        }
        *self.endpoint.write().unwrap_or_else(|e| e.into_inner()) = Some(addr);
        self.endpoint_changes.fetch_add(1, Ordering::Relaxed);
        let start_mtu = self.config.load().mtu;
        self.candidates.moved(addr, &self.path, start_mtu);
        true
    }

    /// An authenticated packet arrived from `from`. From the endpoint in use, the peer
    /// answers. From elsewhere, the peer may have roamed: followed unless the endpoint in use
    /// is pinned (see `candidates.rs`), and only a packet followed counts as an answer.
    pub(super) fn heard_from(&self, from: SocketAddr, now: Instant) {
        if self.endpoint() != Some(from) {
            if !self.candidates.admits(from, self.liveness.health(), now) {
                return;
            }
            self.set_endpoint(from);
        }
        self.liveness.heard();
    }

    /// Time since the last completed handshake (by the `Tunn`'s own clock: see `session.rs`).
    pub fn handshake_age(&self) -> Option<Duration> {
        self.active()?.time_since_last_handshake()
    }

    /// Keeps the handshake time of sessions being released.
    pub(super) fn remember_handshake(&self, at: Instant) {
        *self
            .last_handshake
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// The peer as of `now`; `wall` is the same moment on the wall clock, for the handshake
    /// time `wg show` prints.
    pub fn snapshot(&self, now: Instant, wall: SystemTime) -> PeerSnapshot {
        let age = self.handshake_age().or_else(|| {
            let at = *self
                .last_handshake
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            at.map(|t| now.saturating_duration_since(t))
        });
        let (tx, rx) = self.transfer();
        let config = self.config();
        let path = self.path.view();
        PeerSnapshot {
            name: config.name.clone(),
            public_key: self.public_key(),
            endpoint: self.endpoint(),
            configured_endpoint: config.endpoint.clone(),
            allowed_ips: config.allowed_ips.clone(),
            persistent_keepalive: config.persistent_keepalive,
            last_handshake: age.and_then(|a| wall.checked_sub(a)),
            tx_bytes: tx,
            rx_bytes: rx,
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            endpoint_changes: self.endpoint_changes.load(Ordering::Relaxed),
            mtu: path.mtu,
            mtu_confirmed_age: path.confirmed_at.map(|t| now.saturating_duration_since(t)),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            health: self.liveness.health(),
            downs: self.liveness.downs(),
            candidates: self.candidates.view(),
            punch: Default::default(),
        }
    }
}
