//! Relays in a full mesh (docs/nat.md, section 4): a pair of nodes that have no address for
//! each other (both behind NAT, no scope in common) is carried, standing by, by public nodes.
//!
//! A relay is not a new mechanism. Each side lists its relays as further carriers of the
//! other's ranges, after the node itself, so the shared-range carriers of `engine/table.rs`
//! move the traffic: to the node directly while it answers (a punched path, section 3), to
//! the first relay that answers otherwise. The relay forwards inside its engine, as a hub does.
//!
//! Both sides pick the same relays from the same rule (a rank anchored on the pair, not on
//! either side), so a pair's traffic crosses one node both ways while their views agree; when
//! they do not, each relay still forwards whatever it gets for a node it has a session with.

use super::super::preference;
use super::super::topology::Node;
use ipnet::IpNet;
use std::collections::HashMap;

/// Relays per pair: the second takes over when the first stops answering.
pub const RELAYS_PER_PAIR: usize = 2;
/// At most this many public nodes relay in a mesh (the pool); pairs spread over them. Ranking
/// every public node for every pair cost a NATed node's plan 40 ms in a mesh of 500 public and
/// 500 NATed nodes, against 0.6 ms for a public node's; within the pool it is 1.8 ms (AMD
/// EPYC, 2 vCPUs, kernel 6.18, debug build).
pub const RELAY_POOL: usize = 16;

/// Whether `a` and `b` can address each other at all: one of them has an endpoint the other
/// may use. A pair that cannot needs relays (and hole punching to go direct).
pub fn needs_relay(a: &Node, b: &Node) -> bool {
    !addressable(a, b) && !addressable(b, a)
}

/// Whether `from` has an address of `node`: its public one, or one in a scope both share.
fn addressable(node: &Node, from: &Node) -> bool {
    node.endpoint.is_some()
        || node
            .scoped
            .iter()
            .any(|e| from.scoped.iter().any(|f| f.scope == e.scope))
}

/// The nodes that relay: those with a public (unscoped) endpoint, which every node can reach,
/// at most [`RELAY_POOL`] of them, picked by a rank every node computes alike (`anchor`: the
/// mesh's cluster CIDR).
pub fn relay_nodes<'a>(anchor: IpNet, nodes: impl Iterator<Item = &'a Node>) -> Vec<&'a Node> {
    let mut public: Vec<&Node> = nodes.filter(|n| n.endpoint.is_some()).collect();
    if public.len() > RELAY_POOL {
        preference::order(anchor, &mut public, |n| n.name.clone());
        public.truncate(RELAY_POOL);
    }
    public
}

/// The relays of `other`'s range `range` for `me`, best first, from `relays` (neither of the
/// two): the same for both ends of the pair.
pub fn of_pair<'a>(relays: &[&'a Node], me: &Node, other: &Node, range: IpNet) -> Vec<&'a Node> {
    let anchor = preference::pair_anchor(range, &me.pod_cidrs());
    let mut picked: Vec<&Node> = relays
        .iter()
        .copied()
        .filter(|r| !std::ptr::eq(*r, me) && !std::ptr::eq(*r, other))
        .collect();
    preference::order(anchor, &mut picked, |r| r.name.clone());
    picked.truncate(RELAYS_PER_PAIR);
    picked
}

/// For `me` in a full mesh: each relay's name → the ranges it carries for `me`, standing by
/// (the pod CIDRs of the nodes `me` cannot address and that cannot address `me`).
pub fn carried_by_relays<'a>(
    me: &Node,
    cluster: IpNet,
    others: impl Iterator<Item = &'a Node> + Clone,
) -> HashMap<String, Vec<(&'a Node, IpNet)>> {
    let relays = relay_nodes(cluster, others.clone());
    let mut carried: HashMap<String, Vec<(&Node, IpNet)>> = HashMap::new();
    if relays.is_empty() {
        return carried;
    }
    for n in others.filter(|n| needs_relay(me, n)) {
        for range in n.pod_cidrs() {
            for r in of_pair(&relays, me, n, range) {
                carried.entry(r.name.clone()).or_default().push((n, range));
            }
        }
    }
    carried
}

#[cfg(test)]
mod tests {
    use crate::core::plan::Plan;
    use crate::core::topology::Topology;
    use std::path::Path;

