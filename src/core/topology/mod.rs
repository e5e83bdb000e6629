//! Checked topology types. Once a file has become a [`Topology`], every name, key, CIDR and
//! endpoint in it is valid, so the planner and the engine never re-check them.

mod claims;
mod endpoints;
mod error;
mod file;
mod lab;
mod locate;
mod nodes;
mod policies;
mod shown;
mod validate;

pub(crate) use claims::{Cidr as ClaimedCidr, Claims};
pub use error::{Problem, TopologyError};
pub use file::{
    RawCidrSet, RawLab, RawLink, RawNode, RawNodeLab, RawPolicy, RawPolicyPart, RawRegion,
    RawRegionLab, RawSelector, RawTopology,
};
pub(crate) use nodes::{valid_name, NAME_RULE};
pub(crate) use shown::{clip, shown};
pub(crate) use validate::{
    mtu_problem, node_prefix_problem, parse_cidr, underlay_mtu_problem, PORT_ZERO,
};

use crate::core::key::PublicKey;
pub(crate) use endpoints::valid_scope;
pub use endpoints::{
    check_list, only_one_public, Candidate, CheckedList, EntryText, ListProblem, Part,
    ScopedEndpoint, MAX_ENDPOINTS,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
pub use lab::{LabNat, LabSettings};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// How nodes are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeshMode {
    /// Every node peers with every other node.
    Full,
    /// Spokes peer with their region's hubs; hubs peer with each other.
    Hub,
}

/// Where a peer is reached on the underlay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Addr(SocketAddr),
    /// Resolved at run time and again when the answer's TTL runs out.
    Dns {
        host: String,
        port: u16,
    },
}

/// Why an endpoint string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("empty endpoint")]
    Empty,
    #[error("bad port '{}' (expected 1-65535)", shown::shown(.0))]
    Port(String),
    #[error("'{}' is neither an IP address nor a DNS name", shown::shown(.0))]
    Host(String),
    #[error("IPv6 address must be in brackets: [addr]:port")]
    Brackets,
}

impl Endpoint {
    /// Parses `ip:port`, `[ipv6]:port`, `name:port`, or any of those without the port.
    pub fn parse(s: &str, default_port: u16) -> Result<Self, EndpointError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(EndpointError::Empty);
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(EndpointError::Port("0".into()));
            }
            return Ok(Endpoint::Addr(addr));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            if ip.is_ipv6() {
                return Err(EndpointError::Brackets);
            }
            return Ok(Endpoint::Addr(SocketAddr::new(ip, default_port)));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, port) = rest.split_once(']').ok_or(EndpointError::Brackets)?;
            let ip: IpAddr = ip.parse().map_err(|_| EndpointError::Host(ip.into()))?;
            let port = match port.strip_prefix(':') {
                Some(p) => parse_port(p)?,
                None if port.is_empty() => default_port,
                None => return Err(EndpointError::Port(port.into())),
            };
            return Ok(Endpoint::Addr(SocketAddr::new(ip, port)));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (s, default_port),
        };
        if host.contains(':') {
            return Err(EndpointError::Brackets);
        }
        if !is_dns_name(host) {
            return Err(EndpointError::Host(host.into()));
        }
        Ok(Endpoint::Dns {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

fn parse_port(p: &str) -> Result<u16, EndpointError> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(EndpointError::Port(p.into())),
        Ok(port) => Ok(port),
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens; not all-numeric.
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    let last = host.rsplit('.').next().unwrap_or("");
    labels_ok && !last.chars().all(|c| c.is_ascii_digit())
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(a) => write!(f, "{a}"),
            Endpoint::Dns { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, EndpointError> {
        Endpoint::parse(s, crate::constants::DEFAULT_LISTEN_PORT)
    }
}

/// Settings of one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub underlay_mtu: u16,
}

/// One checked node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub cloud: String,
    pub region: String,
    /// The endpoint peers outside the node's scopes use; `None`: behind NAT.
    pub endpoint: Option<Endpoint>,
    /// Endpoints reachable only inside a scope (a VPC, a LAN): for peers that share it.
    pub scoped: Vec<ScopedEndpoint>,
    pub public_key: PublicKey,
    pub pod_cidr: Ipv4Net,
    pub pod_cidr_v6: Option<Ipv6Net>,
    /// True when the file fixes the pod CIDR; false when IPAM chose it.
    pub pod_cidr_pinned: bool,
    /// True when the file fixes the IPv6 pod CIDR; false when IPAM chose it or there is none.
    pub pod_cidr_v6_pinned: bool,
    pub hub: bool,
    pub listen_port: u16,
}

