//! Which of several peers carrying one prefix a node prefers: the redundant hubs of a region.
//!
//! Rendezvous hashing: each candidate gets a rank from a stable hash of (anchor, its node
//! name: names are unique and, unlike keys, survive a key rotation), and candidates are tried in ascending rank. The anchor is the prefix itself, or, where
//! the prefix holds one of this node's own pod CIDRs (a spoke's whole-cluster route), that pod
//! CIDR. So a spoke ranks its hubs by its own CIDR, and a remote hub ranks the same hubs for that
//! spoke's CIDR by that same CIDR: both ends of a flow pick the same hub, the return path is
//! the forward path, and an answered request proves the hub alive. Different spokes hash to
//! different hubs, which spreads a region's spokes over its hubs; when one hub fails only its
//! share moves, and it moves back when the hub returns.
//!
//! The hash is SHA-256, truncated: every node must compute the same order, on every platform
//! and in every version, so no seeded or platform-dependent hasher will do.

use ipnet::IpNet;

/// The address a node ranks a prefix's carriers by: its own pod CIDR where `prefix` holds it,
/// else the prefix.
pub fn anchor(prefix: IpNet, own_cidrs: &[IpNet]) -> IpNet {
    own_cidrs
        .iter()
        .copied()
        .filter(|own| prefix.contains(own))
        .max_by_key(IpNet::prefix_len)
        .unwrap_or(prefix)
}

/// The anchor a relay of another node's range `prefix` is ranked by: the lower of `prefix`
/// and this node's own pod CIDR of the same family. Both nodes of a pair compute the same,
/// so they pick the same relay (docs/nat.md, section 4).
pub fn pair_anchor(prefix: IpNet, own_cidrs: &[IpNet]) -> IpNet {
    let same_family = |own: &&IpNet| {
        matches!(
            (own, prefix),
            (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
        )
    };
    own_cidrs
        .iter()
        .find(same_family)
        .map_or(prefix, |own| prefix.min(*own))
}

/// A carrier's rank for `anchor`: lower is preferred.
pub fn rank(anchor: IpNet, carrier: &str) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    match anchor {
        IpNet::V4(n) => ctx.update(&n.network().octets()),
        IpNet::V6(n) => ctx.update(&n.network().octets()),
    }
    ctx.update(&[anchor.prefix_len()]);
    ctx.update(carrier.as_bytes());
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// Sorts `carriers` into preference order for `anchor` (ties, which SHA-256 makes
/// vanishingly rare, keep the given order).
pub fn order<T>(anchor: IpNet, carriers: &mut [T], name: impl Fn(&T) -> String) {
    carriers.sort_by_cached_key(|c| rank(anchor, &name(c)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn key(b: u8) -> String {
        format!("hub-{b}")
    }

    #[test]
    fn a_spoke_anchors_the_cluster_route_on_its_own_pod_cidr() {
        let own = [net("10.244.3.0/24"), net("fd10:244:0:3::/64")];
        assert_eq!(anchor(net("10.244.0.0/16"), &own), net("10.244.3.0/24"));
        assert_eq!(anchor(net("fd10:244::/56"), &own), net("fd10:244:0:3::/64"));
        assert_eq!(
            anchor(net("10.244.7.0/24"), &own),
            net("10.244.7.0/24"),
            "another node's prefix is its own anchor"
        );
    }

    #[test]
    fn both_ends_of_a_flow_pick_the_same_hub() {
        let hubs = [key(1), key(2), key(3)];
        let spoke_cidr = net("10.244.3.0/24");
        // the spoke, for its cluster route
        let mut at_spoke = hubs.clone();
        order(
            anchor(net("10.244.0.0/16"), &[spoke_cidr]),
            &mut at_spoke,
            |k| k.clone(),
        );
        // a remote hub, for the spoke's own prefix
        let mut at_remote = hubs.clone();
        order(
            anchor(spoke_cidr, &[net("10.244.9.0/24")]),
            &mut at_remote,
            |k| k.clone(),
        );
        assert_eq!(at_spoke, at_remote);
    }

    #[test]
    fn spokes_spread_over_their_hubs() {
        let hubs = [key(1), key(2)];
        let mut firsts = [0usize; 2];
        for i in 0..64u8 {
            let cidr = net(&format!("10.244.{i}.0/24"));
            let mut h = hubs.clone();
            order(cidr, &mut h, |k| k.clone());
            firsts[usize::from(h[0] == hubs[1])] += 1;
        }
        assert!(firsts[0] > 16 && firsts[1] > 16, "{firsts:?}");
    }

    #[test]
    fn the_order_is_fixed_across_versions() {
        // a mesh-wide contract: every node must agree, so the hash may never change; the
        // vector is SHA-256(10.244.3.0 ‖ 24 ‖ "hub-1"), first 8 bytes, big-endian
        assert_eq!(rank(net("10.244.3.0/24"), &key(1)), 0x0d04_b510_0c3b_e49c);
        let mut h = [key(1), key(2), key(3), key(4)];
        order(net("10.244.3.0/24"), &mut h, |k| k.clone());
        let ranks: Vec<u64> = h.iter().map(|k| rank(net("10.244.3.0/24"), k)).collect();
        assert!(ranks.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            rank(net("10.244.3.0/24"), &key(1)),
            rank(net("10.244.3.7/24"), &key(1)),
            "host bits do not matter"
        );
    }
}
