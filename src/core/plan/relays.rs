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

/// The nodes that may relay: those with a public (unscoped) endpoint, which every node can
/// reach.
pub fn relay_nodes<'a>(nodes: impl Iterator<Item = &'a Node>) -> Vec<&'a Node> {
    nodes.filter(|n| n.endpoint.is_some()).collect()
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
    others: impl Iterator<Item = &'a Node> + Clone,
) -> HashMap<String, Vec<(&'a Node, IpNet)>> {
    let relays = relay_nodes(others.clone());
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
