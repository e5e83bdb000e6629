//! What one node must configure: its peers, each peer's AllowedIPs and endpoint, and the routes
//! that send other nodes' pod CIDRs into the tun device.
//!
//! - `full`: every node peers with every other; a peer's AllowedIPs are its pod CIDRs.
//! - `hub`: a spoke peers with its region's hubs and lets each of them carry the whole cluster
//!   (the engine picks a healthy hub when there are several). A hub peers with its region's
//!   spokes and hubs (their own CIDRs) and with every other region's hubs (the CIDRs of that
//!   whole region). Spoke → hub → hub → spoke.

use super::topology::{Endpoint, MeshMode, Node, Topology, TopologyError};
use crate::constants::{MIN_TUNNEL_MTU, OVERHEAD_V4, OVERHEAD_V6};
use crate::core::key::PublicKey;
use ipnet::IpNet;
use serde::Serialize;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Role of a peer relative to the planning node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerRole {
    /// A direct peer in a full mesh, or a spoke seen from its hub.
    Direct,
    /// A hub this node relays through or with.
    Hub,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerPlan {
    pub name: String,
    #[serde(serialize_with = "as_display")]
    pub public_key: PublicKey,
    #[serde(serialize_with = "opt_display")]
    pub endpoint: Option<Endpoint>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
    pub role: PeerRole,
    pub region: String,
    pub cloud: String,
}

/// A route for one destination node's pod CIDR into the tun device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RoutePlan {
    pub destination: IpNet,
    /// The node that owns the destination.
    pub node: String,
    /// The peer the packet is sent to first (the node itself in full mode, a hub otherwise).
    pub via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    pub node: String,
    pub mode: MeshMode,
    #[serde(serialize_with = "as_display")]
    pub public_key: PublicKey,
    pub listen_port: u16,
    /// Addresses of the tun device, each with its pod CIDR's prefix length replaced by a host
    /// prefix: the pod CIDR itself is left to the node's container network.
    pub addresses: Vec<IpAddr>,
    pub pod_cidrs: Vec<IpNet>,
    pub mtu: u16,
    pub peers: Vec<PeerPlan>,
    pub routes: Vec<RoutePlan>,
}

fn as_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn opt_display<T: std::fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

impl Plan {
    /// Computes the plan of `node_name`. Cost is linear in the number of nodes.
    pub fn compute(topo: &Topology, node_name: &str) -> Result<Plan, TopologyError> {
        let me = topo.node(node_name)?;
        let others = || topo.nodes.iter().filter(move |n| n.name != me.name);
        let peer = |n: &Node, allowed: Vec<IpNet>, role| PeerPlan {
            name: n.name.clone(),
            public_key: n.public_key,
            endpoint: n.endpoint.clone(),
            allowed_ips: allowed,
            persistent_keepalive: topo.persistent_keepalive,
            role,
            region: n.region.clone(),
            cloud: n.cloud.clone(),
        };
        let mut peers = Vec::new();
        let mut routes = Vec::new();
        match topo.mode {
            MeshMode::Full => {
                for n in others() {
                    peers.push(peer(n, n.pod_cidrs(), PeerRole::Direct));
                    routes.extend(n.pod_cidrs().into_iter().map(|d| RoutePlan {
                        destination: d,
                        node: n.name.clone(),
                        via: n.name.clone(),
                    }));
                }
            }
            MeshMode::Hub if !me.hub => {
                let mut cluster = vec![IpNet::V4(topo.cluster_cidr)];
                cluster.extend(topo.cluster_cidr_v6.map(IpNet::V6));
                let hubs: Vec<&Node> = topo.hubs_of(&me.region).collect();
                for h in &hubs {
                    let mut allowed = h.pod_cidrs();
                    allowed.extend(cluster.iter().copied());
                    peers.push(peer(h, allowed, PeerRole::Hub));
                }
                let first_hub = hubs.first().map(|h| h.name.clone()).unwrap_or_default();
                for n in others() {
                    let via = if n.hub && n.region == me.region {
                        n.name.clone()
                    } else {
                        first_hub.clone()
                    };
                    routes.extend(n.pod_cidrs().into_iter().map(|d| RoutePlan {
                        destination: d,
                        node: n.name.clone(),
                        via: via.clone(),
                    }));
                }
            }
            MeshMode::Hub => {
                for n in others() {
                    if n.region == me.region {
                        let role = if n.hub {
                            PeerRole::Hub
                        } else {
                            PeerRole::Direct
                        };
                        peers.push(peer(n, n.pod_cidrs(), role));
                    } else if n.hub {
                        let region_cidrs = topo
                            .nodes
                            .iter()
                            .filter(|m| m.region == n.region)
                            .flat_map(|m| m.pod_cidrs())
                            .collect();
                        peers.push(peer(n, region_cidrs, PeerRole::Hub));
                    }
                }
                for n in others() {
                    let via = if n.region == me.region {
                        n.name.clone()
                    } else {
                        topo.hubs_of(&n.region)
                            .next()
                            .map(|h| h.name.clone())
                            .unwrap_or_default()
                    };
                    routes.extend(n.pod_cidrs().into_iter().map(|d| RoutePlan {
                        destination: d,
                        node: n.name.clone(),
                        via: via.clone(),
                    }));
                }
            }
        }
        Ok(Plan {
            node: me.name.clone(),
            mode: topo.mode,
            public_key: me.public_key,
            listen_port: me.listen_port,
            addresses: me.overlay_addrs(),
            pod_cidrs: me.pod_cidrs(),
            mtu: starting_mtu(topo, me, &peers),
            peers,
            routes,
        })
    }

