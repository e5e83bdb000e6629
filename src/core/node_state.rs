//! The node state the CNI plugin (`wiremesh-cni`) reads: this node's pod CIDRs, the bridge
//! gateways, the cluster CIDRs (traffic to them is not masqueraded) and the MTU a new container
//! gets. The daemon derives it here, without I/O, and writes it to
//! `<cni_state_dir>/<interface>/subnet.json` (`io::node_state_file`); the plugin parses it with
//! [`NodeState::from_json`], so both ends share one schema.
//!
//! Rules:
//! - **Gateways** are the node's first pod addresses, the tun device's addresses
//!   (`Plan::addresses`). The bridge holds them with the pod CIDR's prefix, the tun as host
//!   addresses (/32, /128): docs/cni.md, "Node state and addressing".
//! - **Container MTU** follows the paths: the smallest tunnel MTU over the peers (each peer's
//!   discovered MTU, or the plan's before discovery) and over the hops behind a hub
//!   (`RoutePlan::beyond_mtu`), never above the tun's MTU (`Plan::mtu`), and never below
//!   [`MIN_TUNNEL_MTU`] unless the tun's MTU itself is lower: IPv6 needs 1,280 on every link,
//!   and a packet too big for a smaller path still gets "fragmentation needed" from the engine.
//!   With no peers, the tun's MTU.
//! - **Schema**: `version` is [`NODE_STATE_VERSION`]; a reader ignores fields it does not know
//!   (added fields keep the version), and refuses another version (a change it cannot read).

use crate::constants::MIN_TUNNEL_MTU;
use crate::core::plan::Plan;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The schema version this code writes and reads.
pub const NODE_STATE_VERSION: u32 = 1;

/// The smallest MTU a container link may have: IPv4's minimum datagram every host must take.
const MIN_IPV4_MTU: u16 = 576;

/// One node's state as published for the CNI plugin. Unknown fields are ignored when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Schema version, [`NODE_STATE_VERSION`].
    pub version: u32,
    /// This node's name in the topology.
    pub node: String,
    /// The tun device carrying the mesh (`wm0`).
    pub interface: String,
    /// This node's pod CIDRs: IPv4, then IPv6 when the mesh is dual stack.
    pub pod_cidrs: Vec<IpNet>,
    /// The bridge's gateway in each pod CIDR, in the same order: the CIDR's first address.
    pub gateways: Vec<IpAddr>,
    /// The mesh's cluster CIDRs: destinations a container reaches without masquerading.
    pub cluster_cidrs: Vec<IpNet>,
    /// The MTU a new container's interface gets (see the module doc).
    pub mtu: u16,
    /// When the daemon wrote this state (UNIX milliseconds), for logs and staleness checks.
    pub written_unix_ms: u64,
}

/// Why a node state could not be read; the field is a JSON path (`mtu`, `gateways[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeStateError {
    #[error("field `{field}`: {message} (line {line}, column {column})")]
    Syntax {
        field: String,
        message: String,
        line: usize,
        column: usize,
    },
    #[error(
        "field `version`: {found} is not a version this wiremesh reads ({NODE_STATE_VERSION})"
    )]
    Version { found: u32 },
    #[error("field `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

/// The MTU a new container gets, from the plan and each peer's current tunnel MTU (`None`
/// for a peer the engine does not hold: the plan's MTU for it stands).
pub fn container_mtu(plan: &Plan, path_mtu: impl Fn(&str) -> Option<u16>) -> u16 {
    let peers = plan
        .peers
        .iter()
        .map(|p| path_mtu(&p.name).unwrap_or(p.mtu));
    let behind_hubs = plan.routes.iter().filter_map(|r| r.beyond_mtu);
    let smallest = peers.chain(behind_hubs).min().unwrap_or(plan.mtu);
    smallest.min(plan.mtu).max(MIN_TUNNEL_MTU.min(plan.mtu))
}

impl NodeState {
    /// The state of `plan`'s node on `interface`, as of `written_unix_ms`.
    pub fn derive(
        plan: &Plan,
        interface: &str,
        path_mtu: impl Fn(&str) -> Option<u16>,
        written_unix_ms: u64,
    ) -> NodeState {
        NodeState {
            version: NODE_STATE_VERSION,
            node: plan.node.clone(),
            interface: interface.to_string(),
            pod_cidrs: plan.pod_cidrs.clone(),
            gateways: plan.addresses.clone(),
            cluster_cidrs: plan.cluster_cidrs.clone(),
            mtu: container_mtu(plan, path_mtu),
            written_unix_ms,
        }
    }

    /// Whether anything but the time of writing differs: what makes a rewrite worth doing.
    pub fn differs_from(&self, other: &NodeState) -> bool {
        let key = |s: &NodeState| NodeState {
            written_unix_ms: 0,
            ..s.clone()
        };
        key(self) != key(other)
    }

