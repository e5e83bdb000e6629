//! What a lab leaves on disk under `/run/wiremesh-lab/<prefix>/`, so another process (`wiremesh
//! lab status`, `lab down`) can find and remove it:
//!
//! ```text
//! state.json       prefix, layout, namespaces created, daemon pids
//! topology.toml    the derived topology the daemons read
//! keys/<node>.key  private keys, 0600
//! logs/<node>.log  each daemon's stdout and stderr
//! cni/<node>/       the node's conflist and its plugins' stores (see [`super::containers`])
//! ```

use super::layout::{absent_endpoint, Layout};
use super::{io_at, LabError};
use crate::core::key::PublicKey;
use crate::core::topology::Topology;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Root of all labs' state directories (tmpfs: a reboot, which also drops namespaces, clears it).
pub const STATE_ROOT: &str = "/run/wiremesh-lab";

/// A running daemon, identified by pid and start time so a recycled pid is never signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonPid {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks since boot when the process started.
    pub start_time: u64,
}

/// The content of `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub layout: Layout,
    /// Namespaces this lab created, in creation order; teardown deletes exactly these.
    pub namespaces: Vec<String>,
    /// The topology the user gave.
    pub user_topology: PathBuf,
    /// Daemon per node name, while it runs.
    pub daemons: BTreeMap<String, DaemonPid>,
    /// Containers attached through the plugin chain, in the order they were added.
    #[serde(default)]
    pub containers: Vec<super::containers::Container>,
    /// The `CNI_PATH` the containers were added with, which their DEL uses too.
    #[serde(default)]
    pub cni_path: String,
    /// The etcd members of a lab on a registry (`lab up --registry etcd`).
    #[serde(default)]
    pub registry: Option<super::registry::LabRegistry>,
}

/// Paths inside one lab's state directory.
#[derive(Debug, Clone)]
pub struct StateDir(PathBuf);

impl StateDir {
    pub fn for_prefix(prefix: &str) -> Self {
        Self(Path::new(STATE_ROOT).join(prefix))
    }
    pub fn root(&self) -> &Path {
        &self.0
    }
    pub fn state_file(&self) -> PathBuf {
        self.0.join("state.json")
    }
    pub fn topology(&self) -> PathBuf {
        self.0.join("topology.toml")
    }
    pub fn key(&self, node: &str) -> PathBuf {
        self.0.join("keys").join(format!("{node}.key"))
    }
    pub fn log(&self, node: &str) -> PathBuf {
        self.0.join("logs").join(format!("{node}.log"))
    }
    /// A node's CNI directory: its conflist and the plugins' stores.
    pub fn cni(&self, node: &str) -> PathBuf {
        self.0.join("cni").join(node)
    }
    /// The etcd members' data and the daemons' registry snapshots.
    pub fn etcd(&self) -> PathBuf {
        self.0.join("etcd")
    }
    pub fn registry_snapshot(&self, node: &str) -> PathBuf {
        self.0.join("snapshots").join(format!("{node}.json"))
    }
    pub fn conflist(&self, node: &str) -> PathBuf {
        self.cni(node).join("net.conflist")
    }

    /// Creates the directory tree; `keys/` is 0700 like any directory of private keys.
    pub fn create(&self) -> Result<(), LabError> {
        use std::os::unix::fs::DirBuilderExt;
        for (dir, mode) in [
            (self.0.clone(), 0o755),
            (self.0.join("keys"), 0o700),
            (self.0.join("logs"), 0o755),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&dir)
                .map_err(io_at(&dir))?;
        }
        Ok(())
    }

    /// Writes `state.json` atomically (write then rename), so a reader never sees half of it.
    pub fn save(&self, state: &LabState) -> Result<(), LabError> {
        let path = self.state_file();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(state).expect("lab state serializes");
        std::fs::write(&tmp, text).map_err(io_at(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_at(&path))
    }

    pub fn load(&self) -> Result<LabState, LabError> {
        let path = self.state_file();
        let text = std::fs::read_to_string(&path).map_err(io_at(&path))?;
        serde_json::from_str(&text).map_err(|e| LabError::State {
            path,
            message: e.to_string(),
        })
    }

    pub fn remove(&self) -> Result<(), LabError> {
        match std::fs::remove_dir_all(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_at(&self.0)(e)),
            _ => {
                // The shared root goes too once the last lab is gone (fails harmlessly otherwise).
                let _ = std::fs::remove_dir(STATE_ROOT);
                Ok(())
            }
        }
    }
}