impl Node {
    /// The endpoint `from` should send to: the node's address in a scope `from` shares (the
    /// first in the node's order), else its unscoped one.
    pub fn endpoint_for(&self, from: &Node) -> Option<&Endpoint> {
        self.scoped
            .iter()
            .find(|e| from.scoped.iter().any(|f| f.scope == e.scope))
            .map(|e| &e.endpoint)
            .or(self.endpoint.as_ref())
    }

    /// Every endpoint `from` may try, best first: the node's addresses in scopes `from` shares
    /// (in the node's order), then its unscoped one. The first is [`Self::endpoint_for`]'s.
    pub fn candidates_for(&self, from: &Node) -> Vec<Candidate> {
        let shared = self
            .scoped
            .iter()
            .filter(|e| from.scoped.iter().any(|f| f.scope == e.scope))
            .map(|e| Candidate {
                endpoint: e.endpoint.clone(),
                scope: Some(e.scope.clone()),
            });
        let public = self.endpoint.iter().map(|e| Candidate {
            endpoint: e.clone(),
            scope: None,
        });
        shared.chain(public).collect()
    }

    /// The node's own overlay addresses: the first host address of each pod CIDR.
    pub fn overlay_addrs(&self) -> Vec<IpAddr> {
        let mut addrs = vec![IpAddr::V4(crate::core::ipam::first_host_v4(self.pod_cidr))];
        if let Some(v6) = self.pod_cidr_v6 {
            addrs.push(IpAddr::V6(crate::core::ipam::first_host_v6(v6)));
        }
        addrs
    }

    /// The node's pod CIDRs, IPv4 first.
    pub fn pod_cidrs(&self) -> Vec<IpNet> {
        let mut cidrs = vec![IpNet::V4(self.pod_cidr)];
        cidrs.extend(self.pod_cidr_v6.map(IpNet::V6));
        cidrs
    }
}

/// What holds for the whole mesh: the top level of a topology file, and the settings of a
/// registry (`core/registry/validate.rs` wraps it with what only the registry has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    pub mode: MeshMode,
    pub cluster_cidr: Ipv4Net,
    pub node_prefix: u8,
    pub cluster_cidr_v6: Option<Ipv6Net>,
    pub node_prefix_v6: u8,
    pub listen_port: u16,
    pub persistent_keepalive: Option<u16>,
    pub mtu: Option<u16>,
    pub regions: BTreeMap<String, Region>,
}

/// A checked topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Where it was read from, for messages.
    pub source: PathBuf,
    pub mesh: MeshSettings,
    pub nodes: Vec<Node>,
    /// Simulated inter-region links for `wiremesh lab`.
    pub lab_links: Vec<LabLink>,
}

/// A topology file's whole content: the mesh, and the policy that says who may reach whom.
/// The policy (with the nodes' labels) is kept beside the [`Topology`] rather than in it: the
/// registry builds `Topology` and `Node` values of its own, and its policy from a key of its own
/// with the labels of its records (`core/registry/policy.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub topology: Topology,
    pub policy: crate::core::policy::MeshPolicy,
}