    /// A full mesh: public `pub-a`, `pub-b`; `n1`..`n3` behind NAT (no endpoint); `v1`, `v2`
    /// with only private endpoints in one VPC.
    fn mesh() -> Topology {
        let mut text = String::from("mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n");
        let nodes = [
            ("pub-a", "endpoint = \"192.0.2.1:51820\""),
            ("pub-b", "endpoint = \"192.0.2.2:51820\""),
            ("n1", ""),
            ("n2", ""),
            ("n3", ""),
            (
                "v1",
                "endpoints = [{ address = \"10.0.0.1:51820\", scope = \"aws:vpc-1\" }]",
            ),
            (
                "v2",
                "endpoints = [{ address = \"10.0.0.2:51820\", scope = \"aws:vpc-1\" }]",
            ),
        ];
        for (i, (name, endpoint)) in nodes.iter().enumerate() {
            text.push_str(&format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"r\"\n{endpoint}\npublic-key = \"{}\"\npod-cidr = \"10.244.{}.0/24\"\n",
                crate::io::keyfile::generate().public_key(),
                i + 1
            ));
        }
        Topology::parse(&text, Path::new("t.toml")).unwrap()
    }

    /// `node`'s relays of `other`'s range, in the plan's peer order.
    fn relays(t: &Topology, node: &str, range: &str) -> Vec<String> {
        let plan = Plan::compute(t, node).unwrap();
        let range = range.parse().unwrap();
        plan.relays
            .iter()
            .filter(|r| r.ranges.contains(&range))
            .map(|r| r.relay.clone())
            .collect()
    }

    #[test]
    fn a_pair_without_addresses_for_each_other_gets_the_public_nodes_as_relays_and_no_one_else() {
        let t = mesh();
        // n1 and n2 cannot address each other: both public nodes relay, for both sides
        assert_eq!(relays(&t, "n1", "10.244.4.0/24"), ["pub-a", "pub-b"]);
        assert_eq!(relays(&t, "n2", "10.244.3.0/24"), ["pub-a", "pub-b"]);
        // a VPC node and a NATed one share nothing either
        assert_eq!(relays(&t, "v1", "10.244.3.0/24"), ["pub-a", "pub-b"]);
        // a VPC pair addresses each other, and everyone addresses a public node
        assert!(relays(&t, "v1", "10.244.7.0/24").is_empty());
        assert!(relays(&t, "n1", "10.244.1.0/24").is_empty());
        // a public node relays for others but needs no relay itself
        let public = Plan::compute(&t, "pub-a").unwrap();
        assert!(public.relays.is_empty());
        // the route to a relayed node is bounded by the relays' hops too
        let plan = Plan::compute(&t, "n1").unwrap();
        let route = plan
            .routes
            .iter()
            .find(|r| r.node == "n2")
            .expect("a route to n2");
        assert_eq!(route.via, "n2", "the node itself first");
        assert!(route.beyond_mtu.is_some());
    }

    #[test]
    fn both_sides_of_a_pair_rank_its_relays_alike_and_keep_at_most_two() {
        let mut text = String::from("mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n");
        for i in 0..8 {
            let endpoint = if i < 5 {
                format!("endpoint = \"192.0.2.{}:51820\"\n", i + 1)
            } else {
                String::new()
            };
            text.push_str(&format!(
                "[[node]]\nname = \"n{i}\"\ncloud = \"c\"\nregion = \"r\"\n{endpoint}public-key = \"{}\"\npod-cidr = \"10.244.{}.0/24\"\n",
                crate::io::keyfile::generate().public_key(),
                i + 1
            ));
        }
        let t = Topology::parse(&text, Path::new("t.toml")).unwrap();
        for (a, b) in [("n5", "n6"), ("n5", "n7"), ("n6", "n7")] {
            let cidr = |n: &str| {
                let i: u8 = n[1..].parse().unwrap();
                format!("10.244.{}.0/24", i + 1)
            };
            let ours = relays(&t, a, &cidr(b));
            let theirs = relays(&t, b, &cidr(a));
            assert_eq!(ours.len(), super::RELAYS_PER_PAIR, "{a}–{b}: {ours:?}");
            let mut sorted = (ours.clone(), theirs.clone());
            sorted.0.sort();
            sorted.1.sort();
            assert_eq!(sorted.0, sorted.1, "{a}–{b}: the same two relays");
        }
    }
}
