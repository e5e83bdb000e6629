//! A node behind NAT (`lab.nat`, docs/nat.md section 6): its own router namespace between it and
//! its region's bridge.
//!
//! ```text
//!   region bridge ── P<i>v ══ eth0 [router P-r<i>] eth1 ══ eth0 [node]
//!                     172.31.R.H (the node's          192.168.1.1   192.168.1.2
//!                     underlay address, public side)
//! ```
//!
//! The router masquerades what leaves by `eth0`: plain `masquerade` keeps one outer port per
//! inside socket whatever the destination (endpoint-independent mapping), `masquerade
//! fully-random` draws a port per destination (endpoint-dependent, "symmetric"). Its UDP
//! conntrack timeouts are short so mappings expire within a test; they are per namespace.
//!
//! Like any NAT gateway's firewall, the router drops what arrives unsolicited on `eth0`. This
//! matters beyond realism: a packet the kernel tracks and delivers (to no listener) leaves an
//! entry behind, and when the node then sends to that packet's source, its own mapping's reply
//! tuple clashes with that entry, so masquerade moves it to another port. A hole punch whose
//! first datagram arrives before the node's own leaves would then meet a mapping that is no
//! longer endpoint-independent. Dropped in the filter hook, the entry is never confirmed.

use super::layout::{
    NodeLayout, RegionLayout, NAT_NODE_V4, NAT_NODE_V6, NAT_ROUTER_V4, NAT_ROUTER_V6,
};
use super::netns;
use super::LabError;
use crate::core::topology::LabNat;

/// The router's nftables table.
const TABLE: &str = "wmnat";
/// Seconds an unanswered UDP mapping lives in a router (the kernel's default, 30, is too long
/// for a test to wait out).
pub const UDP_TIMEOUT: u32 = 10;
/// Seconds a UDP mapping that saw traffic both ways lives (the kernel's default: 120).
pub const UDP_STREAM_TIMEOUT: u32 = 20;

/// Builds the router of `node` (whose namespaces exist, and whose router's `eth0` is already on
/// the region's bridge) and the node's side behind it.
pub fn build(region: &RegionLayout, node: &NodeLayout) -> Result<(), LabError> {
    let Some(nat) = &node.nat else {
        return Ok(());
    };
    let router = nat.router_ns.as_str();
    netns::sysctls_in(
        router,
        &[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ],
    )?;
    netns::ip_batch(Some(router), &router_side(region, node), false)?;
    netns::nft(router, &masquerade(nat.kind))?;
    // after the nat chain: it is what loads conntrack, and with it these sysctls
    netns::sysctls_in(
        router,
        &[
            (
                "net.netfilter.nf_conntrack_udp_timeout",
                &UDP_TIMEOUT.to_string(),
            ),
            (
                "net.netfilter.nf_conntrack_udp_timeout_stream",
                &UDP_STREAM_TIMEOUT.to_string(),
            ),
        ],
    )?;
    netns::ip_batch(Some(&node.ns), &node_side(), false)
}

/// The router's `ip -batch` lines: the node's underlay addresses on `eth0`, a default route
/// through the region's gateway, and the inside link with the node's `eth0` at its other end.
fn router_side(region: &RegionLayout, node: &NodeLayout) -> Vec<String> {
    let mtu = node.mtu;
    let mut lines = super::network::public_side(region, node);
    lines.extend([
        format!(
            "link add eth1 mtu {mtu} type veth peer name eth0 mtu {mtu} netns {}",
            node.ns
        ),
        format!("addr add {NAT_ROUTER_V4}/24 dev eth1"),
        format!("addr add {NAT_ROUTER_V6}/64 dev eth1 nodad"),
        "link set eth1 up".into(),
    ]);
    lines
}

/// The NATed node's `ip -batch` lines: its private addresses, the router as default gateway.
fn node_side() -> Vec<String> {
    vec![
        "link set lo up".into(),
        format!("addr add {NAT_NODE_V4}/24 dev eth0"),
        format!("addr add {NAT_NODE_V6}/64 dev eth0 nodad"),
        "link set eth0 gso_max_segs 1".into(),
        "link set eth0 up".into(),
        format!("route add default via {NAT_ROUTER_V4}"),
        format!("route add default via {NAT_ROUTER_V6}"),
    ]
}

/// The router's nftables script: masquerade what leaves by `eth0`, IPv4 and IPv6 alike.
fn masquerade(kind: LabNat) -> String {
    let flags = match kind {
        LabNat::Independent => "",
        LabNat::Dependent => " fully-random",
    };
    format!(
        "add table inet {TABLE}; \
         add chain inet {TABLE} post {{ type nat hook postrouting priority 100; policy accept; }}; \
         add rule inet {TABLE} post oifname \"eth0\" masquerade{flags}; \
         add chain inet {TABLE} inbound {{ type filter hook input priority 0; policy accept; }}; \
         add rule inet {TABLE} inbound iifname \"eth0\" ct state new drop; \
         add chain inet {TABLE} through {{ type filter hook forward priority 0; policy accept; }}; \
         add rule inet {TABLE} through iifname \"eth0\" ct state new drop"
    )
}

/// Forgets every mapping of a router (`conntrack -F`), as a NAT reboot or a timeout does: the
/// node's next datagram gets a fresh outer port (fresh for every destination when dependent).
pub fn flush(router_ns: &str) -> Result<(), LabError> {
    netns::run("ip", &["netns", "exec", router_ns, "conntrack", "-F"]).map(drop)
}

/// Gives a router a new public IPv4 address `to` in place of `from` (a DHCP renewal, a new
/// uplink): every mapping is forgotten, and the node's datagrams leave from the new address.
/// The default route goes with the old address and is put back.
pub fn renumber(
    router_ns: &str,
    from: std::net::Ipv4Addr,
    to: std::net::Ipv4Addr,
    gateway: std::net::Ipv4Addr,
) -> Result<(), LabError> {
    netns::ip_batch(
        Some(router_ns),
        &[
            format!("addr del {from}/24 dev eth0"),
            format!("addr add {to}/24 dev eth0"),
            format!("route replace default via {gateway}"),
        ],
        false,
    )?;
    flush(router_ns)
}

/// How many connections a router tracks (`conntrack -C`): its mappings.
pub fn mappings(router_ns: &str) -> Result<usize, LabError> {
    let out = netns::run("ip", &["netns", "exec", router_ns, "conntrack", "-C"])?;
    out.trim().parse().map_err(|_| LabError::Command {
        command: format!("ip netns exec {router_ns} conntrack -C"),
        stderr: format!("not a count: {out:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dependent_nat_draws_a_port_per_destination_and_the_independent_one_does_not() {
        assert!(masquerade(LabNat::Dependent).contains("masquerade fully-random;"));
        assert!(masquerade(LabNat::Independent).contains("masquerade;"));
        assert!(masquerade(LabNat::Independent).contains("iifname \"eth0\" ct state new drop"));
    }
}
