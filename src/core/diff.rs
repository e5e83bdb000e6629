//! The smallest change between two plans, so a reload (SIGHUP) touches only what changed and
//! every untouched peer keeps its session.

use super::plan::{PeerPlan, Plan, RoutePlan};
use crate::core::key::PublicKey;
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};

/// Everything a reload must do on one node, and nothing more: a node changed elsewhere in the
/// mesh shows up here only as that peer (and its routes), so applying the diff touches only it.
/// This is also the input a peer-by-peer engine reconfiguration needs: keys to drop, peers to
/// create, peers to update with their new settings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlanDiff {
    /// Peers that are new, or whose public key changed (a new key is a new peer).
    pub added: Vec<PeerPlan>,
    /// Public keys of peers to drop.
    pub removed: Vec<PublicKey>,
    /// Same key, other endpoint, AllowedIPs, keepalive, MTU or name: updated in place, session
    /// kept. Each carries its complete new settings.
    pub changed: Vec<PeerPlan>,
    pub routes_added: Vec<RoutePlan>,
    pub routes_removed: Vec<RoutePlan>,
    /// Same destination and first hop, other planned MTU: the route stays, its MTU moves.
    pub routes_changed: Vec<RoutePlan>,
    /// The tun MTU, when it changed.
    pub mtu: Option<u16>,
    /// The node's own settings changed: listen port, addresses, pod CIDRs, cluster CIDRs,
    /// underlay MTU or whether paths are probed.
    pub own: bool,
}

impl PlanDiff {
    /// Linear in the two plans' sizes: peers are matched by key and routes by (destination,
    /// first hop) through hash maps that borrow from the plans.
    pub fn between(old: &Plan, new: &Plan) -> PlanDiff {
        let old_peers: HashMap<&PublicKey, &PeerPlan> =
            old.peers.iter().map(|p| (&p.public_key, p)).collect();
        let new_keys: HashSet<&PublicKey> = new.peers.iter().map(|p| &p.public_key).collect();
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
            .filter(|p| !new_keys.contains(&p.public_key))
            .map(|p| p.public_key)
            .collect();
        fn key(r: &RoutePlan) -> (IpNet, &str) {
            (r.destination, r.via.as_str())
        }
        let mut old_routes: HashMap<(IpNet, &str), &RoutePlan> =
            old.routes.iter().map(|r| (key(r), r)).collect();
        for r in &new.routes {
            match old_routes.remove(&key(r)) {
                None => diff.routes_added.push(r.clone()),
                Some(o) if o != r => diff.routes_changed.push(r.clone()),
                Some(_) => {}
            }
        }
        // what is left was not matched by any new route; keep the old plan's order
        diff.routes_removed = old
            .routes
            .iter()
            .filter(|r| old_routes.contains_key(&key(r)))
            .cloned()
            .collect();
        if old.mtu != new.mtu {
            diff.mtu = Some(new.mtu);
        }
        diff.own = (old.listen_port, &old.addresses, &old.pod_cidrs)
            != (new.listen_port, &new.addresses, &new.pod_cidrs)
            || old.cluster_cidrs != new.cluster_cidrs
            || (old.underlay_mtu, old.discover_mtu) != (new.underlay_mtu, new.discover_mtu);
        diff
    }

    pub fn is_empty(&self) -> bool {
        *self == PlanDiff::default()
    }

    /// Whether the peer set or any peer's settings changed: what the engine must be told.
    pub fn touches_peers(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            .map(|_| crate::io::keyfile::generate().public_key().to_string())
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
            .map(|_| crate::io::keyfile::generate().public_key().to_string())
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

    /// 1,000 nodes with pinned CIDRs and IPv4 endpoints; `edit` rewrites one node's lines.
    fn big(edit: impl Fn(usize, String) -> String) -> Topology {
        let keys: Vec<String> = (0..1_000)
            .map(|i| {
                // from 2: the key 1 is u = 1, a low-order point the key parser refuses
                let mut b = [0u8; 32];
                b[..2].copy_from_slice(&(i as u16 + 2).to_le_bytes());
                crate::core::key::PublicKey::from_bytes(b).to_string()
            })
            .collect();
        let mut t = String::from("mode = \"full\"\ncluster-cidr = \"10.0.0.0/8\"\n");
        for (i, key) in keys.iter().enumerate() {
            let node = format!(
                "[[node]]\nname = \"n{i}\"\ncloud = \"c\"\nregion = \"r{}\"\nendpoint = \"198.18.{}.{}:51820\"\npublic-key = \"{key}\"\npod-cidr = \"10.{}.{}.0/24\"\n",
                i % 10,
                i / 250,
                i % 250 + 1,
                i / 250,
                i % 250
            );
            t.push_str(&edit(i, node));
        }
        Topology::parse(&t, Path::new("big.toml")).unwrap()
    }

    #[test]
    fn changing_one_node_of_a_thousand_touches_only_that_peer_everywhere() {
        let old = big(|_, n| n);
        let moved = big(|i, n| {
            if i == 17 {
                n.replace("198.18.0.18:", "198.18.9.99:")
                    .replace("10.0.17.0/24", "10.200.0.0/24")
            } else {
                n
            }
        });
        for node in ["n0", "n500", "n999"] {
            let d = PlanDiff::between(
                &Plan::compute(&old, node).unwrap(),
                &Plan::compute(&moved, node).unwrap(),
            );
            let names: Vec<&str> = d.changed.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["n17"], "{node}");
            let p = &d.changed[0];
            assert_eq!(
                p.endpoint.as_ref().unwrap().to_string(),
                "198.18.9.99:51820"
            );
            assert_eq!(p.allowed_ips, ["10.200.0.0/24".parse::<IpNet>().unwrap()]);
            assert!(d.added.is_empty() && d.removed.is_empty(), "{node}");
            let dests = |rs: &[RoutePlan]| -> Vec<String> {
                rs.iter()
                    .map(|r| format!("{} via {}", r.destination, r.via))
                    .collect()
            };
            assert_eq!(dests(&d.routes_added), ["10.200.0.0/24 via n17"], "{node}");
            assert_eq!(dests(&d.routes_removed), ["10.0.17.0/24 via n17"], "{node}");
            assert!(d.routes_changed.is_empty() && d.mtu.is_none() && !d.own);
        }
        // the moved node itself: its peers are the same, only its own addresses moved
        let d = PlanDiff::between(
            &Plan::compute(&old, "n17").unwrap(),
            &Plan::compute(&moved, "n17").unwrap(),
        );
        assert!(d.own && !d.touches_peers());
        assert!(d.routes_added.is_empty() && d.routes_removed.is_empty());
    }

    #[test]
    fn a_region_mtu_change_moves_route_mtus_without_re_adding_routes() {
        let old = big(|_, n| n);
        let mut smaller = old.clone();
        smaller.mesh.regions.insert(
            "r3".into(),
            crate::core::topology::Region { underlay_mtu: 1400 },
        );
        let d = PlanDiff::between(
            &Plan::compute(&old, "n0").unwrap(),
            &Plan::compute(&smaller, "n0").unwrap(),
        );
        // every node of region r3 (i % 10 == 3): 100 peers and their 100 routes
        assert_eq!(d.changed.len(), 100);
        assert!(d.changed.iter().all(|p| p.region == "r3" && p.mtu == 1340));
        assert_eq!(d.routes_changed.len(), 100);
        assert!(d.routes_added.is_empty() && d.routes_removed.is_empty());
    }
}