    /// A `wg setconf` file for this node, so a host running stock WireGuard can take its place.
    /// Stock WireGuard moves an AllowedIP to the last peer that names it, so where hub-mode
    /// AllowedIPs overlap, only the first peer keeps the shared range.
    pub fn to_wg_config(&self, private_key_path: Option<&str>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# wiremesh plan for node '{}' ({} mode)",
            self.node,
            format!("{:?}", self.mode).to_lowercase()
        );
        let _ = writeln!(
            out,
            "# Interface addresses: {}; MTU {}",
            join(&self.addresses),
            self.mtu
        );
        let _ = writeln!(
            out,
            "# Routes to add through the interface: {}",
            join(&self.route_destinations())
        );
        let _ = writeln!(out, "[Interface]");
        match private_key_path {
            Some(p) => {
                let _ = writeln!(out, "# PrivateKey: set with `wg set <if> private-key {p}`");
            }
            None => {
                let _ = writeln!(
                    out,
                    "# PrivateKey: set with `wg set <if> private-key <file>`"
                );
            }
        }
        let _ = writeln!(out, "ListenPort = {}", self.listen_port);
        let mut claimed: Vec<IpNet> = Vec::new();
        for p in &self.peers {
            let _ = writeln!(out, "\n# {} ({}/{})", p.name, p.cloud, p.region);
            let _ = writeln!(out, "[Peer]");
            let _ = writeln!(out, "PublicKey = {}", p.public_key);
            let allowed: Vec<IpNet> = p
                .allowed_ips
                .iter()
                .filter(|a| !claimed.contains(a))
                .copied()
                .collect();
            claimed.extend(allowed.iter().copied());
            let _ = writeln!(out, "AllowedIPs = {}", join(&allowed));
            if let Some(e) = &p.endpoint {
                let _ = writeln!(out, "Endpoint = {e}");
            }
            if let Some(k) = p.persistent_keepalive {
                let _ = writeln!(out, "PersistentKeepalive = {k}");
            }
        }
        out
    }

    fn route_destinations(&self) -> Vec<IpNet> {
        self.routes.iter().map(|r| r.destination).collect()
    }

    /// Human-readable tables for `wiremesh plan`.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "node {} ({} mode), public key {}",
            self.node,
            format!("{:?}", self.mode).to_lowercase(),
            self.public_key
        );
        let _ = writeln!(
            out,
            "addresses {}  pod CIDRs {}  MTU {}  listen port {}",
            join(&self.addresses),
            join(&self.pod_cidrs),
            self.mtu,
            self.listen_port
        );
        let _ = writeln!(
            out,
            "\n{:<20} {:<6} {:<24} {:<28} ALLOWED IPS",
            "PEER", "ROLE", "ENDPOINT", "PUBLIC KEY"
        );
        for p in &self.peers {
            let role = match p.role {
                PeerRole::Hub => "hub",
                PeerRole::Direct => "direct",
            };
            let ep = p
                .endpoint
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "(learned)".into());
            let _ = writeln!(
                out,
                "{:<20} {:<6} {:<24} {:<28} {}",
                p.name,
                role,
                ep,
                p.public_key.short() + "…",
                join(&p.allowed_ips)
            );
        }
        let _ = writeln!(out, "\n{:<24} {:<20} VIA", "ROUTE", "NODE");
        for r in &self.routes {
            let _ = writeln!(
                out,
                "{:<24} {:<20} {}",
                r.destination.to_string(),
                r.node,
                r.via
            );
        }
        out
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The MTU a node starts with before path-MTU discovery: the smallest underlay MTU among its own
/// region and its peers' regions, minus WireGuard's overhead (IPv6's when any endpoint is IPv6).
fn starting_mtu(topo: &Topology, me: &Node, peers: &[PeerPlan]) -> u16 {
    if let Some(mtu) = topo.mtu {
        return mtu;
    }
    let underlay = peers
        .iter()
        .map(|p| topo.underlay_mtu(&p.region))
        .chain(std::iter::once(topo.underlay_mtu(&me.region)))
        .min()
        .unwrap_or(crate::constants::DEFAULT_UNDERLAY_MTU);
    let v6 = peers
        .iter()
        .filter_map(|p| p.endpoint.as_ref())
        .chain(me.endpoint.as_ref())
        .any(|e| {
            matches!(e, Endpoint::Addr(a) if a.is_ipv6()) || matches!(e, Endpoint::Dns { .. })
        });
    let overhead = if v6 { OVERHEAD_V6 } else { OVERHEAD_V4 };
    underlay
        .saturating_sub(overhead)
        .max(MIN_TUNNEL_MTU.min(underlay))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::key::PrivateKey;
    use std::path::Path;

    /// Builds a topology text from (name, region, hub) triples with fresh keys.
    fn topo(mode: &str, nodes: &[(&str, &str, bool)]) -> Topology {
        let mut text = format!("mode = \"{mode}\"\ncluster-cidr = \"10.244.0.0/16\"\n");
        for (i, (name, region, hub)) in nodes.iter().enumerate() {
            text.push_str(&format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"{region}\"\nendpoint = \"192.0.2.{}:51820\"\npublic-key = \"{}\"\npod-cidr = \"10.244.{}.0/24\"\nhub = {hub}\n",
                i + 1,
                PrivateKey::generate().public_key(),
                i + 1
            ));
        }
        Topology::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn names(p: &Plan) -> Vec<&str> {
        p.peers.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn full_mesh_peers_with_every_other_node_and_routes_their_cidrs() {
        let t = topo(
            "full",
            &[
                ("a", "r1", false),
                ("b", "r1", false),
                ("c", "r2", false),
                ("d", "r3", false),
            ],
        );
        let p = Plan::compute(&t, "b").unwrap();
        assert_eq!(names(&p), ["a", "c", "d"]);
        assert_eq!(
            p.peers[1].allowed_ips,
            vec!["10.244.3.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(p.routes.len(), 3);
        assert_eq!(p.addresses, vec!["10.244.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(p.mtu, 1440);
    }

    #[test]
    fn a_spoke_peers_only_with_its_regions_hub_which_carries_the_cluster() {
        let t = topo(
            "hub",
            &[
                ("h1", "r1", true),
                ("s1", "r1", false),
                ("h2", "r2", true),
                ("s2", "r2", false),
            ],
        );
        let p = Plan::compute(&t, "s1").unwrap();
        assert_eq!(names(&p), ["h1"]);
        let want: Vec<IpNet> = vec![
            "10.244.1.0/24".parse().unwrap(),
            "10.244.0.0/16".parse().unwrap(),
        ];
        assert_eq!(p.peers[0].allowed_ips, want);
        assert!(p.routes.iter().all(|r| r.via == "h1"));
        assert_eq!(p.routes.len(), 3);
    }

    #[test]
    fn a_hub_peers_with_its_spokes_and_other_hubs_carrying_their_regions() {
        let t = topo(
            "hub",
            &[
                ("h1", "r1", true),
                ("s1", "r1", false),
                ("h2", "r2", true),
                ("s2", "r2", false),
                ("s3", "r2", false),
            ],
        );
        let p = Plan::compute(&t, "h1").unwrap();
        assert_eq!(names(&p), ["s1", "h2"]);
        let h2 = &p.peers[1];
        assert_eq!(h2.role, PeerRole::Hub);
        let want: Vec<IpNet> = ["10.244.3.0/24", "10.244.4.0/24", "10.244.5.0/24"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(h2.allowed_ips, want);
        let to_s3 = p.routes.iter().find(|r| r.node == "s3").unwrap();
        assert_eq!(to_s3.via, "h2");
    }

    #[test]
    fn wg_config_never_gives_one_range_to_two_peers() {
        let t = topo(
            "hub",
            &[("h1", "r1", true), ("h1b", "r1", true), ("s1", "r1", false)],
        );
        let p = Plan::compute(&t, "s1").unwrap();
        let conf = p.to_wg_config(None);
        assert_eq!(conf.matches("10.244.0.0/16").count(), 1, "{conf}");
        assert_eq!(conf.matches("[Peer]").count(), 2);
    }

    #[test]
    fn unknown_node_is_an_error() {
        let t = topo("full", &[("a", "r1", false)]);
        assert!(matches!(Plan::compute(&t, "zz"), Err(TopologyError::UnknownNode(n)) if n == "zz"));
    }
}
