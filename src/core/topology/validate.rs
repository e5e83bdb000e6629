//! Turns a [`RawTopology`] into a checked [`Topology`], collecting every problem with its place
//! rather than stopping at the first, so one run of `wiremesh plan` lists all that is wrong.

use super::lab::{check_lab_settings, LabSettings};
use super::locate::{place, Lines};
use super::nodes::check_nodes;
use super::policies::{check_part, check_policy};
use super::shown::{clip, shown};
use super::{
    Document, MeshMode, MeshSettings, Problem, RawPolicyPart, RawTopology, Region, Topology,
    TopologyError,
};
use crate::constants::{DEFAULT_LISTEN_PORT, DEFAULT_UNDERLAY_MTU};
use crate::core::ipam;
use crate::core::policy::MeshPolicy;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use toml::Spanned;

/// The most characters of a parser's message an error shows: room for the longest list of
/// expected fields (the top level's: 234 characters around the unknown name) and a mistyped name.
const MESSAGE_MAX: usize = 400;

pub(super) struct Collector {
    pub(super) lines: Lines,
    pub(super) problems: Vec<Problem>,
}

impl Collector {
    pub(super) fn push(
        &mut self,
        line: Option<usize>,
        node: Option<&str>,
        field: &str,
        message: String,
    ) {
        self.problem(line, node, None, field, message);
    }

    /// A problem of a node or of a `[[policy]]` (or of neither: a top-level field).
    pub(super) fn problem(
        &mut self,
        line: Option<usize>,
        node: Option<&str>,
        policy: Option<&str>,
        field: &str,
        message: String,
    ) {
        self.problems.push(Problem {
            line,
            node: node.map(shown),
            policy: policy.map(shown),
            field: Some(field.to_string()),
            message,
        });
    }
}

pub(super) fn parse(text: &str, path: &Path) -> Result<Document, TopologyError> {
    parse_for_lab(text, path).map(|(document, _)| document)
}

/// The document with the lab-only settings of its regions and nodes (`lab.rs`).
pub(super) fn parse_for_lab(
    text: &str,
    path: &Path,
) -> Result<(Document, LabSettings), TopologyError> {
    let (raw, mut c) = read::<RawTopology>(text, path)?;
    let document = check(raw, path, &mut c);
    finish(c, path, document)
}

/// The policy part alone (the registry's policy key; `path` names it in messages): the same
/// serde places and the same checks as a whole file's policy, without labels (no nodes here).
pub(super) fn parse_policy(text: &str, path: &Path) -> Result<MeshPolicy, TopologyError> {
    let (raw, mut c) = read::<RawPolicyPart>(text, path)?;
    let policy = check_part(&raw, &mut c);
    finish(c, path, Some(policy))
}

/// `text` read as a `T`; a serde error becomes a problem naming its line, node or policy, field.
fn read<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<(T, Collector), TopologyError> {
    let lines = Lines::new(text);
    let raw: T = toml::from_str(text).map_err(|e| {
        let message = e.message().trim();
        let place = e
            .span()
            .map(|s| place(text, s.start, message))
            .unwrap_or_default();
        TopologyError::Syntax {
            file: path.to_path_buf(),
            problem: Box::new(Problem {
                line: e.span().map(|s| lines.of(s.start)),
                node: place.node.as_deref().map(shown),
                policy: place.policy.as_deref().map(shown),
                field: place.field.as_deref().map(shown),
                // serde's messages quote what they refuse (an unknown field's whole name), and
                // the list of expected fields after it is worth keeping: a longer cut
                message: clip(message, MESSAGE_MAX),
            }),
        }
    })?;
    let c = Collector {
        lines,
        problems: Vec::new(),
    };
    Ok((raw, c))
}

/// The checked value, or every problem `c` collected.
fn finish<T>(c: Collector, path: &Path, value: Option<T>) -> Result<T, TopologyError> {
    if c.problems.is_empty() {
        Ok(value.expect("a value is built whenever no problem was recorded"))
    } else {
        Err(TopologyError::Invalid {
            file: path.to_path_buf(),
            problems: c.problems,
        })
    }
}

