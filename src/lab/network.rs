//! Executes a [`Layout`]: namespaces, the core router's bridges, and one veth per node. Each
//! namespace is recorded in the state file right after it is created, so a build that fails
//! halfway leaves a state from which `lab down` (or `Drop`) removes exactly what exists.

use super::layout::{Layout, NodeLayout, RegionLayout, VOID_V4, VOID_V6};
use super::state::{LabState, StateDir};
use super::LabError;
use super::{nat, netns, vpc};

/// The core namespace's nftables table for the void subnets.
const VOID_TABLE: &str = "wmvoid";

/// Creates every namespace, then the core router with its bridges and every node's link, then
/// each node's addresses and routes. Each step is one `ip -batch` (one per node for the last),
/// so a 64-node lab costs about 70 processes instead of 700.
pub fn build(state: &mut LabState, dir: &StateDir) -> Result<(), LabError> {
    let layout = state.layout.clone();
    let all = layout.namespaces();
    let existing = netns::list()?;
    if let Some(ns) = all.iter().find(|ns| existing.contains(ns)) {
        return Err(LabError::Command {
            command: format!("ip netns add {ns}"),
            stderr: "namespace already exists (left by something else?)".into(),
        });
    }
    // Recorded before creation: deleting a namespace that does not exist is harmless, while
    // one created but not recorded would leak.
    state.namespaces.extend(all.iter().cloned());
    dir.save(state)?;
    let adds: Vec<String> = all.iter().map(|ns| format!("netns add {ns}")).collect();
    netns::ip_batch(None, &adds, false)?;
    let core = layout.core_ns.as_str();
    netns::sysctls_in(
        core,
        &[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ],
    )?;
    netns::ip_batch(Some(core), &core_router(&layout), false)?;
    if layout.absent > 0 {
        void(core)?;
    }
    for node in &layout.nodes {
        let region = layout
            .region(&node.region)
            .expect("layout regions cover every node");
        if node.nat.is_some() {
            nat::build(region, node)?;
        } else {
            netns::ip_batch(Some(&node.ns), &node_side(region, node), false)?;
        }
    }
    Ok(())
}

/// The router (`ip -n core -batch` lines): one bridge per region addressed as the region's
/// gateway, each node's veth with its other end (`eth0`) moved into the node, and the void
/// subnets that hold the endpoints of absent nodes.
fn core_router(layout: &Layout) -> Vec<String> {
    let mut lines = vec!["link set lo up".to_string()];
    for r in &layout.regions {
        lines.extend(region_bridge(r));
        lines.extend(vpc::bridge(r));
    }
    for node in &layout.nodes {
        let region = layout
            .region(&node.region)
            .expect("layout regions cover every node");
        lines.extend(node_veth(region, node));
        lines.extend(vpc::node_veth(region, node));
    }
    if layout.absent > 0 {
        lines.push(format!("route add local {VOID_V4} dev lo"));
        lines.push(format!("route add local {VOID_V6} dev lo"));
    }
    lines
}

/// A region's bridge in the core namespace, addressed as the region's gateway. Its MAC address
/// is set, not inherited: a bridge takes the lowest MAC of its ports, so a node joining later
/// (`lab join`) could change the gateway's MAC under the other nodes' ARP caches, and the node
/// whose veth lent the old one would have its frames to the gateway dropped as another host's
/// until its ARP entry expired (seen as a 20-second outage of one hub after a join).
fn region_bridge(r: &RegionLayout) -> Vec<String> {
    let b = &r.bridge;
    vec![
        format!(
            "link add {b} address 02:77:6d:00:00:{:02x} mtu {} type bridge",
            r.index, r.mtu
        ),
        format!("addr add {}/24 dev {b}", r.gateway_v4),
        format!("addr add {}/64 dev {b} nodad", r.gateway_v6),
        format!("link set {b} up"),
    ]
}