/// The user's topology with every node's `public-key`, `endpoint` and `pod-cidr` (and
/// `pod-cidr-v6`, when set) replaced by the lab's. Edited with `toml_edit`, so the user's
/// comments and ordering survive and the file reads like theirs.
///
/// A NATed node gets no endpoint. A node of a VPC region also gets `endpoints` with its address
/// on the VPC's private bridge, scoped to the VPC: a VPC pair uses that, everyone else the
/// underlay `endpoint`.
pub fn derive_topology(
    text: &str,
    source: &Path,
    topology: &Topology,
    layout: &Layout,
    keys: &BTreeMap<String, PublicKey>,
    ipv6_underlay: bool,
) -> Result<String, LabError> {
    let bad = |message: String| LabError::State {
        path: source.to_path_buf(),
        message,
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| bad(e.to_string()))?;
    let tables = doc
        .get_mut("node")
        .and_then(|n| n.as_array_of_tables_mut())
        .ok_or_else(|| bad("no [[node]] tables".into()))?;
    // by name once: `Topology::node` is a linear search, and labs may hold 10,000 nodes
    let by_name: std::collections::HashMap<&str, &crate::core::topology::Node> = topology
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n))
        .collect();
    let mut absent = 0;
    for table in tables.iter_mut() {
        let name = table
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let node = *by_name
            .get(name.as_str())
            .ok_or_else(|| LabError::UnknownNode(name.clone()))?;
        let key = keys
            .get(&name)
            .ok_or_else(|| LabError::UnknownNode(name.clone()))?;
        table["public-key"] = toml_edit::value(key.to_string());
        let lay = layout.node(&name).ok();
        let endpoint = match lay {
            Some(lay) if ipv6_underlay => format!("[{}]:{}", lay.underlay_v6, lay.listen_port),
            Some(lay) => format!("{}:{}", lay.underlay_v4, lay.listen_port),
            None => {
                absent += 1;
                absent_endpoint(absent - 1, node.listen_port, ipv6_underlay)
            }
        };
        table.remove("endpoint");
        table.remove("endpoints");
        if lay.is_some_and(|l| l.nat.is_some()) {
            // behind NAT: no endpoint; peers learn the router's mapping when the node sends
        } else {
            table["endpoint"] = toml_edit::value(endpoint);
            // a VPC node adds its address on the private bridge, scoped to the VPC
            if let Some((l, vpc)) = lay.and_then(|l| Some((l, l.vpc.as_ref()?))) {
                let address = match ipv6_underlay {
                    true => format!("[{}]:{}", vpc.v6, l.listen_port),
                    false => format!("{}:{}", vpc.v4, l.listen_port),
                };
                let scope = layout.region(&l.region).and_then(|r| r.vpc.as_ref());
                let scope = scope.map(|v| v.scope.clone()).unwrap_or_default();
                let mut list = toml_edit::Array::new();
                list.push(scoped(&address, &scope));
                table["endpoints"] = toml_edit::value(list);
            }
        }
        table["pod-cidr"] = toml_edit::value(node.pod_cidr.to_string());
        if let Some(v6) = node.pod_cidr_v6 {
            table["pod-cidr-v6"] = toml_edit::value(v6.to_string());
        }
    }
    Ok(doc.to_string())
}

