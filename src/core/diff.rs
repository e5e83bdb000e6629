//! The smallest change between two plans, so a reload (SIGHUP) touches only what changed and
//! every untouched peer keeps its session.

use super::plan::{PeerPlan, Plan, RoutePlan};
use crate::core::key::PublicKey;
use std::collections::HashMap;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlanDiff {
    /// Peers that are new, or whose public key changed (a new key is a new peer).
    pub added: Vec<PeerPlan>,
    /// Public keys of peers to drop.
    pub removed: Vec<PublicKey>,
    /// Same key, other endpoint, AllowedIPs or keepalive: updated in place, session kept.
    pub changed: Vec<PeerPlan>,
    pub routes_added: Vec<RoutePlan>,
    pub routes_removed: Vec<RoutePlan>,
    /// The tun MTU, when it changed.
    pub mtu: Option<u16>,
}

impl PlanDiff {
    pub fn between(old: &Plan, new: &Plan) -> PlanDiff {
        let old_peers: HashMap<PublicKey, &PeerPlan> =
            old.peers.iter().map(|p| (p.public_key, p)).collect();
        let new_peers: HashMap<PublicKey, &PeerPlan> =
            new.peers.iter().map(|p| (p.public_key, p)).collect();
        let mut diff = PlanDiff::default();
        for p in &new.peers {
            match old_peers.get(&p.public_key) {
                None => diff.added.push(p.clone()),
                Some(o) if *o != p => diff.changed.push(p.clone()),
                Some(_) => {}
            }
        }
        diff.removed = old
            .peers
            .iter()
            .filter(|p| !new_peers.contains_key(&p.public_key))
            .map(|p| p.public_key)
            .collect();
        let key = |r: &RoutePlan| (r.destination, r.via.clone());
        let old_routes: HashMap<_, _> = old.routes.iter().map(|r| (key(r), r)).collect();
        let new_routes: HashMap<_, _> = new.routes.iter().map(|r| (key(r), r)).collect();
        diff.routes_added = new
            .routes
            .iter()
            .filter(|r| !old_routes.contains_key(&key(r)))
            .cloned()
            .collect();
        diff.routes_removed = old
            .routes
            .iter()
            .filter(|r| !new_routes.contains_key(&key(r)))
            .cloned()
            .collect();
        if old.mtu != new.mtu {
            diff.mtu = Some(new.mtu);
        }
        diff
    }

    pub fn is_empty(&self) -> bool {
        *self == PlanDiff::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::key::PrivateKey;
    use crate::core::topology::Topology;
    use std::path::Path;

    fn text(nodes: &[(&str, &str, u8)]) -> String {
        let mut t = String::from("mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n");
        for (name, key, i) in nodes {
            t.push_str(&format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"r\"\nendpoint = \"192.0.2.{i}:51820\"\npublic-key = \"{key}\"\npod-cidr = \"10.244.{i}.0/24\"\n"
            ));
        }
        t
    }

    #[test]
    fn adding_a_node_adds_one_peer_and_its_routes_and_nothing_else() {
        let keys: Vec<String> = (0..4)
            .map(|_| PrivateKey::generate().public_key().to_string())
            .collect();
        let old = Topology::parse(
            &text(&[("a", &keys[0], 1), ("b", &keys[1], 2), ("c", &keys[2], 3)]),
            Path::new("x"),
        )
        .unwrap();
        let new = Topology::parse(
            &text(&[
                ("a", &keys[0], 1),
                ("b", &keys[1], 2),
                ("c", &keys[2], 3),
                ("d", &keys[3], 4),
            ]),
            Path::new("x"),
        )
        .unwrap();
        let d = PlanDiff::between(
            &Plan::compute(&old, "a").unwrap(),
            &Plan::compute(&new, "a").unwrap(),
        );
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.added[0].name, "d");
        assert!(d.removed.is_empty() && d.changed.is_empty());
        assert_eq!(d.routes_added.len(), 1);
        assert!(d.routes_removed.is_empty());
    }

    #[test]
    fn a_moved_endpoint_is_a_change_not_a_new_peer() {
        let keys: Vec<String> = (0..2)
            .map(|_| PrivateKey::generate().public_key().to_string())
            .collect();
        let old = Topology::parse(
            &text(&[("a", &keys[0], 1), ("b", &keys[1], 2)]),
            Path::new("x"),
        )
        .unwrap();
        let moved =
            text(&[("a", &keys[0], 1), ("b", &keys[1], 2)]).replace("192.0.2.2:", "192.0.2.99:");
        let new = Topology::parse(&moved, Path::new("x")).unwrap();
        let d = PlanDiff::between(
            &Plan::compute(&old, "a").unwrap(),
            &Plan::compute(&new, "a").unwrap(),
        );
        assert_eq!(d.changed.len(), 1);
        assert!(d.added.is_empty() && d.removed.is_empty());
        assert!(PlanDiff::between(
            &Plan::compute(&old, "a").unwrap(),
            &Plan::compute(&old, "a").unwrap()
        )
        .is_empty());
    }
}