/// A node's veth: the core end on its region's bridge, the other end (`eth0`) in the node, or
/// in its NAT router when it has one (`nat.rs`).
fn node_veth(region: &RegionLayout, node: &NodeLayout) -> Vec<String> {
    let (v, mtu) = (&node.veth, node.mtu);
    let ns = node.nat.as_ref().map_or(&node.ns, |n| &n.router_ns);
    vec![
        format!("link add {v} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {ns}"),
        format!("link set {v} master {} up", region.bridge),
    ]
}

/// Adds one node to a running lab (`lab join`): its namespace (recorded first, as in
/// [`build`]), the region's bridge when the region is new, its veth, addresses and routes.
pub fn add_node(
    state: &mut LabState,
    dir: &StateDir,
    node: &NodeLayout,
    new_region: Option<&RegionLayout>,
) -> Result<(), LabError> {
    if netns::exists(&node.ns)? {
        return Err(LabError::Command {
            command: format!("ip netns add {}", node.ns),
            stderr: "namespace already exists (left by something else?)".into(),
        });
    }
    state.namespaces.push(node.ns.clone());
    dir.save(state)?;
    netns::ip(&["netns", "add", &node.ns])?;
    let region = state
        .layout
        .region(&node.region)
        .expect("the layout has the node's region")
        .clone();
    let mut lines = Vec::new();
    if new_region.is_some() {
        lines.extend(region_bridge(&region));
    }
    lines.extend(node_veth(&region, node));
    netns::ip_batch(Some(&state.layout.core_ns), &lines, false)?;
    netns::ip_batch(Some(&node.ns), &node_side(&region, node), false)
}

/// Drops whatever reaches the void subnets (made local by [`core_router`]) before any socket
/// or ICMP error could answer it.
fn void(core: &str) -> Result<(), LabError> {
    let script = format!(
        "add table inet {VOID_TABLE}; \
         add chain inet {VOID_TABLE} input {{ type filter hook input priority 0; policy accept; }}; \
         add rule inet {VOID_TABLE} input ip daddr {VOID_V4} drop; \
         add rule inet {VOID_TABLE} input ip6 daddr {VOID_V6} drop"
    );
    netns::nft(core, &script)
}

/// A node's side (`ip -n node -batch` lines): its public side, and its VPC link if any.
fn node_side(region: &RegionLayout, node: &NodeLayout) -> Vec<String> {
    let mut lines = public_side(region, node);
    lines.extend(vpc::node_side(node));
    lines
}

/// The `ip -batch` lines of a node's public side, in the namespace that holds its underlay
/// address (its own, or its NAT router's): addresses on `eth0`, default routes through the
/// region's gateway.
pub(super) fn public_side(region: &RegionLayout, node: &NodeLayout) -> Vec<String> {
    vec![
        "link set lo up".into(),
        format!("addr add {}/24 dev eth0", node.underlay_v4),
        format!("addr add {}/64 dev eth0 nodad", node.underlay_v6),
        // A real link carries single packets: make GSO trains (UDP GSO from the daemons, TSO)
        // be cut here, as a NIC would, so the inter-region black holes (`meta length`) see
        // each packet.
        "link set eth0 gso_max_segs 1".into(),
        "link set eth0 up".into(),
        format!("route add default via {}", region.gateway_v4),
        format!("route add default via {}", region.gateway_v6),
    ]
}

/// Deletes the recorded namespaces that exist, newest first (veths and bridges go with them),
/// in one `ip -force -batch`: it keeps going after a failure and reports it, so one stuck
/// namespace does not leak the rest.
pub fn teardown(namespaces: &[String]) -> Result<(), LabError> {
    let existing = netns::list()?;
    let deletes: Vec<String> = namespaces
        .iter()
        .rev()
        .filter(|ns| existing.contains(ns))
        .map(|ns| format!("netns delete {ns}"))
        .collect();
    netns::ip_batch(None, &deletes, true)
}
