//! Pod CIDR assignment.
//!
//! A node's CIDR can only be stable under *every* addition and removal if it depends on nothing
//! but the node itself (remove the other nodes one by one and it must not move). With 256 /24s in
//! a /16, a pure hash of the name collides too often for that to work, so wiremesh does two things:
//!
//! 1. An unpinned node prefers the slot given by a hash of its name, probing upwards from there
//!    past slots that pinned nodes or earlier nodes (in file order) already hold. Adding a node at
//!    the end of the file never moves anyone; removing one moves only a node that collided with it.
//! 2. `wiremesh ipam --write` pins every node's CIDR into the file (`pod-cidr = ...`), after which
//!    adding or removing any node never moves another. The lab and the Ansible role always pin.

use super::topology::{ClaimedCidr as Cidr, Claims, Node, Problem};
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The address a node's tun device carries: the first host address of its pod CIDR.
pub fn first_host_v4(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(1))
}

/// IPv6 counterpart of [`first_host_v4`].
pub fn first_host_v6(net: Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()).wrapping_add(1))
}

/// FNV-1a: tiny, stable across versions and platforms, which is all a slot preference needs.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One address family's pool of pod CIDRs: the `node-prefix`-sized slots of a cluster CIDR, and
/// the rule that picks one for a node. The file's IPAM ([`assign`]) and the registry's joins
/// (`core/registry/alloc.rs`) both pick through it, so a node joining an empty registry gets the
/// CIDR `wiremesh ipam` would give it in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pool {
    /// The cluster's network address (IPv4 in the low 32 bits).
    base: u128,
    cluster_len: u8,
    prefix: u8,
    /// 32 or 128.
    width: u8,
}

impl Pool {
    /// The pool of `cluster` cut into `/prefix` slots; `prefix` was checked to be longer than
    /// the cluster's and at most /30.
    pub(crate) fn v4(cluster: Ipv4Net, prefix: u8) -> Self {
        Pool {
            base: u128::from(u32::from(cluster.network())),
            cluster_len: cluster.prefix_len(),
            prefix,
            width: 32,
        }
    }

    /// IPv6 counterpart of [`Pool::v4`] (prefix at most /126).
    pub(crate) fn v6(cluster: Ipv6Net, prefix: u8) -> Self {
        Pool {
            base: u128::from(cluster.network()),
            cluster_len: cluster.prefix_len(),
            prefix,
            width: 128,
        }
    }

    /// How many slots the pool holds.
    pub(crate) fn slots(&self) -> u128 {
        1u128 << u32::from(self.prefix.saturating_sub(self.cluster_len)).min(127)
    }

    /// The slot's CIDR.
    fn slot(&self, slot: u128) -> Cidr {
        let shift = u32::from(self.width.saturating_sub(self.prefix));
        Cidr {
            start: self.base | slot.checked_shl(shift).unwrap_or(0),
            len: self.prefix,
        }
    }

    /// The free slot for `name`: the one its name's hash prefers, else the next upwards
    /// (wrapping) that overlaps nothing `taken` holds; `None` when none is free.
    pub(crate) fn pick<T>(&self, name: &str, taken: &Claims<T>) -> Option<Cidr> {
        let slots = self.slots();
        let start = u128::from(name_hash(name)) % slots;
        let probes = slots.min(1 << 20);
        (0..probes)
            .map(|i| self.slot((start + i) % slots))
            .find(|&c| !taken.overlaps(c))
    }
}

/// The pod CIDR `name` prefers in `cluster` cut into `/prefix` slots, when nothing is taken:
/// what tests use to pick names that all want one slot.
pub fn preferred_v4(cluster: Ipv4Net, prefix: u8, name: &str) -> Option<Ipv4Net> {
    let pool = Pool::v4(cluster, prefix);
    Some(pool.pick(name, &Claims::<()>::v4())?.to_v4())
}

impl Cidr {
    /// The CIDR as IPv4; only for CIDRs of a v4 pool.
    pub(crate) fn to_v4(self) -> Ipv4Net {
        Ipv4Net::new(Ipv4Addr::from(self.start as u32), self.len.min(32)).expect("at most /32")
    }

