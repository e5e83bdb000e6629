//! The topology file as written by people: serde structs, checked by [`super::validate`].
//!
//! Every field here is documented in `docs/topology.md`; unknown fields are errors, so a typo
//! (`endpiont`) is caught instead of silently ignored.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTopology {
    /// `full` (every node peers with every node) or `hub` (spokes reach the rest via hubs).
    pub mode: Spanned<String>,
    /// The overlay's IPv4 range; every node's pod CIDR lies inside it.
    pub cluster_cidr: Spanned<String>,
    /// Prefix length of an automatically assigned IPv4 pod CIDR (default 24).
    pub node_prefix: Option<Spanned<u8>>,
    /// Optional IPv6 overlay range, for dual-stack pod CIDRs.
    pub cluster_cidr_v6: Option<Spanned<String>>,
    /// Prefix length of an automatically assigned IPv6 pod CIDR (default 64).
    pub node_prefix_v6: Option<Spanned<u8>>,
    /// UDP port every node listens on unless the node says otherwise (default 51820).
    pub listen_port: Option<Spanned<u16>>,
    /// Seconds between keepalives to each peer; 0 or absent turns them off.
    pub persistent_keepalive: Option<Spanned<u16>>,
    /// Tunnel MTU; absent means derived from the regions' underlay MTUs.
    pub mtu: Option<Spanned<u16>>,
    /// Per-region settings, keyed by region name.
    #[serde(default)]
    pub region: BTreeMap<String, Spanned<RawRegion>>,
    /// The nodes, in the order their pod CIDRs are assigned.
    #[serde(default)]
    pub node: Vec<Spanned<RawNode>>,
    /// Settings only `wiremesh lab` uses (simulated links); daemons ignore them.
    pub lab: Option<RawLab>,
    /// What a packet no `allow` or `deny` policy matches gets: `allow` (the default, so files
    /// without policies keep working) or `deny`. See docs/policy.md.
    pub default_action: Option<Spanned<String>>,
    /// `enforce` (the default) or `audit`: count and log what would be denied, drop nothing.
    pub policy_mode: Option<Spanned<String>>,
    /// Named sets of CIDRs that policy selectors can name, keyed by set name.
    #[serde(default)]
    pub cidr_set: BTreeMap<String, Spanned<RawCidrSet>>,
    /// Who may reach whom; the first matching policy by `order` decides.
    #[serde(default)]
    pub policy: Vec<Spanned<RawPolicy>>,
}

/// The policy part of a topology file alone: the registry's policy key holds it, and
/// `wiremesh registry policy set` reads it (docs/registry.md). The same fields as the file's top
/// level, checked by the same code (`policies.rs`), so a policy means the same wherever it lives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPolicyPart {
    /// As the file's `default-action`: `allow` (the default) or `deny`.
    pub default_action: Option<Spanned<String>>,
    /// As the file's `policy-mode`: `enforce` (the default) or `audit`.
    pub policy_mode: Option<Spanned<String>>,
    /// Named sets of CIDRs, keyed by set name.
    #[serde(default)]
    pub cidr_set: BTreeMap<String, Spanned<RawCidrSet>>,
    /// The rules.
    #[serde(default)]
    pub policy: Vec<Spanned<RawPolicy>>,
}

/// A named set of CIDRs (`[cidr-set.NAME]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCidrSet {
    /// IPv4 or IPv6 network addresses.
    pub cidrs: Vec<Spanned<String>>,
}

/// One `[[policy]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPolicy {
    /// Unique name, by the node-name rule; counters and errors use it.
    pub name: Spanned<String>,
    /// Unique rank: the first matching rule by order (lowest first) decides.
    pub order: Spanned<i64>,
    /// `allow`, `deny`, or `log` (count and go on to the next rule).
    pub action: Spanned<String>,
    /// With `deny`: answer with ICMP administratively prohibited instead of dropping silently.
    pub reject: Option<Spanned<bool>>,
    /// Sources; absent means any address.
    pub from: Option<Spanned<RawSelector>>,
    /// Destinations; absent means any address.
    pub to: Option<Spanned<RawSelector>>,
    /// `tcp`, `udp` or `icmp`; absent means every protocol.
    pub protocol: Option<Spanned<String>>,
    /// Destination ports (tcp or udp): numbers, `"5432"` or ranges `"8000-8100"`.
    pub ports: Option<Spanned<Vec<Spanned<toml::Value>>>>,
}