fn check(raw: RawTopology, path: &Path, c: &mut Collector) -> Option<(Document, LabSettings)> {
    let mode = match raw.mode.get_ref().as_str() {
        "full" => Some(MeshMode::Full),
        "hub" => Some(MeshMode::Hub),
        other => {
            let line = c.lines.at(&raw.mode);
            c.push(
                line,
                None,
                "mode",
                format!("'{}' is not a mesh mode (full or hub)", shown(other)),
            );
            None
        }
    };
    let node_prefix = raw.node_prefix.as_ref().map(|p| *p.get_ref()).unwrap_or(24);
    let cluster = cidr_v4(c, &raw.cluster_cidr, None, "cluster-cidr");
    if let Some(cluster) = cluster {
        if let Some(msg) = node_prefix_problem(node_prefix, cluster.prefix_len(), 30) {
            let line = raw.node_prefix.as_ref().and_then(|p| c.lines.at(p));
            c.push(line, None, "node-prefix", msg);
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
        if let Some(msg) = node_prefix_problem(node_prefix_v6, cluster.prefix_len(), 126) {
            let line = raw.node_prefix_v6.as_ref().and_then(|p| c.lines.at(p));
            c.push(line, None, "node-prefix-v6", msg);
        }
    }
    let listen_port = raw
        .listen_port
        .as_ref()
        .map_or(DEFAULT_LISTEN_PORT, |p| *p.get_ref());
    if let Some(port) = raw.listen_port.as_ref().filter(|p| *p.get_ref() == 0) {
        let line = c.lines.at(port);
        c.push(line, None, "listen-port", PORT_ZERO.into());
    }
    if let Some(mtu) = &raw.mtu {
        if let Some(msg) = mtu_problem(*mtu.get_ref()) {
            let line = c.lines.at(mtu);
            c.push(line, None, "mtu", msg);
        }
    }
    let mut regions = BTreeMap::new();
    for (name, region) in &raw.region {
        let given = region.get_ref().underlay_mtu.as_ref();
        let mtu = given.map_or(DEFAULT_UNDERLAY_MTU, |m| *m.get_ref());
        if let Some((given, msg)) = given.zip(underlay_mtu_problem(mtu)) {
            let line = c.lines.at(given);
            c.push(
                line,
                None,
                &format!("region.{}.underlay-mtu", shown(name)),
                msg,
            );
        }
        regions.insert(name.clone(), Region { underlay_mtu: mtu });
    }

    let nodes = check_nodes(&raw, c, cluster, cluster_v6, listen_port);

    if mode == Some(MeshMode::Hub) {
        let with_hub: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.hub)
            .map(|n| n.region.as_str())
            .collect();
        let mut seen = HashSet::new();
        for (raw_node, node) in raw.node.iter().zip(&nodes) {
            if !with_hub.contains(node.region.as_str()) && seen.insert(node.region.as_str()) {
                let line = c.lines.at(&raw_node.get_ref().region);
                c.push(line, Some(&node.name), "hub", format!(
                    "region '{}' has no hub; mode = \"hub\" needs `hub = true` on at least one node of each region",
                    shown(&node.region)
                ));
            }
        }
    }
    let lab_links = check_lab_links(&raw, &nodes, c);
    let lab = check_lab_settings(&raw, mode, c);
    let policy = check_policy(&raw, c);
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
    if let Err(mut p) = ipam::assign(&mut nodes, cluster, node_prefix, cluster_v6, node_prefix_v6) {
        // the pool's own line: that is what to edit
        p.line = match p.field.as_deref() {
            Some("cluster-cidr-v6") => raw.cluster_cidr_v6.as_ref().and_then(|s| c.lines.at(s)),
            _ => c.lines.at(&raw.cluster_cidr),
        };
        c.problems.push(p);
        return None;
    }
    let topology = Topology {
        source: path.to_path_buf(),
        mesh: MeshSettings {
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
        },
        nodes,
        lab_links,
    };
    Some((Document { topology, policy }, lab))
}

