//! What one node must configure: its peers, each peer's AllowedIPs and endpoint, and the routes
//! that send other nodes' pod CIDRs into the tun device.
//!
//! - `full`: every node peers with every other; a peer's AllowedIPs are its pod CIDRs.
//! - `hub`: a spoke peers with its region's hubs and lets each of them carry the whole cluster
//!   (the engine picks one that answers when there are several). A hub peers with its region's
//!   spokes and hubs (their own CIDRs) and with every other region's hubs, each carrying its
//!   own CIDRs and its region's spokes'. Spoke → hub → hub → spoke. A hub's own CIDRs are
//!   carried by that hub alone, so no hub ever forwards to another hub of its own region, and
//!   every shared range (a spoke's CIDRs at a remote hub, the cluster at a spoke) is shared
//!   only by hubs that may each legitimately carry it: the source check stays exact.

mod relays;
mod render;

pub use relays::{needs_relay, RELAYS_PER_PAIR};

use super::topology::{
    only_one_public, Candidate, Endpoint, MeshMode, Node, Topology, TopologyError,
};
use crate::constants::{MIN_TUNNEL_MTU, OVERHEAD_V4, OVERHEAD_V6};
use crate::core::key::PublicKey;
use crate::core::preference;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::HashMap;
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
    /// Every endpoint to try, best first (`endpoint` is the first): the peer's addresses in
    /// scopes this node shares, then its public one (docs/nat.md, section 1).
    #[serde(skip_serializing_if = "only_one_public")]
    pub candidates: Vec<Candidate>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
    pub role: PeerRole,
    pub region: String,
    pub cloud: String,
    /// The peer node's own overlay addresses: where in-tunnel control messages go.
    pub overlay_addrs: Vec<IpAddr>,
    /// Tunnel MTU to this peer before discovery: the smaller of the two regions' underlay MTUs
    /// minus WireGuard's overhead.
    pub mtu: u16,
}

/// A peer that relays for this node: other nodes' ranges it carries standing by, used only
/// while those nodes do not answer directly (a full mesh's NATed pairs, docs/nat.md section 4).
/// Kept beside the peers, not in each: nearly no peer relays, and a hub plans ten thousand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RelayPlan {
    /// The relaying peer's name (one of `Plan::peers`).
    pub relay: String,
    pub ranges: Vec<IpNet>,
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
    /// Starting MTU for this destination: the smallest over every hop (spoke → hub → hub →
    /// spoke), from the regions' underlay MTUs.
    pub mtu: u16,
    /// The smallest MTU of the hops after the first (behind a hub); `None` for a direct peer.
    /// Discovery measures the first hop; this bounds the rest.
    pub beyond_mtu: Option<u16>,
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
    /// The mesh's cluster CIDRs (IPv4, then IPv6 when dual stack): every node's pod CIDR lies
    /// in them, so a container's traffic to them stays unmasqueraded (`core::node_state`).
    pub cluster_cidrs: Vec<IpNet>,
    /// MTU of the tun device: the largest any peer could carry (own underlay minus IPv4
    /// overhead). Each route then carries the MTU of its own path.
    pub mtu: u16,
    /// This node's region's underlay MTU: the ceiling for path-MTU discovery.
    pub underlay_mtu: u16,
    /// False when the topology fixes `mtu`: then no path is probed.
    pub discover_mtu: bool,
    /// This node's own configured addresses (every endpoint with an address): a peer that
    /// sees our datagrams come from one of them shows there is no NAT (docs/nat.md, 2).
    #[serde(skip)]
    pub own_endpoints: Vec<std::net::SocketAddr>,
    pub peers: Vec<PeerPlan>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<RelayPlan>,
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

/// The hubs of each region, in file order: found once per plan, since routing through a hub
/// asks for them once per destination, and a scan of every node per ask made a plan
/// quadratic in the number of nodes.
struct Hubs<'a>(HashMap<&'a str, Vec<&'a Node>>);

