//! The device: one node's engine. It composes the features' own state and routes events to
//! them; the packet paths are `outbound.rs` and `inbound.rs`, the clock-driven work is
//! `timers.rs`. A new feature arrives as one more part here, with its state in its own file.
//!
//! Time is always an argument: a monotonic `now` at every entry, and the driver's wall clock
//! where PSK epochs need one (`tick`, and the constructor). boringtun's `Tunn` keeps timers of
//! its own (see `session.rs`).

use super::admission::Admission;
use super::counters::{Counters, DropReason};
use super::firewall::{Firewall, TableUse};
use super::idle::Idle;
use super::node::NodeSettings;
use super::own_keys::OwnKeys;
use super::path_mtu::PathEvents;
use super::peer::Peer;
use super::peers::Peers;
use super::psk::{PskEpochs, PskSettings};
use super::punch::Punches;
use super::reflexive::{NatView, Reflexive};
use super::table::PeerTable;
use crate::core::key::{PrivateKey, PublicKey};
use crate::core::plan::Plan;
use crate::core::policy::Policy;
use crate::core::rotation::RotationTiming;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub struct Device {
    /// This node's static keys and their rotation.
    pub(super) keys: OwnKeys,
    /// Pair PSKs per epoch, when the mesh has a secret.
    pub(super) psk: PskEpochs,
    /// The check handshake messages pass before any Diffie-Hellman (cookies under load).
    pub(super) admission: Admission,
    pub(super) peers: Peers,
    /// What the plan says about this node itself.
    pub(super) node: ArcSwap<NodeSettings>,
    /// MTU changes waiting for the daemon.
    pub(super) path_events: PathEvents,
    /// Which peers hold session state, and when they give it back.
    pub(super) idle: Idle,
    /// The network policy and its connection table.
    pub(super) firewall: Firewall,
    /// What public peers see of our address: the NAT in front of this node.
    pub(super) reflexive: Reflexive,
    /// Hole punching towards the peers reached through a relay.
    pub(super) punches: Punches,
    pub(super) counters: Counters,
}

impl Device {
    pub fn new(private: PrivateKey, plan: &Plan, now: Instant) -> Self {
        Self::with_rotation(private, plan, RotationTiming::default(), now)
    }

    /// A device whose key rotations follow `timing`.
    pub fn with_rotation(
        private: PrivateKey,
        plan: &Plan,
        timing: RotationTiming,
        now: Instant,
    ) -> Self {
        Self::with_options(private, plan, timing, None, now, SystemTime::UNIX_EPOCH)
    }

    /// A device whose key rotations follow `timing`, with pair PSKs from `psk` when given;
    /// `wall` is the driver's wall clock, which PSK epochs follow.
    pub fn with_options(
        private: PrivateKey,
        plan: &Plan,
        timing: RotationTiming,
        psk: Option<PskSettings>,
        now: Instant,
        wall: SystemTime,
    ) -> Self {
        let dev = Device {
            keys: OwnKeys::new(private, timing, now),
            psk: PskEpochs::new(psk, wall),
            admission: Admission::default(),
            peers: Peers::default(),
            node: ArcSwap::from_pointee(NodeSettings::of(plan)),
            path_events: PathEvents::default(),
            idle: Idle::default(),
            firewall: Firewall::new(firewall_seed(), now),
            reflexive: Reflexive::default(),
            punches: Punches::default(),
            counters: Counters::default(),
        };
        dev.apply(plan, now);
        dev
    }

    /// Makes the device match `plan`: this node's own settings, and the peer set (see
    /// [`Peers::apply`](super::peers::Peers::apply)). Returns the peers created, so the caller
    /// can start their handshakes.
    pub fn apply(&self, plan: &Plan, now: Instant) -> Vec<Arc<Peer>> {
        self.node.store(Arc::new(NodeSettings::of(plan)));
        self.peers.apply(plan, now)
    }

    /// Puts a compiled network policy in force (docs/policy.md): packets judged after this
    /// returns follow it; flows it still allows go on, flows it denies stop on their next
    /// packet.
    pub fn set_policy(&self, policy: Arc<Policy>) {
        self.firewall.set(policy);
    }

    /// The policy in force, with its counters.
    pub fn policy(&self) -> Arc<Policy> {
        self.firewall.policy()
    }

    /// How full the connection table is at `now` (a walk: for metrics and status).
    pub fn conntrack(&self, now: Instant) -> TableUse {
        self.firewall.table_use(now)
    }

    /// The NAT in front of this node, as its public peers' answers show it at `now`.
    pub fn nat(&self, now: Instant) -> NatView {
        self.reflexive.view(&self.node.load().own_endpoints, now)
    }

    /// The pre-shared-key epoch in use, when a mesh secret is configured.
    pub fn psk_epoch(&self) -> Option<u64> {
        self.psk.configured()
    }

    /// The newest own public key (the one new sessions use).
    pub fn public_key(&self) -> PublicKey {
        self.keys.newest().public
    }

    /// The newest own private key.
    pub fn private_key(&self) -> PrivateKey {
        self.keys.newest().private.clone()
    }

    pub fn listen_port(&self) -> u16 {
        self.node.load().listen_port
    }

    /// The tunnel MTU of the current plan.
    pub fn mtu(&self) -> u16 {
        self.node.load().mtu
    }

    /// A point-in-time view of `peer`, with what the device's parts know of it.
    pub fn peer_snapshot(
        &self,
        peer: &Peer,
        now: Instant,
        wall: SystemTime,
    ) -> super::PeerSnapshot {
        let mut s = peer.snapshot(now, wall);
        s.punch = self.punch_view(peer);
        s
    }

    pub fn peers(&self) -> Arc<PeerTable> {
        self.peers.load_full()
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.counters.drops(reason)
    }

    /// Drop counters by reason.
    pub fn drop_counts(&self) -> HashMap<DropReason, u64> {
        self.counters.drop_counts()
    }

    /// Packets relayed from one peer to another without the kernel (a hub).
    pub fn forwarded(&self) -> u64 {
        self.counters.forwarded()
    }

    pub(super) fn drop_packet(&self, reason: DropReason) {
        self.counters.drop_packet(reason);
    }

    /// Handshake messages answered with a cookie reply instead of being handled (a flood).
    pub fn cookie_replies(&self) -> u64 {
        self.admission.cookie_replies()
    }

    /// How many peers hold session state now.
    pub fn awake_count(&self) -> usize {
        self.idle.awake_count()
    }

    /// Sessions released since start (for metrics).
    pub fn releases(&self) -> u64 {
        self.idle.releases()
    }

    /// Releases idle peers after `after` of quiet even while their keys are usable. Their side
    /// may still send on the old session; such a packet is dropped and answered with a new
    /// handshake, so a sparse flow loses the packet that found the session gone.
    pub fn set_release_after(&self, after: Option<Duration>) {
        self.idle.set_release_after(after);
    }

    /// MTU changes since the last call, for the daemon to apply to routes and log.
    pub fn take_path_events(&self) -> Vec<super::PathEvent> {
        self.path_events.take()
    }
}

/// The key of the connection table's hashes, from the OS: flows a sender picks must not be
/// able to crowd one bucket.
fn firewall_seed() -> [u64; 2] {
    use rand_core::RngCore;
    [rand_core::OsRng.next_u64(), rand_core::OsRng.next_u64()]
}
