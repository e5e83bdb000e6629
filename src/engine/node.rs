//! What the current plan says about this node itself: its own ranges and addresses, its port,
//! its tunnel MTU and whether it discovers path MTUs. Swapped whole by a reload, so the data
//! path reads one consistent set.

use crate::core::plan::Plan;
use crate::core::routing::PrefixTable;
use ipnet::IpNet;
use std::net::IpAddr;

pub(super) struct NodeSettings {
    /// This node's own pod CIDRs: packets for them go to the tun device, never to a peer.
    pub local: PrefixTable<()>,
    /// This node's own overlay addresses: control messages to them are consumed here.
    pub own_addrs: Vec<IpAddr>,
    pub listen_port: u16,
    /// The plan's tunnel MTU, for metrics and status (the tun device is set to it).
    pub mtu: u16,
    pub discovery: DiscoverySettings,
    /// This node's configured underlay addresses, to tell "no NAT" (`reflexive.rs`).
    pub own_endpoints: Vec<std::net::SocketAddr>,
}

/// What the plan says about probing.
#[derive(Debug, Clone, Copy)]
pub(super) struct DiscoverySettings {
    pub enabled: bool,
    /// Largest outer packet the local underlay carries.
    pub ceiling: u16,
}

impl NodeSettings {
    pub fn of(plan: &Plan) -> Self {
        Self {
            local: local_table(&plan.pod_cidrs),
            own_addrs: plan.addresses.clone(),
            listen_port: plan.listen_port,
            mtu: plan.mtu,
            discovery: DiscoverySettings {
                enabled: plan.discover_mtu,
                ceiling: plan.underlay_mtu,
            },
            own_endpoints: plan.own_endpoints.clone(),
        }
    }
}

fn local_table(cidrs: &[IpNet]) -> PrefixTable<()> {
    let mut t = PrefixTable::new();
    for c in cidrs {
        t.insert(*c, ());
    }
    t
}
