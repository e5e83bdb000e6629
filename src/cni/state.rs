//! The node state the daemon writes (`subnet.json`): this node's pod CIDRs, their gateways,
//! the cluster CIDRs and the tunnel MTU. Read on every command, never cached, so a container
//! added after the daemon re-derived its MTU gets the new value. Unknown fields are ignored:
//! the daemon may add some without breaking a plugin already installed on the node.

use super::error::CniError;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where the daemon for interface `wm0` writes it.
pub const DEFAULT_SUBNET_FILE: &str = "/run/wiremesh/wm0/subnet.json";

/// The smallest MTU we hand to a container: IPv4's minimum reassembly size.
const MIN_MTU: u32 = 576;
/// IPv6 refuses links below this.
const MIN_MTU_V6: u32 = 1280;

#[derive(Debug, Clone, Deserialize)]
struct RawState {
    version: u32,
    #[serde(default)]
    node: String,
    pod_cidrs: Vec<IpNet>,
    gateways: Vec<IpAddr>,
    #[serde(default)]
    cluster_cidrs: Vec<IpNet>,
    mtu: u32,
}

/// A checked node state: every pod CIDR has its gateway inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub path: PathBuf,
    pub node: String,
    /// (pod CIDR, its gateway), in the file's order.
    pub pods: Vec<(IpNet, IpAddr)>,
    pub cluster_cidrs: Vec<IpNet>,
    pub mtu: u32,
}

impl NodeState {
    /// Reads `path`; a missing file means no daemon has published state for this node.
    pub fn load(path: &Path) -> Result<NodeState, CniError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CniError::NoNodeState { path: path.into() })
            }
            Err(e) => return Err(CniError::io(format!("read {}", path.display()), e)),
        };
        let raw: RawState = serde_json::from_slice(&text).map_err(|e| CniError::Decode {
            what: format!("node state {}", path.display()),
            source: e,
        })?;
        Self::check(path, raw)
    }

    fn check(path: &Path, raw: RawState) -> Result<NodeState, CniError> {
        let bad = |field, problem: String| CniError::BadNodeState {
            path: path.into(),
            field,
            problem,
        };
        if raw.version != 1 {
            return Err(bad("version", format!("{} is not 1", raw.version)));
        }
        if raw.pod_cidrs.is_empty() {
            return Err(bad("pod_cidrs", "empty".into()));
        }
        let mut pods = Vec::new();
        for cidr in &raw.pod_cidrs {
            let cidr = cidr.trunc();
            let gw = raw
                .gateways
                .iter()
                .find(|g| cidr.contains(*g))
                .ok_or_else(|| bad("gateways", format!("none inside pod CIDR {cidr}")))?;
            pods.push((cidr, *gw));
        }
        let min = if pods.iter().any(|(c, _)| c.addr().is_ipv6()) {
            MIN_MTU_V6
        } else {
            MIN_MTU
        };
        if !(min..=65535).contains(&raw.mtu) {
            return Err(bad("mtu", format!("{} is outside {min}..=65535", raw.mtu)));
        }
        Ok(NodeState {
            path: path.into(),
            node: raw.node,
            pods,
            cluster_cidrs: raw.cluster_cidrs.iter().map(IpNet::trunc).collect(),
            mtu: raw.mtu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnet.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_agreed_example_loads_and_pairs_each_cidr_with_its_gateway() {
        let (_d, p) = write(
            r#"{"version": 1, "node": "n1", "interface": "wm0",
            "pod_cidrs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
            "gateways": ["fd00:10:244:1::1", "10.244.1.1"], "cluster_cidrs": ["10.244.0.0/16"],
            "mtu": 1420, "written_unix_ms": 1765000000000, "future": true}"#,
        );
        let s = NodeState::load(&p).unwrap();
        assert_eq!(s.pods[0].1.to_string(), "10.244.1.1");
        assert_eq!(s.pods[1].1.to_string(), "fd00:10:244:1::1");
        assert_eq!(s.mtu, 1420);
    }

    #[test]
    fn a_missing_file_says_the_daemon_is_not_running() {
        let e = NodeState::load(Path::new("/nonexistent/subnet.json")).unwrap_err();
        assert!(matches!(e, CniError::NoNodeState { .. }));
        assert!(e.to_string().contains("/nonexistent/subnet.json"), "{e}");
    }

    #[test]
    fn a_pod_cidr_without_gateway_and_a_tiny_mtu_name_their_field() {
        let (_d, p) = write(
            r#"{"version":1,"pod_cidrs":["10.244.1.0/24"],"gateways":["10.9.9.1"],"mtu":1420}"#,
        );
        assert!(NodeState::load(&p)
            .unwrap_err()
            .to_string()
            .contains("gateways"));
        let (_d, p) =
            write(r#"{"version":1,"pod_cidrs":["fd00::/64"],"gateways":["fd00::1"],"mtu":1000}"#);
        assert!(NodeState::load(&p).unwrap_err().to_string().contains("mtu"));
    }
}
