//! An immutable snapshot of the configured peers with the indexes the data path needs.
//! A reload builds a new table (reusing the `Arc<Peer>` of every peer it keeps) and swaps it in
//! atomically, so the data path never waits on a reload and never sees half of one.

use super::peer::Peer;
use crate::core::key::PublicKey;
use crate::core::liveness::Health;
use crate::core::preference;
use crate::core::routing::PrefixTable;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

#[derive(Default)]
pub struct PeerTable {
    by_slot: HashMap<u32, Arc<Peer>>,
    by_key: HashMap<PublicKey, Arc<Peer>>,
    /// Each peer's endpoint when the table was built, where no other peer shares it: a hint
    /// for whom a handshake initiation comes from, never an authority.
    by_endpoint: HashMap<SocketAddr, Arc<Peer>>,
    /// AllowedIPs → peers: where packets go, and (as in WireGuard's cryptokey routing) whom
    /// a packet from a source may come from. Several peers may share a prefix (the hubs of a
    /// region); they are kept in this node's order of preference (`core::preference`), and
    /// the first that answers carries the traffic (`liveness.rs`).
    routes: PrefixTable<Carriers>,
    /// Prefixes with more than one carrier, for status and metrics.
    shared: Vec<IpNet>,
    /// This node's own pod CIDRs: what the preference among carriers is anchored on.
    own_cidrs: Vec<IpNet>,
    /// The peers whose ranges have relays (a full mesh's NATed pairs), each with its relays in
    /// order: whom hole punching is for, and whom it asks (`punch.rs`).
    relayed: Vec<(Arc<Peer>, Vec<Arc<Peer>>)>,
    /// What the table was built with: each relay and the ranges it carries standing by.
    relay_ranges: Vec<(Arc<Peer>, Vec<IpNet>)>,
}

/// The peers carrying one prefix: nearly always one, so without a list of its own.
enum Carriers {
    One(Arc<Peer>),
    /// Boxed: a prefix of every peer sits in the table, nearly all with one carrier, so the
    /// rare shared one must not widen every entry (`tests/scale_hub.rs`).
    Many(Box<Shared>),
}

/// A prefix several peers carry, in this node's order of preference.
struct Shared {
    /// The prefix's own carriers first (its node, or a region's hubs), then its relays.
    list: Vec<Arc<Peer>>,
    /// How many of `list` are own carriers: a relay is used only while none of them is up.
    own: usize,
    /// Another node's range (a remote spoke's CIDR at a hub) is carried the way that node last
    /// sent from it: its own choice of hub, made by its own liveness, is the freshest word on
    /// which hub works. So when a spoke fails over, the far side's answers follow it at once
    /// instead of waiting to find the dead hub on their own. A range holding our own pod CIDR
    /// (a spoke's cluster route) is ours to choose for: it never follows.
    follows: bool,
    /// Slot of the carrier a packet from the range last came through; `u32::MAX` for none.
    last_heard: AtomicU32,
}

impl Shared {
    fn choose(&self) -> Option<&Arc<Peer>> {
        if self.own < self.list.len() {
            // relays stand by: the node itself while it answers, else a relay that does
            let (own, relays) = self.list.split_at(self.own);
            let up = |l: &[Arc<Peer>]| l.iter().any(|p| p.liveness.health() == Health::Up);
            if up(own) {
                return self.follow(own);
            }
            if up(relays) {
                return self.follow(relays);
            }
        }
        self.follow(&self.list)
    }

    /// Among `list`: the carrier the range last came through while it is up (see `follows`),
    /// else the first by health.
    fn follow<'a>(&self, list: &'a [Arc<Peer>]) -> Option<&'a Arc<Peer>> {
        let last = self.last_heard.load(Ordering::Relaxed);
        if self.follows && last != u32::MAX {
            let followed = list.iter().find(|p| p.slot == last);
            if let Some(p) = followed.filter(|p| p.liveness.health() == Health::Up) {
                return Some(p);
            }
        }
        choose(list)
    }
}

impl PeerTable {
    /// A table of `peers` for a node whose own pod CIDRs are `own_cidrs`.
    pub fn new(peers: Vec<Arc<Peer>>, own_cidrs: &[IpNet]) -> Self {
        Self::with_relays(peers, own_cidrs, Vec::new())
    }

