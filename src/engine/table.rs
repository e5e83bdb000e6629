//! An immutable snapshot of the configured peers with the indexes the data path needs.
//! A reload builds a new table (reusing the `Arc<Peer>` of every peer it keeps) and swaps it in
//! atomically, so the data path never waits on a reload and never sees half of one.

use super::peer::Peer;
use crate::core::key::PublicKey;
use crate::core::routing::PrefixTable;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Default)]
pub struct PeerTable {
    by_slot: HashMap<u32, Arc<Peer>>,
    by_key: HashMap<PublicKey, Arc<Peer>>,
    /// AllowedIPs → peers. Several peers may share a prefix (two hubs carrying one region);
    /// the engine then prefers one with a live session.
    routes: PrefixTable<Vec<Arc<Peer>>>,
}

impl PeerTable {
    pub fn new(peers: Vec<Arc<Peer>>) -> Self {
        let mut t = PeerTable::default();
        for p in peers {
            for net in &p.config().allowed_ips {
                match t.routes.get(*net) {
                    Some(_) => {
                        let mut list = t.routes.remove(*net).unwrap_or_default();
                        list.push(p.clone());
                        t.routes.insert(*net, list);
                    }
                    None => {
                        t.routes.insert(*net, vec![p.clone()]);
                    }
                }
            }
            t.by_slot.insert(p.slot, p.clone());
            // during a peer's rotation both of its keys find it
            let keys = p.keys().accepted();
            for key in keys {
                t.by_key.insert(key, p.clone());
            }
        }
        t
    }

    /// The peer owning `slot` (any session generation of it).
    pub fn by_slot(&self, slot: u32) -> Option<&Arc<Peer>> {
        self.by_slot.get(&(slot & super::session::BASE_SLOT_MASK))
    }

    pub fn by_key(&self, key: &PublicKey) -> Option<&Arc<Peer>> {
        self.by_key.get(key)
    }

    /// The peer to send a packet for `dst` to.
    pub fn route(&self, dst: IpAddr) -> Option<&Arc<Peer>> {
        let candidates = self.routes.lookup(dst)?;
        if candidates.len() == 1 {
            return candidates.first();
        }
        candidates
            .iter()
            .find(|p| {
                p.handshake_age()
                    .is_some_and(|a| a < crate::constants::SESSION_FRESH)
            })
            .or_else(|| candidates.first())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Peer>> {
        self.by_slot.values()
    }

    pub fn len(&self) -> usize {
        self.by_slot.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_slot.is_empty()
    }
}
