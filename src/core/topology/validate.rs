//! Turns a [`RawTopology`] into a checked [`Topology`], collecting every problem with its place
//! rather than stopping at the first, so one run of `wiremesh plan` lists all that is wrong.

use super::{Endpoint, MeshMode, Node, Problem, RawTopology, Region, Topology, TopologyError};
use crate::constants::{DEFAULT_LISTEN_PORT, DEFAULT_UNDERLAY_MTU};
use crate::core::ipam;
use crate::core::key::PublicKey;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use toml::Spanned;

/// Maps byte offsets to 1-based line numbers.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn of(&self, offset: usize) -> usize {
        let end = offset.min(self.0.len());
        self.0.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
    fn at<T>(&self, s: &Spanned<T>) -> Option<usize> {
        Some(self.of(s.span().start))
    }
}

struct Collector<'a> {
    lines: Lines<'a>,
    problems: Vec<Problem>,
}

impl Collector<'_> {
    fn push(&mut self, line: Option<usize>, node: Option<&str>, field: &str, message: String) {
        self.problems.push(Problem {
            line,
            node: node.map(str::to_string),
            field: Some(field.to_string()),
            message,
        });
    }
}

pub(super) fn parse(text: &str, path: &Path) -> Result<Topology, TopologyError> {
    let lines = Lines(text);
    let raw: RawTopology = toml::from_str(text).map_err(|e| TopologyError::Syntax {
        file: path.to_path_buf(),
        problem: Problem {
            line: e.span().map(|s| lines.of(s.start)),
            node: None,
            field: None,
            message: e.message().trim().to_string(),
        },
    })?;
    let mut c = Collector {
        lines,
        problems: Vec::new(),
    };
    let topology = check(raw, path, &mut c);
    if c.problems.is_empty() {
        Ok(topology.expect("a topology is built whenever no problem was recorded"))
    } else {
        Err(TopologyError::Invalid {
            file: path.to_path_buf(),
            problems: c.problems,
        })
    }
}

fn check(raw: RawTopology, path: &Path, c: &mut Collector) -> Option<Topology> {
    let mode = match raw.mode.get_ref().as_str() {
        "full" => Some(MeshMode::Full),
        "hub" => Some(MeshMode::Hub),
        other => {
            let line = c.lines.at(&raw.mode);
            c.push(
                line,
                None,
                "mode",
                format!("'{other}' is not a mesh mode (full or hub)"),
            );
            None
        }
    };
    let node_prefix = raw.node_prefix.as_ref().map(|p| *p.get_ref()).unwrap_or(24);
    let cluster = cidr_v4(c, &raw.cluster_cidr, None, "cluster-cidr");
    if let Some(cluster) = cluster {
        if node_prefix <= cluster.prefix_len() || node_prefix > 30 {
            let line = raw.node_prefix.as_ref().and_then(|p| c.lines.at(p));
            c.push(
                line,
                None,
                "node-prefix",
                format!(
                    "/{node_prefix} must be longer than the cluster's /{} and at most /30",
                    cluster.prefix_len()
                ),
            );
        }
    }
    let node_prefix_v6 = raw
        .node_prefix_v6
        .as_ref()
        .map(|p| *p.get_ref())
        .unwrap_or(64);
    let cluster_v6 = raw
        .cluster_cidr_v6
        .as_ref()
        .and_then(|s| cidr_v6(c, s, None, "cluster-cidr-v6"));
    if let Some(cluster) = cluster_v6 {
        if node_prefix_v6 <= cluster.prefix_len() || node_prefix_v6 > 126 {
            let line = raw.node_prefix_v6.as_ref().and_then(|p| c.lines.at(p));
            c.push(
                line,
                None,
                "node-prefix-v6",
                format!(
                    "/{node_prefix_v6} must be longer than the cluster's /{} and at most /126",
                    cluster.prefix_len()
                ),
            );
        }
    }
    let listen_port = raw.listen_port.unwrap_or(DEFAULT_LISTEN_PORT);
    if listen_port == 0 {
        c.push(
            None,
            None,
            "listen-port",
            "port 0 is not a port to listen on".into(),
        );
    }
    if let Some(mtu) = &raw.mtu {
        if !(576..=65_455).contains(mtu.get_ref()) {
            let line = c.lines.at(mtu);
            c.push(
                line,
                None,
                "mtu",
                format!("{} is outside 576-65455", mtu.get_ref()),
            );
        }
    }
    let mut regions = BTreeMap::new();
    for (name, region) in &raw.region {
        let mtu = region
            .get_ref()
            .underlay_mtu
            .unwrap_or(DEFAULT_UNDERLAY_MTU);
        if !(576..=65_535).contains(&mtu) {
            let line = c.lines.at(region);
            c.push(
                line,
                None,
                &format!("region.{name}.underlay-mtu"),
                format!("{mtu} is outside 576-65535"),
            );
        }
        regions.insert(name.clone(), Region { underlay_mtu: mtu });
    }

    let nodes = check_nodes(&raw, c, cluster, cluster_v6, listen_port);

    if mode == Some(MeshMode::Hub) {
        let mut seen = BTreeSet::new();
        for (raw_node, node) in raw.node.iter().zip(&nodes) {
            if seen.insert(node.region.clone())
                && !nodes.iter().any(|n| n.hub && n.region == node.region)
            {
                let line = c.lines.at(&raw_node.get_ref().region);
                c.push(line, Some(&node.name), "hub", format!(
                    "region '{}' has no hub; mode = \"hub\" needs `hub = true` on at least one node of each region",
                    node.region
                ));
            }
        }
    }
    if raw.node.is_empty() {
        c.push(
            None,
            None,
            "node",
            "the topology has no [[node]] entries".into(),
        );
    }

    if !c.problems.is_empty() {
        return None;
    }
    let cluster = cluster?;
    let mut nodes = nodes;
    if let Err(p) = ipam::assign(
        &mut nodes,
        &raw,
        cluster,
        node_prefix,
        cluster_v6,
        node_prefix_v6,
    ) {
        c.problems.push(p);
        return None;
    }
    Some(Topology {
        source: path.to_path_buf(),
        mode: mode?,
        cluster_cidr: cluster,
        node_prefix,
        cluster_cidr_v6: cluster_v6,
        node_prefix_v6,
        listen_port,
        persistent_keepalive: raw
            .persistent_keepalive
            .map(|k| *k.get_ref())
            .filter(|&k| k > 0),
        mtu: raw.mtu.map(|m| *m.get_ref()),
        regions,
        nodes,
    })
}