impl<'a> Hubs<'a> {
    fn of(topo: &'a Topology) -> Self {
        let mut hubs: HashMap<&str, Vec<&Node>> = HashMap::new();
        if topo.mesh.mode == MeshMode::Hub {
            for n in topo.nodes.iter().filter(|n| n.hub) {
                hubs.entry(n.region.as_str()).or_default().push(n);
            }
        }
        Hubs(hubs)
    }

    fn of_region(&self, region: &str) -> &[&'a Node] {
        self.0.get(region).map_or(&[], Vec::as_slice)
    }

    /// The hub of `region` that carries the spoke `spoke`'s traffic while every hub answers:
    /// the engine's first choice among them (see `core::preference`), so the plan shows the
    /// path the packets take.
    fn of_spoke(&self, region: &str, spoke: &Node) -> Option<&'a Node> {
        let anchor = IpNet::V4(spoke.pod_cidr);
        self.of_region(region)
            .iter()
            .copied()
            .min_by_key(|h| preference::rank(anchor, &h.name))
    }
}

impl RoutePlan {
    /// The MTU the route carries once the first hop's path MTU is known: the daemon sets it on
    /// the kernel route and `check` probes with it. Discovery measures only the first hop, so
    /// the plan's estimate of the hops behind it still bounds the result.
    pub fn mtu_with_first_hop(&self, first_hop: Option<u16>) -> u16 {
        first_hop
            .unwrap_or(self.mtu)
            .min(self.beyond_mtu.unwrap_or(u16::MAX))
    }
}

