//! Executes a [`Layout`]: namespaces, the core router's bridges, and one veth per node. Each
//! namespace is recorded in the state file right after it is created, so a build that fails
//! halfway leaves a state from which `lab down` (or `Drop`) removes exactly what exists.

use super::layout::{Layout, NodeLayout, RegionLayout};
use super::netns::{self, ip_in};
use super::state::{LabState, StateDir};
use super::LabError;

/// Creates the core namespace with its bridges, then every node namespace and its link.
pub fn build(state: &mut LabState, dir: &StateDir) -> Result<(), LabError> {
    let layout = state.layout.clone();
    create_ns(state, dir, &layout.core_ns)?;
    core_router(&layout)?;
    for node in &layout.nodes {
        create_ns(state, dir, &node.ns)?;
        let region = layout
            .region(&node.region)
            .expect("layout regions cover every node");
        node_link(&layout, region, node)?;
    }
    Ok(())
}

fn create_ns(state: &mut LabState, dir: &StateDir, ns: &str) -> Result<(), LabError> {
    if netns::exists(ns)? {
        return Err(LabError::Command {
            command: format!("ip netns add {ns}"),
            stderr: "namespace already exists (left by something else?)".into(),
        });
    }
    // Recorded before creation: deleting a namespace that does not exist is harmless, while
    // one created but not recorded would leak.
    state.namespaces.push(ns.to_string());
    dir.save(state)?;
    netns::add(ns)
}

/// The router: forwarding on, one bridge per region addressed as the region's gateway.
fn core_router(layout: &Layout) -> Result<(), LabError> {
    let ns = layout.core_ns.as_str();
    netns::sysctl_in(ns, "net.ipv4.ip_forward", "1")?;
    netns::sysctl_in(ns, "net.ipv6.conf.all.forwarding", "1")?;
    for r in &layout.regions {
        let mtu = r.mtu.to_string();
        ip_in(
            ns,
            &["link", "add", &r.bridge, "mtu", &mtu, "type", "bridge"],
        )?;
        ip_in(
            ns,
            &[
                "addr",
                "add",
                &format!("{}/24", r.gateway_v4),
                "dev",
                &r.bridge,
            ],
        )?;
        ip_in(
            ns,
            &[
                "addr",
                "add",
                &format!("{}/64", r.gateway_v6),
                "dev",
                &r.bridge,
                "nodad",
            ],
        )?;
        ip_in(ns, &["link", "set", &r.bridge, "up"])?;
    }
    Ok(())
}

/// A veth pair: `eth0` in the node, the other end on its region's bridge; addresses, MTU and
/// default routes through the region's gateway.
fn node_link(layout: &Layout, region: &RegionLayout, node: &NodeLayout) -> Result<(), LabError> {
    let core = layout.core_ns.as_str();
    let mtu = node.mtu.to_string();
    ip_in(
        core,
        &[
            "link", "add", &node.veth, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "mtu",
            &mtu, "netns", &node.ns,
        ],
    )?;
    ip_in(
        core,
        &["link", "set", &node.veth, "master", &region.bridge, "up"],
    )?;
    let ns = node.ns.as_str();
    ip_in(
        ns,
        &[
            "addr",
            "add",
            &format!("{}/24", node.underlay_v4),
            "dev",
            "eth0",
        ],
    )?;
    ip_in(
        ns,
        &[
            "addr",
            "add",
            &format!("{}/64", node.underlay_v6),
            "dev",
            "eth0",
            "nodad",
        ],
    )?;
    // A real link carries single packets: make GSO trains (UDP GSO from the daemons, TSO) be
    // cut here, as a NIC would, so the inter-region black holes (`meta length`) see each packet.
    ip_in(ns, &["link", "set", "eth0", "gso_max_segs", "1"])?;
    ip_in(ns, &["link", "set", "eth0", "up"])?;
    ip_in(
        ns,
        &[
            "route",
            "add",
            "default",
            "via",
            &region.gateway_v4.to_string(),
        ],
    )?;
    ip_in(
        ns,
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &region.gateway_v6.to_string(),
        ],
    )?;
    Ok(())
}

/// Deletes the recorded namespaces, newest first (veths and bridges go with them). Keeps going
/// after a failure and returns the first error, so one stuck namespace does not leak the rest.
pub fn teardown(namespaces: &[String]) -> Result<(), LabError> {
    let mut first = None;
    for ns in namespaces.iter().rev() {
        if let Err(e) = netns::delete(ns) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