/// Checks each node on its own and against the others. Nodes whose pod CIDR is not pinned get
/// the unspecified network here; IPAM fills them in once everything else is known to be valid.
fn check_nodes(
    raw: &RawTopology,
    c: &mut Collector,
    cluster: Option<Ipv4Net>,
    cluster_v6: Option<Ipv6Net>,
    listen_port: u16,
) -> Vec<Node> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut keys: HashMap<PublicKey, String> = HashMap::new();
    let mut pinned: Vec<(Ipv4Net, String)> = Vec::new();
    let mut pinned_v6: Vec<(Ipv6Net, String)> = Vec::new();
    let mut nodes = Vec::new();
    for spanned in &raw.node {
        let n = spanned.get_ref();
        let name = n.name.get_ref().clone();
        let node_line = c.lines.at(&n.name);
        if !valid_name(&name) {
            c.push(
                node_line,
                Some(&name),
                "name",
                "must be 1-63 letters, digits, '-', '_' or '.'".into(),
            );
        }
        if let Some(first) = names.insert(name.clone(), node_line.unwrap_or(0)) {
            c.push(
                node_line,
                Some(&name),
                "name",
                format!("duplicate node name (first at line {first})"),
            );
        }
        for (field, value) in [("cloud", &n.cloud), ("region", &n.region)] {
            if !valid_name(value.get_ref()) {
                let line = c.lines.at(value);
                c.push(
                    line,
                    Some(&name),
                    field,
                    "must be 1-63 letters, digits, '-', '_' or '.'".into(),
                );
            }
        }
        let node_port = n.listen_port.unwrap_or(listen_port);
        if node_port == 0 {
            c.push(
                node_line,
                Some(&name),
                "listen-port",
                "port 0 is not a port to listen on".into(),
            );
        }
        let endpoint = n.endpoint.as_ref().and_then(|e| {
            Endpoint::parse(e.get_ref(), node_port)
                .map_err(|err| {
                    let line = c.lines.at(e);
                    c.push(
                        line,
                        Some(&name),
                        "endpoint",
                        format!("'{}': {err}", e.get_ref()),
                    );
                })
                .ok()
        });
        let key = match n.public_key.get_ref().parse::<PublicKey>() {
            Ok(k) => {
                if let Some(other) = keys.insert(k, name.clone()) {
                    let line = c.lines.at(&n.public_key);
                    c.push(
                        line,
                        Some(&name),
                        "public-key",
                        format!("same key as node '{other}'"),
                    );
                }
                k
            }
            Err(err) => {
                let line = c.lines.at(&n.public_key);
                c.push(
                    line,
                    Some(&name),
                    "public-key",
                    format!("not a WireGuard key: {err}"),
                );
                PublicKey::from_bytes([0; 32])
            }
        };
        let pod_cidr = n.pod_cidr.as_ref().and_then(|s| {
            let net = cidr_v4(c, s, Some(&name), "pod-cidr")?;
            let line = c.lines.at(s);
            if let Some(cluster) = cluster {
                if !cluster.contains(&net) {
                    c.push(
                        line,
                        Some(&name),
                        "pod-cidr",
                        format!("{net} is outside the cluster CIDR {cluster}"),
                    );
                }
            }
            if net.prefix_len() > 30 {
                c.push(
                    line,
                    Some(&name),
                    "pod-cidr",
                    format!("{net} is too small; at most /30"),
                );
            }
            if let Some((_, other)) = pinned
                .iter()
                .find(|(p, _)| p.contains(&net) || net.contains(p))
            {
                c.push(
                    line,
                    Some(&name),
                    "pod-cidr",
                    format!("{net} overlaps node '{other}'"),
                );
            }
            pinned.push((net, name.clone()));
            Some(net)
        });
        let pod_cidr_v6 = n.pod_cidr_v6.as_ref().and_then(|s| {
            let net = cidr_v6(c, s, Some(&name), "pod-cidr-v6")?;
            let line = c.lines.at(s);
            match cluster_v6 {
                None => c.push(
                    line,
                    Some(&name),
                    "pod-cidr-v6",
                    "set, but the topology has no cluster-cidr-v6".into(),
                ),
                Some(cluster) if !cluster.contains(&net) => c.push(
                    line,
                    Some(&name),
                    "pod-cidr-v6",
                    format!("{net} is outside the cluster CIDR {cluster}"),
                ),
                _ => {}
            }
            if let Some((_, other)) = pinned_v6
                .iter()
                .find(|(p, _)| p.contains(&net) || net.contains(p))
            {
                c.push(
                    line,
                    Some(&name),
                    "pod-cidr-v6",
                    format!("{net} overlaps node '{other}'"),
                );
            }
            pinned_v6.push((net, name.clone()));
            Some(net)
        });
        nodes.push(Node {
            name,
            cloud: n.cloud.get_ref().clone(),
            region: n.region.get_ref().clone(),
            endpoint,
            public_key: key,
            pod_cidr: pod_cidr.unwrap_or_else(|| Ipv4Net::new(0.into(), 0).expect("/0 is valid")),
            pod_cidr_v6,
            pod_cidr_pinned: pod_cidr.is_some(),
            hub: n.hub,
            listen_port: node_port,
        });
    }
    nodes
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn cidr_v4(
    c: &mut Collector,
    s: &Spanned<String>,
    node: Option<&str>,
    field: &str,
) -> Option<Ipv4Net> {
    let line = c.lines.at(s);
    match s.get_ref().trim().parse::<Ipv4Net>() {
        Ok(net) if net.trunc() != net => {
            c.push(
                line,
                node,
                field,
                format!("{net} has host bits set; did you mean {}?", net.trunc()),
            );
            None
        }
        Ok(net) => Some(net),
        Err(_) => {
            c.push(
                line,
                node,
                field,
                format!("'{}' is not an IPv4 CIDR like 10.244.0.0/16", s.get_ref()),
            );
            None
        }
    }
}

fn cidr_v6(
    c: &mut Collector,
    s: &Spanned<String>,
    node: Option<&str>,
    field: &str,
) -> Option<Ipv6Net> {
    let line = c.lines.at(s);
    match s.get_ref().trim().parse::<Ipv6Net>() {
        Ok(net) if net.trunc() != net => {
            c.push(
                line,
                node,
                field,
                format!("{net} has host bits set; did you mean {}?", net.trunc()),
            );
            None
        }
        Ok(net) => Some(net),
        Err(_) => {
            c.push(
                line,
                node,
                field,
                format!(
                    "'{}' is not an IPv6 CIDR like fd00:10:244::/56",
                    s.get_ref()
                ),
            );
            None
        }
    }
}
