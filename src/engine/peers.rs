//! The configured peer set: the table the data path reads, and how a plan or a learnt key
//! changes it. A change builds a new table and swaps it in whole (see `table.rs`).

use super::peer::{Peer, PeerConfig};
use super::session::BASE_SLOT_MASK;
use super::table::PeerTable;
use crate::core::plan::Plan;
use arc_swap::{ArcSwap, Guard};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub(super) struct Peers {
    table: ArcSwap<PeerTable>,
    /// The next base slot to give a new peer.
    next_slot: AtomicU32,
    /// Serialises the writers (reloads, learnt keys): each builds from the table it read.
    writer: Mutex<()>,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            table: ArcSwap::from_pointee(PeerTable::default()),
            next_slot: AtomicU32::new(1),
            writer: Mutex::new(()),
        }
    }
}

impl Peers {
    pub fn load(&self) -> Guard<Arc<PeerTable>> {
        self.table.load()
    }

    pub fn load_full(&self) -> Arc<PeerTable> {
        self.table.load_full()
    }

    /// Makes the peer set match `plan`. Peers whose key is unchanged keep their sessions (and
    /// are not touched unless their settings changed); new keys get an idle record (no session
    /// until traffic or a handshake needs one); missing keys are dropped. The table is rebuilt
    /// only when the peer set or some AllowedIPs changed. Returns the peers created, so the
    /// caller can start their handshakes.
    pub fn apply(&self, plan: &Plan, now: Instant) -> Vec<Arc<Peer>> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.table.load_full();
        let mut routes_changed = false;
        let mut created = Vec::new();
        let mut peers = Vec::with_capacity(plan.peers.len());
        for p in &plan.peers {
            let config = PeerConfig {
                name: p.name.clone(),
                endpoint: p.endpoint.clone(),
                candidates: p.candidates.clone(),
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
                    let peer = Arc::new(Peer::new(slot, p.public_key, config, now));
                    created.push(peer.clone());
                    peers.push(peer);
                }
            }
        }
        // the ranges each relay carries, standing by (kept out of every peer's config: nearly
        // no peer relays, and a hub holds ten thousand idle ones)
        let relays: Vec<(Arc<Peer>, Vec<ipnet::IpNet>)> = plan
            .relays
            .iter()
            .filter_map(|r| {
                let key = plan.peers.iter().find(|p| p.name == r.relay)?.public_key;
                let peer = peers.iter().find(|q| q.public_key() == key)?;
                Some((peer.clone(), r.ranges.clone()))
            })
            .collect();
        let same_relays = relays.len() == old.relay_ranges().len()
            && relays
                .iter()
                .zip(old.relay_ranges())
                .all(|((a, x), (b, y))| Arc::ptr_eq(a, b) && x == y);
        // same keys, same count: the same peers (keys are unique)
        if routes_changed || !same_relays || !created.is_empty() || peers.len() != old.len() {
            self.table.store(Arc::new(PeerTable::with_relays(
                peers,
                &plan.pod_cidrs,
                relays,
            )));
        }
        created
    }

    /// Re-indexes the peers by their current keys (after a peer's key changed).
    pub fn reindex(&self) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.table.load_full();
        self.table.store(Arc::new(PeerTable::with_relays(
            old.iter().cloned().collect(),
            old.own_cidrs(),
            old.relay_ranges().to_vec(),
        )));
    }
}