/// Addresses a policy selects: nodes by attributes and labels, plus CIDRs, plus named sets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSelector {
    /// Nodes with this name.
    pub name: Option<Spanned<String>>,
    /// Nodes in this cloud.
    pub cloud: Option<Spanned<String>>,
    /// Nodes in this region.
    pub region: Option<Spanned<String>>,
    /// Nodes that carry every one of these labels with these values.
    pub labels: Option<BTreeMap<String, Spanned<String>>>,
    /// Addresses by CIDR, IPv4 or IPv6.
    pub cidrs: Option<Vec<Spanned<String>>>,
    /// Names of `[cidr-set]`s.
    pub cidr_sets: Option<Vec<Spanned<String>>>,
}

/// The lab's simulated network between regions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLab {
    /// Limits on the links between two regions.
    #[serde(default)]
    pub link: Vec<Spanned<RawLink>>,
}

/// One inter-region link of the lab.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLink {
    /// The two regions the link joins (either direction).
    pub regions: [String; 2],
    /// Packets above this size are refused by the router with ICMP "fragmentation needed",
    /// as a real link with a smaller MTU does.
    pub mtu: Option<u16>,
    /// Packets above this size vanish without any ICMP: a black hole, as on paths whose
    /// middleboxes drop ICMP.
    pub black_hole_above: Option<u16>,
}

/// One entry of a node's `endpoints`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub address: Spanned<String>,
    /// The network in which only this address is reachable; absent: public.
    pub scope: Option<Spanned<String>>,
}

/// Settings shared by every node in one region.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRegion {
    /// MTU of the underlay network in this region (1500, 1460 on GCP, ...).
    pub underlay_mtu: Option<Spanned<u16>>,
    /// Settings only `wiremesh lab` uses (`lab.vpc`); daemons ignore them.
    pub lab: Option<RawRegionLab>,
}

/// A region's lab-only settings (`[region.NAME] lab.vpc = true`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRegionLab {
    /// The lab joins the region's nodes by a private bridge too, as a cloud's VPC does, and
    /// gives each an endpoint scoped to it.
    pub vpc: Option<Spanned<bool>>,
}

/// A node's lab-only settings (`lab.nat = "independent"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNodeLab {
    /// `independent` or `dependent`: the lab puts the node behind a NAT router of that
    /// mapping behaviour (docs/nat.md, section 6).
    pub nat: Option<Spanned<String>>,
}

/// One node of the mesh.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNode {
    /// Unique name: letters, digits, `-`, `_`, `.`; at most 63 characters.
    pub name: Spanned<String>,
    /// Cloud or site the node runs in (`aws`, `gcp`, `onprem-fra`); used for grouping.
    pub cloud: Spanned<String>,
    /// Region; in hub mode spokes attach to their region's hubs.
    pub region: Spanned<String>,
    /// Where peers send to: `ip:port`, `[ipv6]:port`, `dns-name:port`; port defaults to the
    /// listen port. Absent for a node behind NAT: peers learn its address when it sends.
    pub endpoint: Option<Spanned<String>>,
    /// Several endpoints, each optionally with the scope (VPC, LAN) it is reachable in
    /// (docs/nat.md); instead of `endpoint`.
    pub endpoints: Option<Spanned<Vec<RawEndpoint>>>,
    /// The node's WireGuard public key, standard base64.
    pub public_key: Spanned<String>,
    /// Fixed IPv4 pod CIDR. Absent: assigned from the cluster CIDR (see docs/topology.md).
    pub pod_cidr: Option<Spanned<String>>,
    /// Fixed IPv6 pod CIDR, when the cluster is dual stack.
    pub pod_cidr_v6: Option<Spanned<String>>,
    /// In hub mode, this node relays for its region.
    #[serde(default)]
    pub hub: bool,
    /// UDP port this node listens on, when it differs from the mesh's.
    pub listen_port: Option<Spanned<u16>>,
    /// `key = "value"` pairs that policy selectors match (Kubernetes label rules).
    pub labels: Option<BTreeMap<String, Spanned<String>>>,
    /// Settings only `wiremesh lab` uses (`lab.nat`); daemons ignore them.
    pub lab: Option<RawNodeLab>,
}