impl Plan {
    /// Computes the plan of `node_name`. Cost is linear in the number of nodes (after finding
    /// `node_name`, itself a linear scan): every other node is visited a constant number of
    /// times, and the hubs and regions it needs are looked up, never searched for.
    pub fn compute(topo: &Topology, node_name: &str) -> Result<Plan, TopologyError> {
        let me = topo.node(node_name)?;
        let hubs = Hubs::of(topo);
        let others = || topo.nodes.iter().filter(move |n| !std::ptr::eq(*n, me));
        let peer = |n: &Node, allowed: Vec<IpNet>, role| PeerPlan {
            name: n.name.clone(),
            public_key: n.public_key,
            endpoint: n.endpoint_for(me).cloned(),
            candidates: n.candidates_for(me),
            allowed_ips: allowed,
            persistent_keepalive: topo.mesh.persistent_keepalive,
            role,
            region: n.region.clone(),
            cloud: n.cloud.clone(),
            overlay_addrs: n.overlay_addrs(),
            mtu: pair_mtu(topo, me, n),
        };
        let mut peers = Vec::new();
        // (destination node, first hop) for every other node
        let mut hops: Vec<(&Node, &Node)> = Vec::with_capacity(topo.nodes.len());
        // relayed destination → the smallest MTU over its relays' two hops
        let mut relayed_mtu: HashMap<&str, (u16, u16)> = HashMap::new();
        let mut relay_plans = Vec::new();
        match topo.mesh.mode {
            MeshMode::Full => {
                peers.reserve(topo.nodes.len());
                let cluster = IpNet::V4(topo.mesh.cluster_cidr);
                let mut carried = relays::carried_by_relays(me, cluster, others());
                for n in others() {
                    let mut ranges = Vec::new();
                    for (dest, range) in carried.remove(&n.name).unwrap_or_default() {
                        ranges.push(range);
                        let (to, beyond) = (pair_mtu(topo, me, n), pair_mtu(topo, n, dest));
                        let e = relayed_mtu
                            .entry(dest.name.as_str())
                            .or_insert((to, beyond));
                        *e = (e.0.min(to), e.1.min(beyond));
                    }
                    if !ranges.is_empty() {
                        relay_plans.push(RelayPlan {
                            relay: n.name.clone(),
                            ranges,
                        });
                    }
                    peers.push(peer(n, n.pod_cidrs(), PeerRole::Direct));
                    hops.push((n, n));
                }
            }
            MeshMode::Hub if !me.hub => {
                let mut cluster = vec![IpNet::V4(topo.mesh.cluster_cidr)];
                cluster.extend(topo.mesh.cluster_cidr_v6.map(IpNet::V6));
                let own_hubs = hubs.of_region(&me.region);
                for h in own_hubs {
                    let mut allowed = h.pod_cidrs();
                    allowed.extend(cluster.iter().copied());
                    peers.push(peer(h, allowed, PeerRole::Hub));
                }
                for n in others() {
                    let via = if n.hub && n.region == me.region {
                        Some(n)
                    } else {
                        hubs.of_spoke(&me.region, me)
                    };
                    // a region without hubs is refused by validation; keep the route regardless
                    hops.push((n, via.unwrap_or(n)));
                }
            }
            MeshMode::Hub => {
                // each other region's spokes' CIDRs, carried by every hub of that region; a
                // hub's own CIDRs are carried by that hub alone (it is a peer itself), so a
                // packet for it never goes through another hub that would have to forward it
                let mut region_cidrs: HashMap<&str, Vec<IpNet>> = HashMap::new();
                for n in others().filter(|n| n.region != me.region && !n.hub) {
                    region_cidrs
                        .entry(n.region.as_str())
                        .or_default()
                        .extend(n.pod_cidrs());
                }
                for n in others() {
                    if n.region == me.region {
                        let role = if n.hub {
                            PeerRole::Hub
                        } else {
                            PeerRole::Direct
                        };
                        peers.push(peer(n, n.pod_cidrs(), role));
                    } else if n.hub {
                        let mut allowed = n.pod_cidrs();
                        if let Some(spokes) = region_cidrs.get(n.region.as_str()) {
                            allowed.extend(spokes.iter().copied());
                        }
                        peers.push(peer(n, allowed, PeerRole::Hub));
                    }
                }
                for n in others() {
                    // Another region's hub is a peer itself: its own CIDRs go straight to it.
                    let via = if n.region == me.region || n.hub {
                        n
                    } else {
                        hubs.of_spoke(&n.region, n).unwrap_or(n)
                    };
                    hops.push((n, via));
                }
            }
        }
        let mut routes =
            Vec::with_capacity(hops.len() * (1 + usize::from(me.pod_cidr_v6.is_some())));
        for (dest, via) in hops {
            let (mut mtu, mut beyond_mtu) = route_mtu(topo, &hubs, me, dest);
            if let Some((to, beyond)) = relayed_mtu.get(dest.name.as_str()) {
                // the relays' two hops bound what may be sent before the direct path is known
                mtu = mtu.min(*to).min(*beyond);
                beyond_mtu = Some(*beyond);
            }
            routes.extend(dest.pod_cidrs().into_iter().map(|d| RoutePlan {
                destination: d,
                node: dest.name.clone(),
                via: via.name.clone(),
                mtu,
                beyond_mtu,
            }));
        }
        let underlay_mtu = topo.underlay_mtu(&me.region);
        Ok(Plan {
            node: me.name.clone(),
            mode: topo.mesh.mode,
            public_key: me.public_key,
            listen_port: me.listen_port,
            addresses: me.overlay_addrs(),
            pod_cidrs: me.pod_cidrs(),
            cluster_cidrs: std::iter::once(IpNet::V4(topo.mesh.cluster_cidr))
                .chain(topo.mesh.cluster_cidr_v6.map(IpNet::V6))
                .collect(),
            mtu: topo.mesh.mtu.unwrap_or(
                underlay_mtu
                    .saturating_sub(OVERHEAD_V4)
                    .max(MIN_TUNNEL_MTU.min(underlay_mtu)),
            ),
            underlay_mtu,
            discover_mtu: topo.mesh.mtu.is_none(),
            own_endpoints: me
                .endpoint
                .iter()
                .chain(me.scoped.iter().map(|s| &s.endpoint))
                .filter_map(|e| match e {
                    Endpoint::Addr(a) => Some(*a),
                    Endpoint::Dns { .. } => None,
                })
                .collect(),
            peers,
            relays: relay_plans,
            routes,
        })
    }
}