/// `{ address = "...", scope = "..." }`.
fn scoped(address: &str, scope: &str) -> toml_edit::InlineTable {
    let mut t = toml_edit::InlineTable::new();
    t.insert("address", address.into());
    t.insert("scope", scope.into());
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# my mesh
mode = "full"
cluster-cidr = "10.244.0.0/16"

[[node]]
name = "a" # the first one
cloud = "aws"
region = "eu"
endpoint = "a.example.com:51820"
public-key = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="

[[node]]
name = "b"
cloud = "gcp"
region = "us"
public-key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
listen-port = 5000
"#;

    #[test]
    fn the_derived_topology_carries_lab_keys_endpoints_and_pinned_cidrs() {
        let path = Path::new("mesh.toml");
        let topo = Topology::parse(TEXT, path).unwrap();
        let layout = Layout::new("wml", &topo).unwrap();
        let keys: BTreeMap<String, PublicKey> = ["a", "b"]
            .iter()
            .map(|n| (n.to_string(), crate::io::keyfile::generate().public_key()))
            .collect();
        let text = derive_topology(TEXT, path, &topo, &layout, &keys, false).unwrap();
        assert!(text.contains("# the first one"), "{text}");
        let derived = Topology::parse(&text, path).unwrap();
        for node in &derived.nodes {
            assert_eq!(node.public_key, keys[&node.name]);
            assert!(node.pod_cidr_pinned);
            assert_eq!(node.pod_cidr, topo.node(&node.name).unwrap().pod_cidr);
        }
        let b = derived.node("b").unwrap();
        assert_eq!(b.endpoint.as_ref().unwrap().to_string(), "172.31.2.10:5000");
    }

    #[test]
    fn a_node_without_a_namespace_gets_an_endpoint_where_nothing_answers() {
        let path = Path::new("mesh.toml");
        let topo = Topology::parse(TEXT, path).unwrap();
        let layout = Layout::with_nodes("wml", &topo, Some(&["a".to_string()])).unwrap();
        let keys: BTreeMap<String, PublicKey> = ["a", "b"]
            .iter()
            .map(|n| (n.to_string(), crate::io::keyfile::generate().public_key()))
            .collect();
        let text = derive_topology(TEXT, path, &topo, &layout, &keys, false).unwrap();
        let derived = Topology::parse(&text, path).unwrap();
        let b = derived.node("b").unwrap();
        assert_eq!(b.endpoint.as_ref().unwrap().to_string(), "172.30.0.2:5000");
        assert_eq!(b.public_key, keys["b"]);
    }

    const VPC_TEXT: &str = r#"mode = "full"
cluster-cidr = "10.244.0.0/16"

[region.eu]
lab.vpc = true

[[node]]
name = "a"
cloud = "aws"
region = "eu"
endpoints = [{ address = "203.0.113.5:51820" }]
public-key = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="

[[node]]
name = "b"
cloud = "aws"
region = "eu"
public-key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

[[node]]
name = "c"
cloud = "gcp"
region = "us"
public-key = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
"#;

    /// The topology the lab derives from `text` with fresh keys, parsed back.
    fn derived(text: &str) -> Topology {
        let path = Path::new("mesh.toml");
        let (topo, lab) = Topology::parse_for_lab(text, path).unwrap();
        let layout = Layout::with_lab("wml", &topo, None, &lab).unwrap();
        let keys: BTreeMap<String, PublicKey> = topo
            .nodes
            .iter()
            .map(|n| (n.name.clone(), crate::io::keyfile::generate().public_key()))
            .collect();
        let text = derive_topology(text, path, &topo, &layout, &keys, false).unwrap();
        Topology::parse(&text, path).unwrap()
    }

    #[test]
    fn a_vpc_pair_is_given_its_private_addresses_and_everyone_else_the_underlay() {
        let t = derived(VPC_TEXT);
        let (a, b, c) = (
            t.node("a").unwrap(),
            t.node("b").unwrap(),
            t.node("c").unwrap(),
        );
        let to = |n: &crate::core::topology::Node, from| n.endpoint_for(from).unwrap().to_string();
        assert_eq!(to(a, b), "172.28.1.10:51820", "b reaches a over the VPC");
        assert_eq!(to(b, a), "172.28.1.11:51820");
        assert_eq!(
            to(a, c),
            "172.31.1.10:51820",
            "c reaches a over the underlay"
        );
        assert_eq!(
            to(c, a),
            "172.31.2.10:51820",
            "a reaches c over the underlay"
        );
        assert_eq!(
            a.endpoint.as_ref().unwrap().to_string(),
            "172.31.1.10:51820",
            "the public side: the underlay, the user's public one gone"
        );
        assert_eq!(a.scoped.len(), 1, "the VPC address");
        assert!(c.scoped.is_empty(), "c is in no VPC");
    }

    #[test]
    fn a_nated_node_is_given_no_endpoint() {
        let text = TEXT.replace(
            "listen-port = 5000",
            "listen-port = 5000\nlab.nat = \"dependent\"",
        );
        let t = derived(&text);
        let b = t.node("b").unwrap();
        assert_eq!((b.endpoint.as_ref(), b.scoped.len()), (None, 0));
        let a = t.node("a").unwrap();
        assert_eq!(a.endpoint_for(b).unwrap().to_string(), "172.31.1.10:51820");
    }
}