/// A limit on the lab's link between two regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabLink {
    pub regions: (String, String),
    pub mtu: Option<u16>,
    pub black_hole_above: Option<u16>,
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Checks topology text; `path` is used only in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, TopologyError> {
        validate::parse(text, path).map(|d| d.topology)
    }

    /// Checks topology text and returns, beside it, what only `wiremesh lab` reads: its VPC
    /// regions and NATed nodes (docs/nat.md, section 6). `path` is used only in messages.
    pub fn parse_for_lab(text: &str, path: &Path) -> Result<(Self, LabSettings), TopologyError> {
        validate::parse_for_lab(text, path).map(|(d, lab)| (d.topology, lab))
    }

    /// Reads and checks a topology file with its policy (docs/policy.md).
    pub fn load_with_policy(path: &Path) -> Result<Document, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse_with_policy(&text, path)
    }

    /// Checks topology text with its policy; `path` is used only in messages. A file is valid
    /// only with its policy valid, so [`Topology::parse`] refuses what this refuses.
    pub fn parse_with_policy(text: &str, path: &Path) -> Result<Document, TopologyError> {
        validate::parse(text, path)
    }

    /// Checks the policy part of a topology alone (`default-action`, `policy-mode`,
    /// `[cidr-set]`s, `[[policy]]`), as the registry's policy key holds it; `path` names it in
    /// messages (the registry gives the key). Its `labels` are empty: they are the nodes'.
    pub fn parse_policy(
        text: &str,
        path: &Path,
    ) -> Result<crate::core::policy::MeshPolicy, TopologyError> {
        validate::parse_policy(text, path)
    }

    pub fn node(&self, name: &str) -> Result<&Node, TopologyError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| TopologyError::UnknownNode(name.to_string()))
    }

    /// Underlay MTU of a region (1500 unless the file says otherwise).
    pub fn underlay_mtu(&self, region: &str) -> u16 {
        self.mesh
            .regions
            .get(region)
            .map(|r| r.underlay_mtu)
            .unwrap_or(crate::constants::DEFAULT_UNDERLAY_MTU)
    }

    /// Hubs of a region, in file order.
    pub fn hubs_of<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes
            .iter()
            .filter(move |n| n.hub && n.region == region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_in_every_accepted_form() {
        let cases: &[(&str, Endpoint)] = &[
            (
                "192.0.2.1:51820",
                Endpoint::Addr("192.0.2.1:51820".parse().unwrap()),
            ),
            (
                "192.0.2.1",
                Endpoint::Addr("192.0.2.1:7777".parse().unwrap()),
            ),
            (
                "[2001:db8::1]:51000",
                Endpoint::Addr("[2001:db8::1]:51000".parse().unwrap()),
            ),
            (
                "[2001:db8::1]",
                Endpoint::Addr("[2001:db8::1]:7777".parse().unwrap()),
            ),
            (
                "Node-A.example.com:5",
                Endpoint::Dns {
                    host: "node-a.example.com".into(),
                    port: 5,
                },
            ),
            (
                "gw.example.net",
                Endpoint::Dns {
                    host: "gw.example.net".into(),
                    port: 7777,
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&Endpoint::parse(text, 7777).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn an_unknown_node_is_named_escaped_and_cut() {
        let name = format!("\u{1b}[31m{}", "x".repeat(1000));
        let shown = TopologyError::UnknownNode(name).to_string();
        assert!(shown.starts_with("node '\\u{1b}[31mxxx"), "{shown}");
        assert!(
            shown.ends_with("… (1005 bytes)' is not in the topology"),
            "{shown}"
        );
    }

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        let cases: &[(&str, EndpointError)] = &[
            ("", EndpointError::Empty),
            ("1.2.3.4:0", EndpointError::Port("0".into())),
            ("host:99999", EndpointError::Port("99999".into())),
            ("2001:db8::1", EndpointError::Brackets),
            ("bad_host:1", EndpointError::Host("bad_host".into())),
            ("300.1.1.1:5", EndpointError::Host("300.1.1.1".into())),
            ("-a.example:5", EndpointError::Host("-a.example".into())),
        ];
        for (text, want) in cases {
            assert_eq!(&Endpoint::parse(text, 7777).unwrap_err(), want, "{text}");
        }
    }
}