/// WireGuard's overhead between two nodes: IPv6's when either endpoint is IPv6, or a DNS name
/// that may resolve to one.
fn overhead(a: &Node, b: &Node) -> u16 {
    let v6 = [a, b]
        .iter()
        .filter_map(|n| n.endpoint.as_ref())
        .any(|e| match e {
            Endpoint::Addr(addr) => addr.is_ipv6(),
            Endpoint::Dns { .. } => true,
        });
    if v6 {
        OVERHEAD_V6
    } else {
        OVERHEAD_V4
    }
}

/// Tunnel MTU of the direct path between two nodes, from the regions' underlay MTUs.
fn pair_mtu(topo: &Topology, a: &Node, b: &Node) -> u16 {
    if let Some(mtu) = topo.mesh.mtu {
        return mtu;
    }
    let underlay = topo
        .underlay_mtu(&a.region)
        .min(topo.underlay_mtu(&b.region));
    underlay
        .saturating_sub(overhead(a, b))
        .max(MIN_TUNNEL_MTU.min(underlay))
}

/// The node `from` sends a packet for `dest` to: `dest` itself in a full mesh; in hub mode a
/// spoke's hub, or another region's hub.
fn next_hop<'a>(topo: &Topology, hubs: &Hubs<'a>, from: &'a Node, dest: &'a Node) -> &'a Node {
    if topo.mesh.mode == MeshMode::Full {
        return dest;
    }
    if !from.hub {
        if dest.hub && dest.region == from.region {
            return dest;
        }
        return hubs.of_spoke(&from.region, from).unwrap_or(dest);
    }
    if dest.region == from.region || dest.hub {
        return dest;
    }
    hubs.of_spoke(&dest.region, dest).unwrap_or(dest)
}

