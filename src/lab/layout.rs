//! The lab's address and naming plan, computed from a topology and a prefix without touching the
//! kernel, so it is unit-tested and the builder only executes it.
//!
//! Names are bounded by Linux's 15-byte interface names (`IFNAMSIZ` - 1). The prefix is at most
//! [`MAX_PREFIX`] characters so the longest derived name, the core-side veth `P<idx>v`, fits.

use super::LabError;
use crate::core::topology::{valid_scope, LabNat, LabSettings, Topology};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest accepted prefix: `P` + up to 3 index digits + `v` must stay within 15 bytes.
pub const MAX_PREFIX: usize = 10;
/// Longest interface or namespace name Linux accepts.
pub const IFNAME_MAX: usize = 15;
/// Host part of a region's first node address; `.1` is the gateway, `.2`-`.9` stay free.
const FIRST_HOST: usize = 10;
/// The void subnets, where absent nodes' endpoints are: local addresses of the core namespace
/// (`ip route add local ... dev lo`) whose packets an nftables rule there drops, so they never
/// leave the lab and nothing answers them, not even with ICMP.
pub const VOID_V4: &str = "172.30.0.0/16";
pub const VOID_V6: &str = "fd30::/64";
/// Absent nodes the void subnets have room for (host numbers 2..=65535).
pub const MAX_ABSENT: usize = 65_534;
/// The inside of every NAT router: the node at `.2`, the router at `.1`. The same behind every
/// router, as behind home routers: peers see only the router's outside address.
pub const NAT_NODE_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
pub const NAT_ROUTER_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
pub const NAT_NODE_V6: Ipv6Addr = Ipv6Addr::new(0xfd32, 0, 0, 0, 0, 0, 0, 2);
pub const NAT_ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0xfd32, 0, 0, 0, 0, 0, 0, 1);

/// A region's VPC: a bridge in the core namespace without any address, so the core never
/// routes into it and only the region's nodes reach each other over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionVpc {
    pub bridge: String,
    /// The scope of the nodes' VPC endpoints in the derived topology.
    pub scope: String,
}

/// A node's side of its region's VPC: `eth1` in the node, `veth` on the VPC bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVpc {
    /// The core-side end of the node's VPC veth pair (the node side is `eth1`).
    pub veth: String,
    /// `172.28.<region>.<host>` and `fd28:<region>::<host>`: the host of the node's underlay.
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

/// A node behind its own NAT router. The router's `eth0` holds the node's underlay addresses
/// (its public side on the region's bridge); its `eth1` faces the node's `eth0`, which holds
/// [`NAT_NODE_V4`] and [`NAT_NODE_V6`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNat {
    pub kind: LabNat,
    /// `P-r<index>`.
    pub router_ns: String,
}

/// One region: a bridge in the core namespace and an underlay subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionLayout {
    pub name: String,
    /// 1-based; the third octet of `172.31.<index>.0/24` and the second group of `fd31:<index>::/64`.
    pub index: u8,
    /// Bridge name inside the core namespace.
    pub bridge: String,
    pub mtu: u16,
    pub gateway_v4: Ipv4Addr,
    pub gateway_v6: Ipv6Addr,
    /// The region's private bridge when it is a VPC (`lab.vpc = true`).
    #[serde(default)]
    pub vpc: Option<RegionVpc>,
}

/// One node: its namespace, the veth joining it to its region's bridge, and its tun name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLayout {
    pub name: String,
    pub ns: String,
    pub region: String,
    /// The core-side end of the node's veth pair (the node side is `eth0`).
    pub veth: String,
    /// The daemon's tun interface; unique across namespaces because the UAPI socket directory
    /// `/var/run/wireguard` is shared by all of them.
    pub ifname: String,
    pub underlay_v4: Ipv4Addr,
    pub underlay_v6: Ipv6Addr,
    pub listen_port: u16,
    pub mtu: u16,
    /// The node's link to its region's VPC, when the region is one.
    #[serde(default)]
    pub vpc: Option<NodeVpc>,
    /// The node's NAT router, when it is behind one (`lab.nat`); `veth` and the underlay
    /// addresses are then the router's.
    #[serde(default)]
    pub nat: Option<NodeNat>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub prefix: String,
    pub core_ns: String,
    pub regions: Vec<RegionLayout>,
    pub nodes: Vec<NodeLayout>,
    /// How many of the topology's nodes have no namespace (see [`Layout::with_nodes`]).
    #[serde(default)]
    pub absent: usize,
}

