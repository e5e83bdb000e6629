//! The device: one node's identity, its peer table and its plan-derived settings. The packet
//! paths are `outbound.rs` and `inbound.rs`; the clock-driven work is `timers.rs`.

use super::admission::Admission;
use super::drops::DropReason;
use super::identity::{Identity, OwnKey};
use super::lazy::Awake;
use super::peer::{Peer, PeerConfig};
use super::psk::PskSettings;
use super::session::BASE_SLOT_MASK;
use super::table::PeerTable;
use crate::core::key::{PrivateKey, PublicKey};
use crate::core::plan::Plan;
use crate::core::rotation::{NodeRotation, RotationTiming};
use crate::core::routing::PrefixTable;
use arc_swap::ArcSwap;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct Device {
    pub(super) identity: ArcSwap<Identity>,
    /// The check handshake messages pass before any Diffie-Hellman (cookies under load).
    pub(super) admission: Admission,
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
    pub(super) local: ArcSwap<PrefixTable<()>>,
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
            admission: Admission::default(),
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

    pub(super) fn drop_packet(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Makes the peer set match `plan`. Peers whose key is unchanged keep their sessions (and
    /// are not touched unless their settings changed); new keys get an idle record (no session
    /// until traffic or a handshake needs one); missing keys are dropped. The peer table is
    /// rebuilt only when the peer set or some AllowedIPs changed. Returns the peers created,
    /// so the caller can start their handshakes.
    pub fn apply(&self, plan: &Plan) -> Vec<Arc<Peer>> {
        let _writer = self.rotation();
        let old = self.table.load_full();
        let mut routes_changed = false;
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
                    routes_changed |= existing.reconfigure(config);
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
        // same keys, same count: the same peers (keys are unique)
        if routes_changed || !created.is_empty() || peers.len() != old.len() {
            self.table
                .store(Arc::new(PeerTable::new(peers, &plan.pod_cidrs)));
        }
        created
    }

    /// Drop counters by reason.
    pub fn drop_counts(&self) -> HashMap<DropReason, u64> {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops(*r)))
            .collect()
    }
}