    /// A table of `peers` where each peer of `relays` also carries its ranges, standing by:
    /// other nodes' ranges it relays (a full mesh's NATed pairs, docs/nat.md section 4).
    pub fn with_relays(
        peers: Vec<Arc<Peer>>,
        own_cidrs: &[IpNet],
        relays: Vec<(Arc<Peer>, Vec<IpNet>)>,
    ) -> Self {
        let mut t = PeerTable {
            own_cidrs: own_cidrs.to_vec(),
            ..PeerTable::default()
        };
        let mut shared_nets = Vec::new();
        let mut shared = Vec::new();
        for p in peers {
            if let Some(e) = p.endpoint() {
                if t.by_endpoint.insert(e, p.clone()).is_some() {
                    shared.push(e);
                }
            }
            for net in &p.config().allowed_ips {
                t.add_carrier(*net, &p, false, &mut shared_nets);
            }
            t.by_slot.insert(p.slot, p.clone());
            // during a peer's rotation both of its keys find it
            let keys = p.keys().accepted();
            for key in keys {
                t.by_key.insert(key, p.clone());
            }
        }
        // relays join a prefix's carriers after all its own ones
        for (p, nets) in &relays {
            for net in nets {
                t.add_carrier(*net, p, true, &mut shared_nets);
            }
        }
        t.relay_ranges = relays;
        for e in shared {
            t.by_endpoint.remove(&e);
        }
        for net in &shared_nets {
            if let Some(Carriers::Many(mut shared)) = t.routes.remove(*net) {
                let anchor = preference::anchor(*net, own_cidrs);
                preference::order(anchor, &mut shared.list[..shared.own], |p| p.name());
                let pair = preference::pair_anchor(*net, own_cidrs);
                preference::order(pair, &mut shared.list[shared.own..], |p| p.name());
                shared.follows = anchor == *net;
                t.routes.insert(*net, Carriers::Many(shared));
            }
        }
        t.relayed = t.find_relayed(&shared_nets);
        t.shared = shared_nets;
        t
    }

