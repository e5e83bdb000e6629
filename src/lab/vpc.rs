//! A region's VPC (`lab.vpc = true`, docs/nat.md section 6): besides the region's bridge (the
//! public side, routed by the core), a second bridge in the core namespace without any address,
//! so only the region's nodes reach each other over it, at `172.28.<region>.<host>`.
//!
//! ```text
//!   vpc<R> (no address) ── P<i>p ══ eth1 [node]  172.28.R.H/24, fd28:R::H/64
//! ```
//!
//! [`set_link`] cuts a node's side of it (and restores it) while the mesh runs, for the
//! failover to the public side (`wiremesh lab vpc NODE --down`).

use super::layout::{NodeLayout, RegionLayout};
use super::netns;
use super::LabError;

/// The core's `ip -batch` lines of a region's VPC bridge (none when the region is no VPC).
/// Its MAC is fixed for the reason `network.rs` fixes the region bridge's.
pub fn bridge(r: &RegionLayout) -> Vec<String> {
    let Some(vpc) = &r.vpc else {
        return Vec::new();
    };
    let b = &vpc.bridge;
    vec![
        format!(
            "link add {b} address 02:77:6d:01:00:{:02x} mtu {} type bridge",
            r.index, r.mtu
        ),
        format!("link set {b} up"),
    ]
}

/// The core's lines of a node's VPC veth: the core end on the VPC bridge, `eth1` in the node.
pub fn node_veth(r: &RegionLayout, node: &NodeLayout) -> Vec<String> {
    let (Some(bridge), Some(vpc)) = (&r.vpc, &node.vpc) else {
        return Vec::new();
    };
    let (v, mtu) = (&vpc.veth, node.mtu);
    vec![
        format!(
            "link add {v} mtu {mtu} type veth peer name eth1 mtu {mtu} netns {}",
            node.ns
        ),
        format!("link set {v} master {} up", bridge.bridge),
    ]
}

/// The node's lines for its `eth1`: the VPC addresses, no route beyond the VPC's subnet.
pub fn node_side(node: &NodeLayout) -> Vec<String> {
    let Some(vpc) = &node.vpc else {
        return Vec::new();
    };
    vec![
        format!("addr add {}/24 dev eth1", vpc.v4),
        format!("addr add {}/64 dev eth1 nodad", vpc.v6),
        "link set eth1 gso_max_segs 1".into(),
        "link set eth1 up".into(),
    ]
}

/// Cuts (`up = false`) or restores a node's link to its region's VPC: its `eth1` goes down, so
/// the VPC bridge loses that port as when a cloud's private interface fails.
pub fn set_link(node: &NodeLayout, up: bool) -> Result<(), LabError> {
    if node.vpc.is_none() {
        return Err(LabError::Command {
            command: format!("lab vpc {}", node.name),
            stderr: format!("node '{}' is in no VPC region", node.name),
        });
    }
    let state = if up { "up" } else { "down" };
    netns::ip_in(&node.ns, &["link", "set", "eth1", state])
}