fn check_lab_links(
    raw: &RawTopology,
    nodes: &[super::Node],
    c: &mut Collector,
) -> Vec<super::LabLink> {
    let Some(lab) = &raw.lab else {
        return Vec::new();
    };
    let regions: HashSet<&str> = nodes.iter().map(|n| n.region.as_str()).collect();
    let mut links = Vec::new();
    for l in &lab.link {
        let line = c.lines.at(l);
        let link = l.get_ref();
        let [a, b] = &link.regions;
        for r in [a, b] {
            if !regions.contains(r.as_str()) {
                c.push(
                    line,
                    None,
                    "lab.link.regions",
                    format!("no node is in region '{}'", shown(r)),
                );
            }
        }
        if a == b {
            c.push(
                line,
                None,
                "lab.link.regions",
                format!(
                    "a link joins two different regions, not '{}' twice",
                    shown(a)
                ),
            );
        }
        for (field, v) in [
            ("lab.link.mtu", link.mtu),
            ("lab.link.black-hole-above", link.black_hole_above),
        ] {
            if let Some(v) = v {
                if !(576..=9000).contains(&v) {
                    c.push(line, None, field, format!("{v} is outside 576-9000"));
                }
            }
        }
        if link.mtu.is_none() && link.black_hole_above.is_none() {
            c.push(
                line,
                None,
                "lab.link",
                "set `mtu`, `black-hole-above`, or both".into(),
            );
        }
        links.push(super::LabLink {
            regions: (a.clone(), b.clone()),
            mtu: link.mtu,
            black_hole_above: link.black_hole_above,
        });
    }
    links
}

/// The address families a CIDR field can hold, with the example its error message gives.
pub(crate) trait Cidr: std::str::FromStr + std::fmt::Display + Copy + PartialEq {
    const EXAMPLE: &'static str;
    fn trunc(&self) -> Self;
}

impl Cidr for Ipv4Net {
    const EXAMPLE: &'static str = "an IPv4 CIDR like 10.244.0.0/16";
    fn trunc(&self) -> Self {
        Ipv4Net::trunc(self)
    }
}

impl Cidr for Ipv6Net {
    const EXAMPLE: &'static str = "an IPv6 CIDR like fd00:10:244::/56";
    fn trunc(&self) -> Self {
        Ipv6Net::trunc(self)
    }
}

impl Cidr for IpNet {
    const EXAMPLE: &'static str = "a CIDR like 10.244.7.0/24 or fd10:244:0:7::/64";
    fn trunc(&self) -> Self {
        IpNet::trunc(self)
    }
}

/// Parses a CIDR field: a network address of the right family, without host bits.
pub(super) fn cidr<N: Cidr>(
    c: &mut Collector,
    s: &Spanned<String>,
    node: Option<&str>,
    field: &str,
) -> Option<N> {
    let line = c.lines.at(s);
    parse_cidr(s.get_ref())
        .map_err(|msg| c.push(line, node, field, msg))
        .ok()
}

/// A CIDR text checked: of the right family and a network address. Shared with the registry
/// (`core/registry/validate.rs`), so a CIDR is refused with the same words wherever it is written.
pub(crate) fn parse_cidr<N: Cidr>(text: &str) -> Result<N, String> {
    match text.trim().parse::<N>() {
        Ok(net) if net.trunc() != net => Err(format!(
            "{net} has host bits set; did you mean {}?",
            net.trunc()
        )),
        Ok(net) => Ok(net),
        Err(_) => Err(format!("'{}' is not {}", shown(text), N::EXAMPLE)),
    }
}

/// Why `prefix` cannot cut a cluster of `/cluster_len` into slots: it must be longer than the
/// cluster's and at most `max` (30 for IPv4, 126 for IPv6). Shared with the registry's settings.
pub(crate) fn node_prefix_problem(prefix: u8, cluster_len: u8, max: u8) -> Option<String> {
    (prefix <= cluster_len || prefix > max).then(|| {
        format!("/{prefix} must be longer than the cluster's /{cluster_len} and at most /{max}")
    })
}

/// The words for a listen port of 0, in the file and in the registry.
pub(crate) const PORT_ZERO: &str = "port 0 is not a port to listen on";

/// Why a tunnel `mtu` is refused, if it is.
pub(crate) fn mtu_problem(mtu: u16) -> Option<String> {
    (!(576..=65_455).contains(&mtu)).then(|| format!("{mtu} is outside 576-65455"))
}

/// Why a region's `underlay-mtu` is refused, if it is.
pub(crate) fn underlay_mtu_problem(mtu: u16) -> Option<String> {
    (mtu < 576).then(|| format!("{mtu} is outside 576-65535"))
}

/// An IPv4 CIDR field.
pub(super) fn cidr_v4(
    c: &mut Collector,
    s: &Spanned<String>,
    node: Option<&str>,
    field: &str,
) -> Option<Ipv4Net> {
    cidr(c, s, node, field)
}

/// An IPv6 CIDR field.
pub(super) fn cidr_v6(
    c: &mut Collector,
    s: &Spanned<String>,
    node: Option<&str>,
    field: &str,
) -> Option<Ipv6Net> {
    cidr(c, s, node, field)
}