    /// The file's text: pretty JSON, one field a line, for people reading it too.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serialises");
        text.push('\n');
        text
    }

    /// Parses and checks a node state: the version, a gateway inside each pod CIDR, an MTU a
    /// link can have. Errors name the field.
    pub fn from_json(text: &str) -> Result<NodeState, NodeStateError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let state: NodeState = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.inner();
            NodeStateError::Syntax {
                field: e.path().to_string(),
                message: inner.to_string(),
                line: inner.line(),
                column: inner.column(),
            }
        })?;
        state.check()?;
        Ok(state)
    }

    fn check(&self) -> Result<(), NodeStateError> {
        let invalid = |field: &str, reason: String| NodeStateError::Invalid {
            field: field.to_string(),
            reason,
        };
        if self.version != NODE_STATE_VERSION {
            return Err(NodeStateError::Version {
                found: self.version,
            });
        }
        if self.node.is_empty() {
            return Err(invalid("node", "is empty".into()));
        }
        if self.interface.is_empty() {
            return Err(invalid("interface", "is empty".into()));
        }
        if self.pod_cidrs.is_empty() {
            return Err(invalid("pod_cidrs", "names no CIDR".into()));
        }
        if self.gateways.len() != self.pod_cidrs.len() {
            return Err(invalid(
                "gateways",
                format!(
                    "{} gateways for {} pod CIDRs",
                    self.gateways.len(),
                    self.pod_cidrs.len()
                ),
            ));
        }
        for (i, (gw, cidr)) in self.gateways.iter().zip(&self.pod_cidrs).enumerate() {
            if !cidr.contains(gw) {
                return Err(invalid(
                    &format!("gateways[{i}]"),
                    format!("{gw} is outside pod CIDR {cidr}"),
                ));
            }
        }
        let floor = if self.pod_cidrs.iter().any(|c| matches!(c, IpNet::V6(_))) {
            MIN_TUNNEL_MTU
        } else {
            MIN_IPV4_MTU
        };
        if self.mtu < floor {
            return Err(invalid(
                "mtu",
                format!(
                    "{} is below {floor}, the least these pod CIDRs need",
                    self.mtu
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::topology::Topology;
    use std::collections::HashMap;

    fn plan(topology: &str, node: &str) -> Plan {
        let topo = Topology::parse(topology, std::path::Path::new("t.toml")).unwrap();
        Plan::compute(&topo, node).unwrap()
    }

    const KEYS: [&str; 4] = [
        "ph4KbGWaf9ahUeIZ2be2oGpo2ocu3uP7q6RH179u1i4=",
        "XKeuRMj+IxqPUMIYJ36ZzkIiiVJansHzYD7GSYaWu/o=",
        "lvC3Z2vT2XSBTnurqrSbqTcVVK3XM88Wb2KEVycL0Bw=",
        "l8luV+gTjXxIzSPtqqRBXvOoYKZETABgWpJC/lFxYx0=",
    ];

    /// A full mesh of `nodes` (name, region) with regions r1 (1500), r2 (1400), dual stack.
    fn mesh(mode: &str, nodes: &[(&str, &str, bool)], extra: &str) -> String {
        let mut t = format!(
            "mode = \"{mode}\"\ncluster-cidr = \"10.244.0.0/16\"\ncluster-cidr-v6 = \"fd10:244::/56\"\n{extra}\n\
             [region.r1]\nunderlay-mtu = 1500\n[region.r2]\nunderlay-mtu = 1400\n"
        );
        for (i, (name, region, hub)) in nodes.iter().enumerate() {
            t += &format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"{region}\"\nhub = {hub}\n\
                 endpoint = \"192.0.2.{}:51820\"\npublic-key = \"{}\"\n",
                i + 1,
                KEYS[i]
            );
        }
        t
    }

    #[test]
    fn the_container_mtu_is_the_smallest_path_within_the_tun_mtu_and_the_ipv6_floor() {
        let t = mesh(
            "full",
            &[("a", "r1", false), ("b", "r1", false), ("c", "r2", false)],
            "",
        );
        let p = plan(&t, "a");
        assert_eq!(p.mtu, 1440);
        // (path MTUs the engine reports, the container MTU)
        let table: &[(&[(&str, u16)], u16)] = &[
            // before discovery: the plan's per-peer MTUs (c's region is 1400 → 1340)
            (&[], 1340),
            (&[("b", 1440), ("c", 1340)], 1340),
            // a path shrinks: new containers get the smaller MTU at once
            (&[("b", 1300), ("c", 1340)], 1300),
            // a path larger than the tun's MTU does not raise it above the tun's
            (&[("b", 9000), ("c", 9000)], 1440),
            // below IPv6's minimum the container stays at 1280; the engine answers the rest
            (&[("b", 1220), ("c", 1340)], 1280),
        ];
        for (paths, want) in table {
            let by_name: HashMap<&str, u16> = paths.iter().copied().collect();
            let got = container_mtu(&p, |n| by_name.get(n).copied());
            assert_eq!(got, *want, "paths {paths:?}");
        }
    }

    #[test]
    fn a_node_without_peers_gives_containers_the_tun_mtu_even_when_it_is_fixed_below_1280() {
        let alone = mesh("full", &[("a", "r2", false)], "");
        assert_eq!(container_mtu(&plan(&alone, "a"), |_| None), 1340);
        let fixed = mesh(
            "full",
            &[("a", "r1", false), ("b", "r1", false)],
            "mtu = 1200",
        );
        assert_eq!(container_mtu(&plan(&fixed, "a"), |_| Some(1200)), 1200);
    }

    #[test]
    fn a_spoke_counts_the_hops_behind_its_hub() {
        // spoke s1 (r1) → hub h1 (r1) → hub h2 (r2, 1400 underlay) → spoke s2: the first hop
        // carries 1440, the hops behind it only 1340
        let t = mesh(
            "hub",
            &[
                ("h1", "r1", true),
                ("s1", "r1", false),
                ("h2", "r2", true),
                ("s2", "r2", false),
            ],
            "",
        );
        let p = plan(&t, "s1");
        assert_eq!(container_mtu(&p, |_| Some(1440)), 1340);
    }

    #[test]
    fn the_state_carries_the_plans_cidrs_and_gateways_and_reads_back_equal() {
        let t = mesh("full", &[("a", "r1", false), ("b", "r1", false)], "");
        let p = plan(&t, "a");
        let s = NodeState::derive(&p, "wm0", |_| None, 1_765_000_000_000);
        assert_eq!(s.version, 1);
        assert_eq!(s.pod_cidrs, p.pod_cidrs);
        assert_eq!(s.gateways, p.addresses);
        assert_eq!(
            s.cluster_cidrs,
            vec![
                "10.244.0.0/16".parse::<IpNet>().unwrap(),
                "fd10:244::/56".parse().unwrap()
            ]
        );
        assert_eq!(s.mtu, 1440);
        assert_eq!(NodeState::from_json(&s.to_json()).unwrap(), s);
        let later = NodeState {
            written_unix_ms: 1_765_000_000_001,
            ..s.clone()
        };
        assert!(!later.differs_from(&s));
        let smaller = NodeState { mtu: 1400, ..later };
        assert!(smaller.differs_from(&s));
    }

    #[test]
    fn the_agreed_example_parses_and_unknown_fields_are_ignored() {
        let text = r#"{"version": 1, "node": "n1", "interface": "wm0",
            "pod_cidrs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
            "gateways": ["10.244.1.1", "fd00:10:244:1::1"],
            "cluster_cidrs": ["10.244.0.0/16"], "mtu": 1420,
            "written_unix_ms": 1765000000000, "added_later": {"x": 1}}"#;
        let s = NodeState::from_json(text).unwrap();
        assert_eq!(s.mtu, 1420);
        assert_eq!(s.gateways[1].to_string(), "fd00:10:244:1::1");
    }

    #[test]
    fn a_bad_state_is_refused_naming_the_field() {
        let good = r#"{"version": 1, "node": "n1", "interface": "wm0",
            "pod_cidrs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
            "gateways": ["10.244.1.1", "fd00:10:244:1::1"],
            "cluster_cidrs": ["10.244.0.0/16"], "mtu": 1420, "written_unix_ms": 1}"#;
        assert!(NodeState::from_json(good).is_ok());
        // (replace this, with that, the error names)
        let table = [
            (r#""mtu": 1420"#, r#""mtu": "big""#, "field `mtu`"),
            (
                r#""mtu": 1420"#,
                r#""mtu": 1000"#,
                "field `mtu`: 1000 is below 1280",
            ),
            (r#""mtu": 1420, "#, "", "missing field `mtu`"),
            (r#""version": 1"#, r#""version": 2"#, "field `version`: 2"),
            (
                r#""fd00:10:244:1::1""#,
                r#""fd00:10:244:1::zz""#,
                "field `gateways[1]`",
            ),
            (
                r#""fd00:10:244:1::1""#,
                r#""fd00:99::1""#,
                "field `gateways[1]`: fd00:99::1 is outside",
            ),
            (
                r#""10.244.1.0/24", "#,
                "",
                "field `gateways`: 2 gateways for 1 pod CIDRs",
            ),
            (
                r#""10.244.1.0/24""#,
                r#""10.244.1.0/33""#,
                "field `pod_cidrs[0]`",
            ),
            (r#""node": "n1""#, r#""node": """#, "field `node`: is empty"),
        ];
        for (from, to, want) in table {
            let text = good.replacen(from, to, 1);
            let e = NodeState::from_json(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{to}: {e}");
        }
    }
}