    /// The CIDR as IPv6; only for CIDRs of a v6 pool.
    pub(crate) fn to_v6(self) -> Ipv6Net {
        Ipv6Net::new(Ipv6Addr::from(self.start), self.len.min(128)).expect("at most /128")
    }
}

/// The error for a pool too small for its nodes. It names the pool's field rather than the
/// node's `pod-cidr`, since the fix is a larger `cluster-cidr` or a longer `node-prefix`, not
/// anything in the node that happened to come last.
fn exhausted(
    node: &Node,
    pool: &str,
    cluster: String,
    prefix: u8,
    slots: u128,
    nodes: usize,
) -> Problem {
    Problem {
        line: None,
        node: Some(node.name.clone()),
        policy: None,
        field: Some(pool.into()),
        message: format!(
            "no free pod CIDR left for this node: {cluster} holds {slots} /{prefix} slot(s) for \
             {nodes} node(s); declare a larger {pool} (10.0.0.0/8 holds 65,536 /24s) or a \
             longer node-prefix"
        ),
    }
}

/// Fills in the pod CIDRs of nodes that do not pin one. Each probe is a lookup in [`Claims`],
/// so assigning n nodes costs O(n log n) while the pool has room.
pub(crate) fn assign(
    nodes: &mut [Node],
    cluster: Ipv4Net,
    prefix: u8,
    cluster_v6: Option<Ipv6Net>,
    prefix_v6: u8,
) -> Result<(), Problem> {
    let count = nodes.len();
    // v4: slots are prefix-sized subnets of the cluster.
    let pool = Pool::v4(cluster, prefix);
    let mut held: Claims<()> = Claims::v4();
    for n in nodes.iter().filter(|n| n.pod_cidr_pinned) {
        held.insert(n.pod_cidr, ());
    }
    for node in nodes.iter_mut().filter(|n| !n.pod_cidr_pinned) {
        let cidr = pool.pick(&node.name, &held).ok_or_else(|| {
            exhausted(
                node,
                "cluster-cidr",
                cluster.to_string(),
                prefix,
                pool.slots(),
                count,
            )
        })?;
        node.pod_cidr = cidr.to_v4();
        held.insert(cidr, ());
    }
    // v6: only when the cluster is dual stack; same preference, so a node's v4 and v6 slots agree
    // whenever nothing collides.
    if let Some(cluster6) = cluster_v6 {
        let pool6 = Pool::v6(cluster6, prefix_v6);
        let mut held6: Claims<()> = Claims::v6();
        for n in nodes.iter() {
            if let Some(net) = n.pod_cidr_v6 {
                held6.insert(net, ());
            }
        }
        for node in nodes.iter_mut().filter(|n| !n.pod_cidr_v6_pinned) {
            let cidr = pool6.pick(&node.name, &held6).ok_or_else(|| {
                exhausted(
                    node,
                    "cluster-cidr-v6",
                    cluster6.to_string(),
                    prefix_v6,
                    pool6.slots(),
                    count,
                )
            })?;
            node.pod_cidr_v6 = Some(cidr.to_v6());
            held6.insert(cidr, ());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::core::topology::Topology;
    use std::path::Path;

    const KEYS: [&str; 4] = [
        "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=",
        "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=",
        "TDmrFMdp+9KD0qmAhTd1zCxf4e2ZfgXeiTP2K/MfaDE=",
        "nGIrUx5gW0SFzMu5twr3vZgk0n4gONFl9g9yqL4IRTg=",
    ];

    fn topo(names: &[&str], pinned: &[(&str, &str)]) -> Topology {
        let mut text = String::from("mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n");
        for (i, name) in names.iter().enumerate() {
            text.push_str(&format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{}\"\n",
                KEYS[i]
            ));
            if let Some((_, cidr)) = pinned.iter().find(|(n, _)| n == name) {
                text.push_str(&format!("pod-cidr = \"{cidr}\"\n"));
            }
        }
        Topology::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn cidr_of(t: &Topology, name: &str) -> String {
        t.node(name).unwrap().pod_cidr.to_string()
    }

    #[test]
    fn adding_a_node_at_the_end_moves_no_one() {
        let before = topo(&["a", "b", "c"], &[]);
        let after = topo(&["a", "b", "c", "d"], &[]);
        for n in ["a", "b", "c"] {
            assert_eq!(cidr_of(&before, n), cidr_of(&after, n));
        }
    }

    #[test]
    fn removing_a_node_moves_no_one_without_a_collision() {
        let before = topo(&["a", "b", "c", "d"], &[]);
        let after = topo(&["a", "c", "d"], &[]);
        for n in ["a", "c", "d"] {
            assert_eq!(cidr_of(&before, n), cidr_of(&after, n));
        }
    }

    #[test]
    fn pinned_cidrs_never_move_and_are_avoided_by_others() {
        let a_free = cidr_of(&topo(&["a"], &[]), "a");
        // pin b onto the slot a would prefer: a must go elsewhere, b stays put
        let t = topo(&["a", "b"], &[("b", &a_free)]);
        assert_eq!(cidr_of(&t, "b"), a_free);
        assert_ne!(cidr_of(&t, "a"), a_free);
        let t2 = topo(&["b"], &[("b", &a_free)]);
        assert_eq!(cidr_of(&t2, "b"), a_free);
    }

    #[test]
    fn every_assigned_cidr_is_a_distinct_slice_of_the_cluster() {
        let t = topo(&["n1", "n2", "n3", "n4"], &[]);
        let cidrs: std::collections::BTreeSet<_> = t.nodes.iter().map(|n| n.pod_cidr).collect();
        assert_eq!(cidrs.len(), 4);
        for n in &t.nodes {
            assert_eq!(n.pod_cidr.prefix_len(), 24);
            assert!(t.mesh.cluster_cidr.contains(&n.pod_cidr));
        }
    }

    #[test]
    fn the_tun_address_is_the_first_host_of_the_cidr() {
        assert_eq!(
            super::first_host_v4("10.244.7.0/24".parse().unwrap()).to_string(),
            "10.244.7.1"
        );
        assert_eq!(
            super::first_host_v6("fd00:1::/64".parse().unwrap()).to_string(),
            "fd00:1::1"
        );
    }

    /// `n` unpinned nodes with distinct keys in `cluster`.
    fn many(n: usize, cluster: &str) -> String {
        let mut text = format!("mode = \"full\"\ncluster-cidr = \"{cluster}\"\n");
        for i in 0..n {
            // from 2: the key 1 is u = 1, a low-order point the key parser refuses
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&(i as u32 + 2).to_le_bytes());
            let key = crate::core::key::PublicKey::from_bytes(b);
            text.push_str(&format!(
                "[[node]]\nname = \"n{i}\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{key}\"\n"
            ));
        }
        text
    }

    #[test]
    fn ten_thousand_nodes_fit_a_declared_larger_pool() {
        let t = Topology::parse(&many(10_000, "10.0.0.0/10"), Path::new("t.toml")).unwrap();
        let cidrs: std::collections::BTreeSet<_> = t.nodes.iter().map(|n| n.pod_cidr).collect();
        assert_eq!(cidrs.len(), 10_000);
        assert!(t
            .nodes
            .iter()
            .all(|n| t.mesh.cluster_cidr.contains(&n.pod_cidr)));
    }

    #[test]
    fn a_pool_too_small_is_refused_naming_its_field_and_line() {
        let err = Topology::parse(&many(257, "10.244.0.0/16"), Path::new("t.toml")).unwrap_err();
        let problems = err.problems();
        assert_eq!(problems.len(), 1, "{err}");
        let p = &problems[0];
        assert_eq!(p.field.as_deref(), Some("cluster-cidr"));
        assert_eq!(p.line, Some(2));
        assert_eq!(p.node.as_deref(), Some("n256"));
        assert!(
            p.message.contains("256 /24 slot(s) for 257 node(s)"),
            "{}",
            p.message
        );
    }
}