    /// Each peer carrying a prefix that also has relays, with those relays (a peer's several
    /// prefixes have the same ones: the first found is kept).
    fn find_relayed(&self, shared_nets: &[IpNet]) -> Vec<(Arc<Peer>, Vec<Arc<Peer>>)> {
        let mut relayed: Vec<(Arc<Peer>, Vec<Arc<Peer>>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for net in shared_nets {
            let Some(Carriers::Many(s)) = self.routes.get(*net) else {
                continue;
            };
            let (own, relays) = s.list.split_at(s.own);
            if relays.is_empty() {
                continue;
            }
            for p in own {
                if seen.insert(p.slot) {
                    relayed.push((p.clone(), relays.to_vec()));
                }
            }
        }
        relayed
    }

    /// Each relay and the ranges it carries standing by, as the table was built with.
    pub fn relay_ranges(&self) -> &[(Arc<Peer>, Vec<IpNet>)] {
        &self.relay_ranges
    }

    /// The peers whose ranges have relays, each with its relays in order of preference.
    pub fn relayed(&self) -> &[(Arc<Peer>, Vec<Arc<Peer>>)] {
        &self.relayed
    }

    /// The relay carrying `peer`'s own range now, when its traffic goes through one.
    pub fn relayed_via(&self, peer: &Peer) -> Option<&Arc<Peer>> {
        let net = *peer.config().allowed_ips.first()?;
        let Carriers::Many(s) = self.routes.get(net)? else {
            return None;
        };
        let chosen = s.choose()?;
        s.list[s.own..]
            .iter()
            .any(|r| Arc::ptr_eq(r, chosen))
            .then_some(chosen)
    }

    /// Adds `p` as a carrier of `net`, an own one or a relay (after every own one); notes in
    /// `shared_nets` a prefix that now has two.
    fn add_carrier(
        &mut self,
        net: IpNet,
        p: &Arc<Peer>,
        relay: bool,
        shared_nets: &mut Vec<IpNet>,
    ) {
        let carriers = match self.routes.remove(net) {
            None if !relay => Carriers::One(p.clone()),
            // a relay of a node not configured here: still a relay, never an own carrier
            None => Carriers::Many(Box::new(Shared {
                list: vec![p.clone()],
                own: 0,
                follows: false,
                last_heard: AtomicU32::new(u32::MAX),
            })),
            Some(c) => {
                let (mut list, own) = match c {
                    Carriers::One(first) => (vec![first], 1),
                    Carriers::Many(s) => {
                        let s = *s;
                        (s.list, s.own)
                    }
                };
                if list.len() == 1 {
                    shared_nets.push(net);
                }
                let own = if relay { own } else { own + 1 };
                list.push(p.clone());
                Carriers::Many(Box::new(Shared {
                    list,
                    own,
                    follows: false,
                    last_heard: AtomicU32::new(u32::MAX),
                }))
            }
        };
        self.routes.insert(net, carriers);
    }

    /// This node's own pod CIDRs, as given to [`new`](Self::new).
    pub fn own_cidrs(&self) -> &[IpNet] {
        &self.own_cidrs
    }

    /// Each prefix with several carriers, those carriers in order of preference, and the one
    /// that carries it now.
    pub fn shared(&self) -> impl Iterator<Item = (IpNet, &[Arc<Peer>], &Arc<Peer>)> {
        self.shared
            .iter()
            .filter_map(|net| match self.routes.get(*net)? {
                Carriers::Many(s) => Some((*net, s.list.as_slice(), s.choose()?)),
                Carriers::One(_) => None,
            })
    }

    /// The peer whose endpoint is `addr`, if exactly one was configured there.
    pub fn by_endpoint(&self, addr: SocketAddr) -> Option<&Arc<Peer>> {
        self.by_endpoint.get(&addr)
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
        match self.routes.lookup(dst)? {
            Carriers::One(p) => Some(p),
            Carriers::Many(shared) => shared.choose(),
        }
    }

    /// Whether `peer` may send packets from `src`: the longest prefix holding `src` is one the
    /// peer carries (a source another peer's more specific prefix holds is refused). Where
    /// several peers carry it, notes which one this packet came through (see [`Shared`]).
    pub fn allows(&self, peer: &Peer, src: IpAddr) -> bool {
        match self.routes.lookup(src) {
            None => false,
            Some(Carriers::One(p)) => std::ptr::eq(&**p, peer),
            Some(Carriers::Many(s)) => {
                let ok = s.list.iter().any(|p| std::ptr::eq(&**p, peer));
                // written only when it changes: a flow's packets leave the line shared
                if ok && s.follows && s.last_heard.load(Ordering::Relaxed) != peer.slot {
                    s.last_heard.store(peer.slot, Ordering::Relaxed);
                }
                ok
            }
        }
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

/// The carrier to use among several, in order of preference: the first that is up, else the
/// first that is returning, else the first (all silent: keep trying the preferred one).
fn choose(carriers: &[Arc<Peer>]) -> Option<&Arc<Peer>> {
    let with = |h: Health| carriers.iter().find(|p| p.liveness.health() == h);
    with(Health::Up)
        .or_else(|| with(Health::Returning))
        .or_else(|| carriers.first())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::peer::PeerConfig;

    fn peer(slot: u32, nets: &[&str]) -> Arc<Peer> {
        let config = PeerConfig {
            name: format!("p{slot}"),
            // an addressed peer: one without an address starts down (`peer.rs`)
            endpoint: Some(crate::core::topology::Endpoint::Addr(
                format!("192.0.2.{slot}:51820").parse().unwrap(),
            )),
            candidates: vec![],
            allowed_ips: nets.iter().map(|n| n.parse().unwrap()).collect(),
            persistent_keepalive: None,
            overlay_addrs: vec![],
            mtu: 1420,
        };
        Arc::new(Peer::new(
            slot,
            crate::io::keyfile::generate().public_key(),
            config,
            std::time::Instant::now(),
        ))
    }

    #[test]
    fn a_source_is_allowed_only_from_the_peers_of_its_longest_prefix() {
        let wide = peer(1, &["10.0.0.0/8"]);
        let narrow = peer(2, &["10.1.0.0/16", "fd00::/64"]);
        let twin = peer(3, &["10.1.0.0/16"]);
        let t = PeerTable::new(vec![wide.clone(), narrow.clone(), twin.clone()], &[]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(t.allows(&wide, ip("10.2.0.1")));
        assert!(
            !t.allows(&wide, ip("10.1.0.1")),
            "a more specific prefix belongs to others"
        );
        assert!(t.allows(&narrow, ip("10.1.0.1")));
        assert!(
            t.allows(&twin, ip("10.1.0.1")),
            "both carriers of a shared prefix"
        );
        assert!(t.allows(&narrow, ip("fd00::7")));
        assert!(!t.allows(&twin, ip("fd00::7")));
        assert!(!t.allows(&wide, ip("192.0.2.1")));
    }

    #[test]
    fn another_nodes_range_is_carried_the_way_that_node_last_sent_from_it() {
        let a = peer(1, &["10.244.7.0/24", "10.244.0.0/16"]);
        let b = peer(2, &["10.244.7.0/24", "10.244.0.0/16"]);
        // as a remote hub: 10.244.7.0/24 is a spoke's; as a spoke, 10.244.0.0/16 holds our own
        let t = PeerTable::new(
            vec![a.clone(), b.clone()],
            &["10.244.3.0/24".parse().unwrap()],
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let preferred = t.route(ip("10.244.7.9")).unwrap().clone();
        let other = if Arc::ptr_eq(&preferred, &a) { &b } else { &a };
        assert!(t.allows(other, ip("10.244.7.9")));
        assert!(
            Arc::ptr_eq(t.route(ip("10.244.7.9")).unwrap(), other),
            "follows the spoke"
        );
        // our own range's carrier is our own choice, whoever delivered last
        let own_pick = t.route(ip("10.244.9.1")).unwrap().clone();
        let not_picked = if Arc::ptr_eq(&own_pick, &a) { &b } else { &a };
        assert!(t.allows(not_picked, ip("10.244.9.1")));
        assert!(Arc::ptr_eq(t.route(ip("10.244.9.1")).unwrap(), &own_pick));
        let in_use: Vec<String> = t.shared().map(|(_, _, c)| c.name()).collect();
        assert_eq!(in_use.len(), 2);
    }
}