/// The endpoint the lab gives the `i`-th absent node (in file order): an address of the void
/// subnets, where nothing answers.
pub fn absent_endpoint(i: usize, port: u16, ipv6: bool) -> String {
    let host = u16::try_from(i + 2).expect("at most MAX_ABSENT absent nodes");
    if ipv6 {
        format!("[fd30::{host:x}]:{port}")
    } else {
        let [hi, lo] = host.to_be_bytes();
        format!("172.30.{hi}.{lo}:{port}")
    }
}

/// Checks that a prefix yields valid, unambiguous names: lowercase letters and digits only (no
/// `-`, so `P-` never matches another lab's prefix), starting with a letter.
pub fn check_prefix(prefix: &str) -> Result<(), LabError> {
    let bad = |reason: &str| LabError::Prefix {
        prefix: prefix.to_string(),
        reason: reason.to_string(),
    };
    if prefix.is_empty() || prefix.len() > MAX_PREFIX {
        return Err(bad(&format!("must be 1-{MAX_PREFIX} characters")));
    }
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(bad("must start with a lowercase letter"));
    }
    if !prefix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(bad("only lowercase letters and digits are allowed"));
    }
    Ok(())
}

impl Layout {
    /// Plans names and addresses for every region (in sorted order) and node (in file order).
    pub fn new(prefix: &str, topology: &Topology) -> Result<Self, LabError> {
        Self::with_nodes(prefix, topology, None)
    }

    /// Like [`Layout::new`], but only the nodes named in `only` (all when `None`) get a
    /// namespace; the others stay in the topology as peers that never answer, with endpoints
    /// from [`absent_endpoint`]. Regions without an instantiated node get no bridge.
    pub fn with_nodes(
        prefix: &str,
        topology: &Topology,
        only: Option<&[String]>,
    ) -> Result<Self, LabError> {
        Self::with_lab(prefix, topology, only, &LabSettings::default())
    }