/// Starting MTU towards `dest` (the smallest direct-path MTU along every hop to it), and the
/// smallest of the hops after the first, if there are any.
fn route_mtu(topo: &Topology, hubs: &Hubs, me: &Node, dest: &Node) -> (u16, Option<u16>) {
    let mut first = None;
    let mut beyond: Option<u16> = None;
    let mut at = me;
    // hub mode has at most three hops; the bound guards against a malformed chain
    for _ in 0..4 {
        let next = next_hop(topo, hubs, at, dest);
        let mtu = pair_mtu(topo, at, next);
        match first {
            None => first = Some(mtu),
            Some(_) => beyond = Some(beyond.map_or(mtu, |b| b.min(mtu))),
        }
        if std::ptr::eq(next, dest) {
            break;
        }
        at = next;
    }
    let first = first.unwrap_or(MIN_TUNNEL_MTU);
    (first.min(beyond.unwrap_or(u16::MAX)), beyond)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Builds a topology text from (name, region, hub) triples with fresh keys.
    fn topo(mode: &str, nodes: &[(&str, &str, bool)]) -> Topology {
        let mut text = format!("mode = \"{mode}\"\ncluster-cidr = \"10.244.0.0/16\"\n");
        for (i, (name, region, hub)) in nodes.iter().enumerate() {
            text.push_str(&format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"{region}\"\nendpoint = \"192.0.2.{}:51820\"\npublic-key = \"{}\"\npod-cidr = \"10.244.{}.0/24\"\nhub = {hub}\n",
                i + 1,
                crate::io::keyfile::generate().public_key(),
                i + 1
            ));
        }
        Topology::parse(&text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn peers_in_a_shared_scope_use_the_private_endpoint_and_everyone_else_the_public_one() {
        let key = || crate::io::keyfile::generate().public_key();
        let text = format!(
            "mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n\
             [[node]]\nname = \"a\"\ncloud = \"aws\"\nregion = \"r\"\npublic-key = \"{}\"\n\
             endpoints = [{{ address = \"10.0.1.5:51820\", scope = \"aws:vpc-1\" }}, {{ address = \"203.0.113.5:51820\" }}]\n\
             [[node]]\nname = \"b\"\ncloud = \"aws\"\nregion = \"r\"\npublic-key = \"{}\"\n\
             endpoints = [{{ address = \"203.0.113.6:51820\" }}, {{ address = \"10.0.1.6:51820\", scope = \"aws:vpc-1\" }}]\n\
             [[node]]\nname = \"c\"\ncloud = \"gcp\"\nregion = \"r\"\npublic-key = \"{}\"\n\
             endpoints = [{{ address = \"10.8.0.7:51820\", scope = \"gcp:vpc-9\" }}]\n\
             [[node]]\nname = \"d\"\ncloud = \"onprem\"\nregion = \"r\"\npublic-key = \"{}\"\n",
            key(),
            key(),
            key(),
            key()
        );
        let t = Topology::parse(&text, Path::new("t.toml")).unwrap();
        let endpoint = |from: &str, to: &str| {
            Plan::compute(&t, from)
                .unwrap()
                .peers
                .iter()
                .find(|p| p.name == to)
                .unwrap()
                .endpoint
                .as_ref()
                .map(|e| e.to_string())
        };
        // a and b share aws:vpc-1: each other's private addresses, whatever the order listed
        assert_eq!(endpoint("a", "b").as_deref(), Some("10.0.1.6:51820"));
        assert_eq!(endpoint("b", "a").as_deref(), Some("10.0.1.5:51820"));
        // c shares nothing with them: their public addresses
        assert_eq!(endpoint("c", "a").as_deref(), Some("203.0.113.5:51820"));
        assert_eq!(endpoint("d", "b").as_deref(), Some("203.0.113.6:51820"));
        // c has only a private address in its own VPC: nobody outside it can send first
        assert_eq!(endpoint("a", "c"), None);
        assert_eq!(endpoint("d", "c"), None);
        // the fallbacks, best first, each with the scope that pins it
        let candidates = |from: &str, to: &str| {
            let plan = Plan::compute(&t, from).unwrap();
            let p = plan.peers.iter().find(|p| p.name == to).unwrap();
            p.candidates
                .iter()
                .map(|c| format!("{}@{}", c.endpoint, c.scope.as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            candidates("a", "b"),
            ["10.0.1.6:51820@aws:vpc-1", "203.0.113.6:51820@-"]
        );
        assert_eq!(candidates("c", "a"), ["203.0.113.5:51820@-"]);
        assert!(candidates("d", "c").is_empty());
    }

    #[test]
    fn a_route_behind_hubs_starts_at_the_smallest_mtu_of_every_hop() {
        let mut t = topo(
            "hub",
            &[
                ("h1", "r1", true),
                ("s1", "r1", false),
                ("h2", "r2", true),
                ("s2", "r2", false),
            ],
        );
        t.mesh.regions.insert(
            "r2".into(),
            crate::core::topology::Region { underlay_mtu: 1400 },
        );
        let p = Plan::compute(&t, "s1").unwrap();
        let mtu_to = |node: &str| p.routes.iter().find(|r| r.node == node).unwrap().mtu;
        assert_eq!(mtu_to("h1"), 1440, "own region only");
        assert_eq!(mtu_to("h2"), 1340, "s1 → h1 → h2 crosses the 1400 region");
        assert_eq!(mtu_to("s2"), 1340);
        let to_s2 = p.routes.iter().find(|r| r.node == "s2").unwrap();
        assert_eq!(to_s2.beyond_mtu, Some(1340), "h1 → h2 → s2");
        assert_eq!(
            p.routes.iter().find(|r| r.node == "h1").unwrap().beyond_mtu,
            None
        );
        assert_eq!(p.peers[0].mtu, 1440);
        assert_eq!(p.mtu, 1440);
        assert_eq!(p.underlay_mtu, 1500);
        let h2 = Plan::compute(&t, "h2").unwrap();
        assert_eq!(h2.mtu, 1340);
        assert!(h2.routes.iter().all(|r| r.mtu == 1340));
    }

    #[test]
    fn a_fixed_mtu_turns_discovery_off_and_applies_everywhere() {
        let mut t = topo("full", &[("a", "r1", false), ("b", "r2", false)]);
        t.mesh.mtu = Some(1380);
        let p = Plan::compute(&t, "a").unwrap();
        assert!(!p.discover_mtu);
        assert_eq!((p.mtu, p.peers[0].mtu, p.routes[0].mtu), (1380, 1380, 1380));
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
    fn a_hub_routes_another_regions_second_hub_to_that_hub_itself() {
        let t = topo(
            "hub",
            &[
                ("h1", "r1", true),
                ("h1b", "r1", true),
                ("s1", "r1", false),
                ("h2", "r2", true),
            ],
        );
        let p = Plan::compute(&t, "h2").unwrap();
        let to_h1b = p.routes.iter().find(|r| r.node == "h1b").unwrap();
        assert_eq!(to_h1b.via, "h1b");
        let to_s1 = p.routes.iter().find(|r| r.node == "s1").unwrap();
        // the spoke's own preferred hub, the one the engine uses while both answer
        let anchor = IpNet::V4(t.node("s1").unwrap().pod_cidr);
        let preferred = ["h1", "h1b"]
            .into_iter()
            .min_by_key(|h| preference::rank(anchor, h))
            .unwrap();
        assert_eq!(to_s1.via, preferred);
        let s1 = Plan::compute(&t, "s1").unwrap();
        let s1_to_h2 = s1.routes.iter().find(|r| r.node == "h2").unwrap();
        assert_eq!(s1_to_h2.via, preferred, "both ends pick the same hub");
    }

    #[test]
    fn a_second_hub_of_a_region_carries_only_its_own_cidr_and_the_spokes_at_a_remote_hub() {
        let t = topo(
            "hub",
            &[
                ("h1", "r1", true),
                ("h1b", "r1", true),
                ("s1", "r1", false),
                ("h2", "r2", true),
                ("s2", "r2", false),
            ],
        );
        let p = Plan::compute(&t, "h2").unwrap();
        let allowed = |name: &str| {
            let mut a = p
                .peers
                .iter()
                .find(|x| x.name == name)
                .unwrap()
                .allowed_ips
                .clone();
            a.sort();
            a
        };
        let nets = |s: &[&str]| {
            s.iter()
                .map(|n| n.parse::<IpNet>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed("h1"), nets(&["10.244.1.0/24", "10.244.3.0/24"]));
        assert_eq!(allowed("h1b"), nets(&["10.244.2.0/24", "10.244.3.0/24"]));
        // within a region, hubs carry only each other's own CIDRs: none forwards to another
        let h1 = Plan::compute(&t, "h1").unwrap();
        let h1b_at_h1 = h1.peers.iter().find(|x| x.name == "h1b").unwrap();
        assert_eq!(h1b_at_h1.allowed_ips, nets(&["10.244.2.0/24"]));
    }

    #[test]
    fn wg_config_gives_every_peer_its_own_cidr_even_when_ranges_overlap() {
        let t = topo(
            "hub",
            &[
                ("h1", "r1", true),
                ("h1b", "r1", true),
                ("s1", "r1", false),
                ("h2", "r2", true),
            ],
        );
        let conf = Plan::compute(&t, "h2").unwrap().to_wg_config(None);
        let h1b_key = t.node("h1b").unwrap().public_key;
        assert!(
            conf.contains(&format!(
                "PublicKey = {h1b_key}\nAllowedIPs = 10.244.2.0/24"
            )),
            "{conf}"
        );
        assert_eq!(
            conf.matches("10.244.3.0/24").count(),
            2,
            "route comment and one peer: {conf}"
        );
        assert!(!conf.contains("AllowedIPs = \n"), "{conf}");
    }

    #[test]
    fn unknown_node_is_an_error() {
        let t = topo("full", &[("a", "r1", false)]);
        assert!(matches!(Plan::compute(&t, "zz"), Err(TopologyError::UnknownNode(n)) if n == "zz"));
    }
}