    /// Like [`Layout::with_nodes`], with the file's VPC regions and NATed nodes
    /// ([`Topology::parse_for_lab`]).
    pub fn with_lab(
        prefix: &str,
        topology: &Topology,
        only: Option<&[String]>,
        lab: &LabSettings,
    ) -> Result<Self, LabError> {
        check_prefix(prefix)?;
        if let Some(only) = only {
            if let Some(unknown) = only.iter().find(|n| topology.node(n).is_err()) {
                return Err(LabError::UnknownNode(unknown.clone()));
            }
        }
        let present: Vec<&crate::core::topology::Node> = topology
            .nodes
            .iter()
            .filter(|n| only.is_none_or(|o| o.contains(&n.name)))
            .collect();
        let absent = topology.nodes.len() - present.len();
        if absent > MAX_ABSENT {
            return Err(LabError::Layout(format!(
                "{absent} nodes without a namespace; the lab has room for {MAX_ABSENT}"
            )));
        }
        let mut region_names: Vec<&str> = present.iter().map(|n| n.region.as_str()).collect();
        region_names.sort_unstable();
        region_names.dedup();
        if region_names.len() > 254 {
            return Err(LabError::Layout(format!(
                "{} regions; the lab has room for 254",
                region_names.len()
            )));
        }
        if present.len() > 999 {
            return Err(LabError::Layout("more than 999 nodes".into()));
        }
        let regions: Vec<RegionLayout> = region_names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let index = u8::try_from(i + 1).expect("at most 254 regions");
                RegionLayout {
                    name: name.to_string(),
                    index,
                    bridge: format!("br{index}"),
                    mtu: topology.underlay_mtu(name),
                    gateway_v4: Ipv4Addr::new(172, 31, index, 1),
                    gateway_v6: Ipv6Addr::new(0xfd31, index.into(), 0, 0, 0, 0, 0, 1),
                    vpc: lab.vpc_regions.contains(*name).then(|| RegionVpc {
                        bridge: format!("vpc{index}"),
                        scope: vpc_scope(name, index),
                    }),
                }
            })
            .collect();
        let core_ns = format!("{prefix}-core");
        let mut in_region = vec![0usize; regions.len()];
        let mut nodes = Vec::with_capacity(present.len());
        for (idx, node) in present.iter().enumerate() {
            let region = regions
                .iter()
                .find(|r| r.name == node.region)
                .expect("collected above");
            let slot = &mut in_region[usize::from(region.index) - 1];
            let host = FIRST_HOST + *slot;
            *slot += 1;
            let host = u8::try_from(host)
                .ok()
                .filter(|h| *h < 255)
                .ok_or_else(|| {
                    LabError::Layout(format!(
                        "region '{}' has more than {} nodes",
                        region.name,
                        255 - FIRST_HOST
                    ))
                })?;
            nodes.push(NodeLayout {
                name: node.name.clone(),
                ns: node_ns(prefix, &node.name, idx),
                region: region.name.clone(),
                veth: format!("{prefix}{idx}v"),
                ifname: format!("{prefix}{idx}"),
                underlay_v4: Ipv4Addr::new(172, 31, region.index, host),
                underlay_v6: Ipv6Addr::new(0xfd31, region.index.into(), 0, 0, 0, 0, 0, host.into()),
                listen_port: node.listen_port,
                mtu: region.mtu,
                vpc: region.vpc.as_ref().map(|_| NodeVpc {
                    veth: format!("{prefix}{idx}p"),
                    v4: Ipv4Addr::new(172, 28, region.index, host),
                    v6: Ipv6Addr::new(0xfd28, region.index.into(), 0, 0, 0, 0, 0, host.into()),
                }),
                nat: lab.nat.get(&node.name).map(|&kind| NodeNat {
                    kind,
                    router_ns: format!("{prefix}-r{idx}"),
                }),
            });
        }
        let routers = nodes.iter().filter_map(|n| n.nat.as_ref());
        let mut names: Vec<&str> = nodes.iter().map(|n| n.ns.as_str()).collect();
        names.extend(routers.map(|r| r.router_ns.as_str()));
        names.push(&core_ns);
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(LabError::Layout(format!(
                "two namespaces would be named '{}'",
                w[0]
            )));
        }
        Ok(Layout {
            prefix: prefix.to_string(),
            core_ns,
            regions,
            nodes,
            absent,
        })
    }

    /// Plans one more node for a running lab (`lab join`): the next free host of `region`, or
    /// a new region with the next free index and `mtu`; names from an index no node has used.
    /// Returns the node and, when the region is new, the region to build.
    pub fn add_node(
        &mut self,
        name: &str,
        region: &str,
        mtu: u16,
        listen_port: u16,
    ) -> Result<(NodeLayout, Option<RegionLayout>), LabError> {
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(LabError::Layout(format!(
                "node '{name}' is already in the lab"
            )));
        }
        let new_region = match self.region(region) {
            Some(_) => None,
            None => {
                let used: Vec<u8> = self.regions.iter().map(|r| r.index).collect();
                let index = (1..=254u8)
                    .find(|i| !used.contains(i))
                    .ok_or_else(|| LabError::Layout("no room for another region".into()))?;
                Some(RegionLayout {
                    name: region.to_string(),
                    index,
                    bridge: format!("br{index}"),
                    mtu,
                    gateway_v4: Ipv4Addr::new(172, 31, index, 1),
                    gateway_v6: Ipv6Addr::new(0xfd31, index.into(), 0, 0, 0, 0, 0, 1),
                    vpc: None,
                })
            }
        };
        let r = new_region
            .clone()
            .or_else(|| self.region(region).cloned())
            .expect("found or made above");
        let taken: Vec<Ipv4Addr> = self.nodes.iter().map(|n| n.underlay_v4).collect();
        let host = (FIRST_HOST..255)
            .filter_map(|h| u8::try_from(h).ok())
            .find(|h| !taken.contains(&Ipv4Addr::new(172, 31, r.index, *h)))
            .ok_or_else(|| LabError::Layout(format!("region '{region}' is full")))?;
        let prefix = &self.prefix;
        // an index past every name used so far, so a left node's names are never reused
        let idx = self
            .nodes
            .iter()
            .filter_map(|n| {
                n.ifname
                    .strip_prefix(prefix.as_str())?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1)
            .max(self.nodes.len());
        let node = NodeLayout {
            name: name.to_string(),
            ns: node_ns(prefix, name, idx),
            region: r.name.clone(),
            veth: format!("{prefix}{idx}v"),
            ifname: format!("{prefix}{idx}"),
            underlay_v4: Ipv4Addr::new(172, 31, r.index, host),
            underlay_v6: Ipv6Addr::new(0xfd31, r.index.into(), 0, 0, 0, 0, 0, host.into()),
            listen_port,
            mtu: r.mtu,
            // a joining node is plain: `lab join` has no VPC or NAT to give
            vpc: None,
            nat: None,
        };
        if node.ifname.len() > IFNAME_MAX || self.namespaces().contains(&node.ns) {
            return Err(LabError::Layout(format!(
                "no room for node '{name}': names {} / {} taken or too long",
                node.ns, node.ifname
            )));
        }
        if let Some(r) = &new_region {
            self.regions.push(r.clone());
        }
        self.nodes.push(node.clone());
        Ok((node, new_region))
    }

    /// Forgets a node (`lab leave`); its names are not reused.
    pub fn remove_node(&mut self, name: &str) -> Result<NodeLayout, LabError> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| LabError::UnknownNode(name.into()))?;
        Ok(self.nodes.remove(i))
    }

    /// Every namespace of the lab, the core first, then the nodes', then the NAT routers'.
    pub fn namespaces(&self) -> Vec<String> {
        let routers = self.nodes.iter().filter_map(|n| n.nat.as_ref());
        std::iter::once(self.core_ns.clone())
            .chain(self.nodes.iter().map(|n| n.ns.clone()))
            .chain(routers.map(|r| r.router_ns.clone()))
            .collect()
    }

    /// Whether some region is a VPC.
    pub fn has_vpc(&self) -> bool {
        self.regions.iter().any(|r| r.vpc.is_some())
    }

    pub fn node(&self, name: &str) -> Result<&NodeLayout, LabError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| LabError::UnknownNode(name.into()))
    }

    pub fn region(&self, name: &str) -> Option<&RegionLayout> {
        self.regions.iter().find(|r| r.name == name)
    }
}

/// `lab:vpc-<region>` when that is a scope name (`core/topology/endpoints.rs`), else
/// `lab:vpc<index>`, which no region's name can produce.
fn vpc_scope(region: &str, index: u8) -> String {
    let scope = format!("lab:vpc-{region}");
    if valid_scope(&scope) {
        scope
    } else {
        format!("lab:vpc{index}")
    }
}

/// `P-<node>` when that is a short, plain name; otherwise `P-n<index>`.
fn node_ns(prefix: &str, node: &str, idx: usize) -> String {
    let plain = node
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let name = format!("{prefix}-{node}");
    if plain && node != "core" && name.len() <= IFNAME_MAX {
        name
    } else {
        format!("{prefix}-n{idx}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn topology(nodes: &[(&str, &str)]) -> Topology {
        let mut t = String::from("mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n");
        t.push_str("[region.eu]\nunderlay-mtu = 1400\n");
        for (name, region) in nodes {
            let key = crate::io::keyfile::generate().public_key();
            t.push_str(&format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"{region}\"\npublic-key = \"{key}\"\n"
            ));
        }
        Topology::parse(&t, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn nodes_get_addresses_per_region_and_region_mtus() {
        let t = topology(&[("a", "us"), ("b", "eu"), ("c", "us")]);
        let l = Layout::new("wml", &t).unwrap();
        assert_eq!(
            l.regions
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["eu", "us"]
        );
        let a = l.node("a").unwrap();
        assert_eq!(
            (a.ns.as_str(), a.veth.as_str(), a.ifname.as_str()),
            ("wml-a", "wml0v", "wml0")
        );
        assert_eq!(a.underlay_v4, Ipv4Addr::new(172, 31, 2, 10));
        assert_eq!(
            l.node("c").unwrap().underlay_v4,
            Ipv4Addr::new(172, 31, 2, 11)
        );
        assert_eq!(
            l.node("b").unwrap().underlay_v6,
            "fd31:1::a".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!((l.node("b").unwrap().mtu, a.mtu), (1400, 1500));
    }

    #[test]
    fn long_or_odd_node_names_fall_back_to_the_index() {
        let t = topology(&[
            ("a-very-long-node-name", "r"),
            ("Up_Per", "r"),
            ("core", "r"),
        ]);
        let l = Layout::new("t12345678", &t).unwrap();
        let ns: Vec<&str> = l.nodes.iter().map(|n| n.ns.as_str()).collect();
        assert_eq!(ns, ["t12345678-n0", "t12345678-n1", "t12345678-n2"]);
        assert!(l.namespaces().iter().all(|n| n.len() <= IFNAME_MAX));
        assert!(l.nodes.iter().all(|n| n.veth.len() <= IFNAME_MAX));
    }

    #[test]
    fn only_the_listed_nodes_get_namespaces_and_the_rest_are_counted_absent() {
        let t = topology(&[("a", "us"), ("b", "eu"), ("c", "us"), ("d", "us")]);
        let only = ["c".to_string(), "a".to_string()];
        let l = Layout::with_nodes("wml", &t, Some(&only)).unwrap();
        let names: Vec<&str> = l.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "c"], "file order, not the order listed");
        assert_eq!(l.absent, 2);
        assert_eq!(l.regions.len(), 1, "no bridge for a region without a node");
        assert_eq!(l.node("c").unwrap().ifname, "wml1");
        let missing = ["zz".to_string()];
        assert!(matches!(
            Layout::with_nodes("wml", &t, Some(&missing)),
            Err(LabError::UnknownNode(n)) if n == "zz"
        ));
    }

    #[test]
    fn absent_endpoints_are_distinct_addresses_in_the_void_subnets() {
        assert_eq!(absent_endpoint(0, 51820, false), "172.30.0.2:51820");
        assert_eq!(absent_endpoint(300, 7, false), "172.30.1.46:7");
        assert_eq!(absent_endpoint(9_998, 1, true), "[fd30::2710]:1");
        assert_eq!(
            absent_endpoint(MAX_ABSENT - 1, 1, false),
            "172.30.255.255:1"
        );
    }

    #[test]
    fn a_joining_node_gets_the_next_free_host_and_fresh_names() {
        let topo = topology(&[("a", "r1"), ("b", "r1"), ("c", "r2")]);
        let mut layout = Layout::new("p", &topo).unwrap();
        let (n, new) = layout.add_node("d", "r1", 1500, 51820).unwrap();
        assert!(new.is_none());
        assert_eq!(n.underlay_v4, Ipv4Addr::new(172, 31, 1, 12));
        assert_eq!((n.ifname.as_str(), n.veth.as_str()), ("p3", "p3v"));
        let (e, new) = layout.add_node("e", "r9", 1400, 51820).unwrap();
        let new = new.expect("a new region");
        assert_eq!((new.index, new.mtu, e.mtu), (3, 1400, 1400));
        assert_eq!(e.underlay_v4, Ipv4Addr::new(172, 31, 3, 10));
        layout.remove_node("d").unwrap();
        let (f, _) = layout.add_node("f", "r1", 1500, 51820).unwrap();
        assert_eq!(f.ifname, "p5", "a left node's names are not reused");
        assert_eq!(f.underlay_v4, Ipv4Addr::new(172, 31, 1, 12), "its host is");
        assert!(layout.add_node("a", "r1", 1500, 51820).is_err());
    }

    #[test]
    fn bad_prefixes_are_refused_with_a_reason() {
        for p in ["", "Wml", "w-l", "1abc", "abcdefghijk"] {
            assert!(
                matches!(check_prefix(p), Err(LabError::Prefix { .. })),
                "{p}"
            );
        }
        check_prefix("t4194304a9").unwrap();
    }

    /// A lab topology from node lines `(name, region, extra lines)` after `head`.
    fn lab_topology(head: &str, nodes: &[(&str, &str, &str)]) -> (Topology, LabSettings) {
        let mut t = format!("mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n{head}");
        for (name, region, extra) in nodes {
            let key = crate::io::keyfile::generate().public_key();
            t.push_str(&format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"{region}\"\npublic-key = \"{key}\"\n{extra}"
            ));
        }
        Topology::parse_for_lab(&t, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn a_vpc_regions_nodes_get_a_private_bridge_address_beside_their_underlay_one() {
        let (t, lab) = lab_topology(
            "[region.eu]\nlab.vpc = true\n[region.US_East]\nlab = { vpc = true }\n",
            &[
                ("a", "eu", ""),
                ("b", "us", ""),
                ("c", "eu", ""),
                ("d", "US_East", ""),
            ],
        );
        let l = Layout::with_lab("t12345678", &t, None, &lab).unwrap();
        let eu = l.region("eu").unwrap().vpc.clone().unwrap();
        assert_eq!(
            (eu.bridge.as_str(), eu.scope.as_str()),
            ("vpc2", "lab:vpc-eu")
        );
        let odd = l.region("US_East").unwrap().vpc.clone().unwrap();
        assert_eq!(
            odd.scope, "lab:vpc1",
            "an upper-case region is no scope name"
        );
        assert_eq!(l.region("us").unwrap().vpc, None);
        let c = l.node("c").unwrap();
        let vpc = c.vpc.as_ref().unwrap();
        assert_eq!(vpc.veth, "t123456782p");
        assert!(vpc.veth.len() <= IFNAME_MAX);
        assert_eq!(vpc.v4, Ipv4Addr::new(172, 28, 2, 11));
        assert_eq!(vpc.v6, "fd28:2::b".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            c.underlay_v4,
            Ipv4Addr::new(172, 31, 2, 11),
            "the public side stays"
        );
        assert!(l.node("b").unwrap().vpc.is_none());
        assert!(l.has_vpc());
        assert!(
            !Layout::new("p", &t).unwrap().has_vpc(),
            "no settings, no VPC"
        );
    }

    #[test]
    fn a_nated_node_gets_a_router_namespace_that_teardown_knows() {
        let nodes: Vec<(String, &str, &str)> = (0..12)
            .map(|i| (format!("n{i}"), "r", ""))
            .chain([("x".to_string(), "r", "lab.nat = \"dependent\"\n")])
            .collect();
        let nodes: Vec<(&str, &str, &str)> =
            nodes.iter().map(|(n, r, e)| (n.as_str(), *r, *e)).collect();
        let (t, lab) = lab_topology("", &nodes);
        let l = Layout::with_lab("t12345678", &t, None, &lab).unwrap();
        let x = l.node("x").unwrap();
        let nat = x.nat.as_ref().unwrap();
        assert_eq!(nat.kind, LabNat::Dependent);
        assert_eq!(nat.router_ns, "t12345678-r12");
        assert!(nat.router_ns.len() <= IFNAME_MAX);
        assert_eq!(
            x.underlay_v4,
            Ipv4Addr::new(172, 31, 1, 22),
            "the router's outside"
        );
        assert_eq!(l.namespaces().last(), Some(&nat.router_ns));
        assert!(l.node("n0").unwrap().nat.is_none());
    }

    #[test]
    fn a_node_named_like_a_router_namespace_is_an_error() {
        let (t, lab) = lab_topology(
            "",
            &[("r1", "r", ""), ("b", "r", "lab.nat = \"independent\"\n")],
        );
        let err = Layout::with_lab("wml", &t, None, &lab).unwrap_err();
        assert!(err.to_string().contains("wml-r1"), "{err}");
    }

    #[test]
    fn a_node_name_colliding_with_a_fallback_name_is_an_error() {
        let t = topology(&[("N0", "r"), ("n0", "r")]);
        assert!(matches!(Layout::new("wml", &t), Err(LabError::Layout(_))));
    }
}
