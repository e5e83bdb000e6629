//! Between a topology file and the registry: `import` turns a checked [`Topology`] into
//! transactions; `export` writes a topology as a file with every CIDR pinned.
//!
//! Import pins what the file's IPAM chose, so a node keeps the CIDR `wiremesh ipam` shows for
//! it, and export pins every CIDR, so the exported file plans the same mesh wherever it goes.
//! The file's policy part travels as its text (the policy key, `policy.rs`) and the nodes' labels
//! in their records, so import then export gives back the same policy.

use super::keys::Layout;
use super::records::{
    decode, encode, AllocValue, ClaimValue, EndpointObject, EndpointValue, NodeState, RecordValue,
    RegionValue, SettingsValue, VERSION,
};
use super::{Snapshot, TxnSpec};
use crate::constants::{REGISTRY_POLICY_MAX, REGISTRY_TXN_OPS};
use crate::core::policy::spec::Labels;
use crate::core::topology::{shown, Document, MeshMode, Node, Topology};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;

/// Why an import was refused; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error(
        "{key}: field '{field}': the registry holds {held}, the file says {file}; pools are \
         fixed once a claim exists (export, edit, and import under a new mesh name instead)"
    )]
    PoolChanged {
        key: String,
        field: &'static str,
        held: String,
        file: String,
    },
    #[error(
        "{key}: node '{}' holds {held} in the registry, the file pins {file}; \
         `registry remove` it first to move it", shown(.node)
    )]
    ClaimDiffers {
        key: String,
        node: String,
        held: String,
        file: String,
    },
    #[error(
        "{key}: the policy part is {len} bytes; the registry holds at most {max} (keep the \
         policy in the file, or trim it)"
    )]
    PolicyTooLarge { key: String, len: usize, max: usize },
    /// The text cut out of a valid file failed the check alone: never written.
    #[error(transparent)]
    Policy(#[from] super::policy::PolicyRefused),
}

/// The file's settings as the registry stores them (lab links stay out of the registry).
pub fn settings_value(t: &Topology) -> SettingsValue {
    let dual = t.mesh.cluster_cidr_v6.is_some();
    SettingsValue {
        v: VERSION,
        mode: mode_name(t.mesh.mode).into(),
        cluster_cidr: t.mesh.cluster_cidr.to_string(),
        node_prefix: Some(t.mesh.node_prefix),
        cluster_cidr_v6: t.mesh.cluster_cidr_v6.map(|c| c.to_string()),
        node_prefix_v6: dual.then_some(t.mesh.node_prefix_v6),
        listen_port: Some(t.mesh.listen_port),
        persistent_keepalive: t.mesh.persistent_keepalive,
        mtu: t.mesh.mtu,
        regions: t
            .mesh
            .regions
            .iter()
            .map(|(name, r)| {
                let underlay_mtu = Some(r.underlay_mtu);
                (name.clone(), RegionValue { underlay_mtu })
            })
            .collect(),
        hubs: None,
        gc_after: None,
    }
}

/// A node's record as its daemon would write it, with the labels the file gives it.
pub fn record_value(n: &Node, labels: Option<&Labels>) -> RecordValue {
    RecordValue {
        v: VERSION,
        name: n.name.clone(),
        cloud: n.cloud.clone(),
        region: n.region.clone(),
        endpoints: endpoint_values(n),
        public_key: n.public_key.to_string(),
        listen_port: Some(n.listen_port),
        hub: n.hub,
        labels: labels.cloned().unwrap_or_default(),
        state: NodeState::Active,
    }
}

/// A node's endpoints as its record lists them: the scoped ones as objects, then the unscoped
/// one as a plain string. Without scopes that is the record every wiremesh reads.
fn endpoint_values(n: &Node) -> Vec<EndpointValue> {
    let scoped = n.scoped.iter().map(|s| {
        EndpointValue::Object(EndpointObject {
            address: s.endpoint.to_string(),
            scope: Some(s.scope.clone()),
        })
    });
    let plain = n
        .endpoint
        .iter()
        .map(|e| EndpointValue::Plain(e.to_string()));
    scoped.chain(plain).collect()
}

/// A node's claim of the CIDRs it has.
pub fn claim_value(n: &Node) -> ClaimValue {
    ClaimValue {
        v: VERSION,
        pod_cidr: n.pod_cidr.to_string(),
        pod_cidr_v6: n.pod_cidr_v6.map(|c| c.to_string()),
    }
}

/// A claim's CIDRs as a message shows them (a held claim is anyone's text: escaped and cut).
fn cidrs(c: &ClaimValue) -> String {
    match &c.pod_cidr_v6 {
        Some(v6) => format!("{} and {}", shown(&c.pod_cidr), shown(v6)),
        None => shown(&c.pod_cidr),
    }
}

fn mode_name(mode: MeshMode) -> &'static str {
    match mode {
        MeshMode::Full => "full",
        MeshMode::Hub => "hub",
    }
}

/// The transactions that import `doc` into the mesh `existing` shows (read at one revision):
/// the settings and the policy first, then the nodes with their labels, each node's claim and
/// `alloc/` keys created only if absent, in transactions within etcd's operation limit. A node
/// that already holds the same claim gets its record only; pools and claims the registry holds
/// are never changed. `policy` is the file's policy part as text ([`super::policy::part_of`]);
/// `None` (the file has none) removes the registry's, as the file is then permissive.
pub fn import(
    layout: &Layout,
    doc: &Document,
    policy: Option<&str>,
    existing: &Snapshot,
) -> Result<Vec<TxnSpec>, TransferError> {
    let t = &doc.topology;
    let settings_key = layout.settings();
    let any_claim = existing
        .kvs
        .keys()
        .any(|k| k.starts_with(&format!("{}claims/", layout.prefix())));
    let held = existing
        .kvs
        .get(&settings_key)
        .and_then(|kv| decode::<SettingsValue>(&kv.value).ok());
    let new = settings_value(t);
    if let (true, Some(held)) = (any_claim, &held) {
        let pools = [
            ("cluster-cidr", &held.cluster_cidr, &new.cluster_cidr),
            (
                "node-prefix",
                &held.node_prefix.unwrap_or(24).to_string(),
                &t.mesh.node_prefix.to_string(),
            ),
            (
                "cluster-cidr-v6",
                &held.cluster_cidr_v6.clone().unwrap_or_default(),
                &new.cluster_cidr_v6.clone().unwrap_or_default(),
            ),
        ];
        for (field, held, file) in pools {
            if held != file {
                return Err(TransferError::PoolChanged {
                    key: settings_key,
                    field,
                    held: held.clone(),
                    file: file.clone(),
                });
            }
        }
    }
    let mut first = TxnSpec {
        puts: vec![(settings_key, encode(&new))],
        ..TxnSpec::default()
    };
    let policy_key = layout.policy();
    match policy {
        Some(text) if text.len() > REGISTRY_POLICY_MAX => {
            return Err(TransferError::PolicyTooLarge {
                key: policy_key,
                len: text.len(),
                max: REGISTRY_POLICY_MAX,
            })
        }
        Some(text) => {
            super::policy::check(&policy_key, text.as_bytes())?;
            first.puts.push((policy_key, text.as_bytes().to_vec()))
        }
        None if existing.kvs.contains_key(&policy_key) => first.deletes.push(policy_key),
        None => {}
    }
    let mut txns = vec![first];
    let mut txn = TxnSpec::default();
    for n in &t.nodes {
        let mut node_txn = TxnSpec::default();
        let claim_key = layout.claim(&n.name);
        node_txn.puts.push((
            layout.record(&n.name),
            encode(&record_value(n, doc.policy.labels.get(&n.name))),
        ));
        match existing.kvs.get(&claim_key) {
            Some(kv) => {
                let held = decode::<ClaimValue>(&kv.value).ok();
                let file = claim_value(n);
                if held.as_ref() != Some(&file) {
                    return Err(TransferError::ClaimDiffers {
                        key: claim_key,
                        node: n.name.clone(),
                        held: held.map_or_else(|| "an unreadable claim".into(), |h| cidrs(&h)),
                        file: cidrs(&file),
                    });
                }
            }
            None => {
                let alloc = encode(&AllocValue {
                    v: VERSION,
                    node: n.name.clone(),
                });
                let claimed = [
                    (claim_key, encode(&claim_value(n))),
                    (layout.alloc(IpNet::V4(n.pod_cidr)), alloc.clone()),
                ]
                .into_iter()
                .chain(n.pod_cidr_v6.map(|c| (layout.alloc(IpNet::V6(c)), alloc)));
                for (key, value) in claimed {
                    node_txn.compare_absent.push(key.clone());
                    node_txn.gets_on_failure.push(key.clone());
                    node_txn.puts.push((key, value));
                }
            }
        }
        if txn.puts.len() + node_txn.puts.len() > REGISTRY_TXN_OPS {
            txns.push(std::mem::take(&mut txn));
        }
        txn.compare_absent.extend(node_txn.compare_absent);
        txn.gets_on_failure.extend(node_txn.gets_on_failure);
        txn.puts.extend(node_txn.puts);
    }
    if !txn.puts.is_empty() {
        txns.push(txn);
    }
    Ok(txns)
}

/// The file `export` writes: the top level, regions, then the nodes with every CIDR pinned.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct FileOut {
    mode: &'static str,
    cluster_cidr: String,
    node_prefix: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_cidr_v6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_prefix_v6: Option<u8>,
    listen_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    persistent_keepalive: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u16>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    region: BTreeMap<String, RegionOut>,
    node: Vec<NodeOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RegionOut {
    underlay_mtu: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct NodeOut {
    name: String,
    cloud: String,
    region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    /// Written instead of `endpoint` when the node has scoped endpoints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    endpoints: Vec<EndpointObject>,
    public_key: String,
    pod_cidr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_cidr_v6: Option<String>,
    hub: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<Labels>,
}

/// `t` as a topology file with every pod CIDR pinned; `Topology::parse` of it gives `t` back
/// (less lab links, which stay out of the registry, and with every CIDR marked pinned).
pub fn export(t: &Topology) -> String {
    export_nodes(t, &BTreeMap::new())
}

/// `t` as a topology file with its nodes' `labels` and the policy part `policy` (the policy key's
/// text, checked): `Topology::parse_with_policy` of it gives the registry's topology and policy.
pub fn export_with_policy(
    t: &Topology,
    labels: &BTreeMap<String, Labels>,
    policy: Option<&str>,
) -> Result<String, toml_edit::TomlError> {
    let file = export_nodes(t, labels);
    match policy {
        Some(part) => super::policy::with_part(&file, part),
        None => Ok(file),
    }
}

/// A node with scoped endpoints as the file's `endpoints` list (scoped, then the unscoped);
/// empty for a node without, which keeps the one-line `endpoint` (where a private address is
/// allowed, as in the lab's files).
fn file_endpoints(n: &Node) -> Vec<EndpointObject> {
    if n.scoped.is_empty() {
        return Vec::new();
    }
    endpoint_values(n)
        .into_iter()
        .map(|e| EndpointObject {
            address: e.address().to_string(),
            scope: e.scope().map(str::to_string),
        })
        .collect()
}

fn export_nodes(t: &Topology, labels: &BTreeMap<String, Labels>) -> String {
    let file = FileOut {
        mode: mode_name(t.mesh.mode),
        cluster_cidr: t.mesh.cluster_cidr.to_string(),
        node_prefix: t.mesh.node_prefix,
        cluster_cidr_v6: t.mesh.cluster_cidr_v6.map(|c| c.to_string()),
        node_prefix_v6: t.mesh.cluster_cidr_v6.map(|_| t.mesh.node_prefix_v6),
        listen_port: t.mesh.listen_port,
        persistent_keepalive: t.mesh.persistent_keepalive,
        mtu: t.mesh.mtu,
        region: t
            .mesh
            .regions
            .iter()
            .map(|(name, r)| {
                let underlay_mtu = r.underlay_mtu;
                (name.clone(), RegionOut { underlay_mtu })
            })
            .collect(),
        node: t
            .nodes
            .iter()
            .map(|n| NodeOut {
                name: n.name.clone(),
                cloud: n.cloud.clone(),
                region: n.region.clone(),
                endpoint: n
                    .scoped
                    .is_empty()
                    .then(|| n.endpoint.as_ref().map(|e| e.to_string()))
                    .flatten(),
                endpoints: file_endpoints(n),
                public_key: n.public_key.to_string(),
                pod_cidr: n.pod_cidr.to_string(),
                pod_cidr_v6: n.pod_cidr_v6.map(|c| c.to_string()),
                hub: n.hub,
                listen_port: (n.listen_port != t.mesh.listen_port).then_some(n.listen_port),
                labels: labels.get(&n.name).cloned(),
            })
            .collect(),
    };
    toml::to_string(&file).expect("a checked topology always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::spec::DefaultAction;
    use crate::core::registry::assemble::assemble;
    use crate::core::registry::testing::run_all;
    use std::path::Path;

    /// A file with unpinned nodes, one pinned, dual stack, a region and DNS endpoints.
    const FILE: &str = r#"
mode = "hub"
cluster-cidr = "10.244.0.0/16"
cluster-cidr-v6 = "fd10:244::/56"
persistent-keepalive = 25
mtu = 1380

[region.r1]
underlay-mtu = 1460

[[node]]
name = "hub-1"
cloud = "gcp"
region = "r1"
endpoint = "hub1.example.net"
public-key = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
hub = true

[[node]]
name = "spoke-1"
cloud = "aws"
region = "r1"
public-key = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08="
pod-cidr = "10.244.200.0/24"
listen-port = 51900

[[node]]
name = "spoke-2"
cloud = "aws"
region = "r1"
endpoint = "[2001:db8::2]:51820"
public-key = "TDmrFMdp+9KD0qmAhTd1zCxf4e2ZfgXeiTP2K/MfaDE="
"#;

    fn layout() -> Layout {
        Layout::new("prod").unwrap()
    }

    /// A topology without policy or labels, as an import takes it.
    fn plain(t: &Topology) -> Document {
        Document {
            topology: t.clone(),
            policy: crate::core::policy::MeshPolicy::default(),
        }
    }

    #[test]
    fn import_then_export_gives_every_node_the_cidr_wiremesh_ipam_gives_it() {
        let file = Topology::parse(FILE, Path::new("mesh.toml")).unwrap();
        let mut etcd = Snapshot::default();
        let txns = import(&layout(), &plain(&file), None, &etcd).unwrap();
        run_all(&mut etcd, &txns);
        let a = assemble(&layout(), &etcd, Path::new("etcd")).unwrap();
        assert!(a.problems.is_empty(), "{:?}", a.problems);
        let exported = Topology::parse(&export(&a.topology), Path::new("etcd")).unwrap();
        assert_eq!(exported, a.topology);
        assert_eq!(exported.nodes.len(), file.nodes.len());
        for n in &file.nodes {
            let got = exported.node(&n.name).unwrap();
            // what `wiremesh ipam` prints for the file
            assert_eq!(
                (got.pod_cidr, got.pod_cidr_v6),
                (n.pod_cidr, n.pod_cidr_v6),
                "{}",
                n.name
            );
            let mut want = n.clone();
            (want.pod_cidr_pinned, want.pod_cidr_v6_pinned) = (true, true);
            assert_eq!(got, &want);
        }
        let mut want = file.clone();
        want.nodes = exported.nodes.clone();
        want.lab_links.clear();
        want.source = exported.source.clone();
        assert_eq!(exported, want);
    }

    #[test]
    fn an_import_writes_the_policy_part_and_labels_and_a_file_without_one_removes_it() {
        let part = "default-action = \"deny\"\n";
        let with_labels = FILE.replace("hub = true\n", "hub = true\nlabels = { app = \"web\" }\n");
        let doc = Topology::parse_with_policy(&with_labels, Path::new("mesh.toml")).unwrap();
        let mut etcd = Snapshot::default();
        let txns = import(&layout(), &doc, Some(part), &etcd).unwrap();
        run_all(&mut etcd, &txns);
        let a = assemble(&layout(), &etcd, Path::new("etcd")).unwrap();
        let policy = a.policy.unwrap();
        assert_eq!(policy.default_action, DefaultAction::Deny);
        assert_eq!(policy.labels["hub-1"]["app"], "web");
        let file = export_with_policy(&a.topology, &a.labels, Some(part)).unwrap();
        let back = Topology::parse_with_policy(&file, Path::new("back.toml")).unwrap();
        assert_eq!(back.policy, policy);

        let txns = import(&layout(), &plain(&doc.topology), None, &etcd).unwrap();
        assert_eq!(txns[0].deletes, [layout().policy()]);
        run_all(&mut etcd, &txns);
        let a = assemble(&layout(), &etcd, Path::new("etcd")).unwrap();
        assert!(a.policy.unwrap().is_permissive());

        let big = format!("{part}{}", "#".repeat(REGISTRY_POLICY_MAX));
        let err = import(&layout(), &doc, Some(&big), &etcd).unwrap_err();
        assert!(matches!(err, TransferError::PolicyTooLarge { .. }), "{err}");
    }

    #[test]
    fn an_import_is_split_to_fit_etcds_operation_limit() {
        let mut text = String::from("mode = \"full\"\ncluster-cidr = \"10.0.0.0/12\"\n");
        for i in 0..100u32 {
            let key = crate::core::registry::testing::key_text(i);
            text.push_str(&format!(
                "[[node]]\nname = \"n{i}\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{key}\"\n"
            ));
        }
        let file = Topology::parse(&text, Path::new("big.toml")).unwrap();
        let txns = import(&layout(), &plain(&file), None, &Snapshot::default()).unwrap();
        // settings alone, then 3 puts a node: 42 nodes (126 puts) a transaction
        assert_eq!(txns.len(), 1 + 3);
        assert!(txns.iter().all(TxnSpec::fits));
        let mut etcd = Snapshot::default();
        run_all(&mut etcd, &txns);
        let a = assemble(&layout(), &etcd, Path::new("etcd")).unwrap();
        assert_eq!(a.topology.nodes.len(), 100);
    }

    #[test]
    fn importing_again_rewrites_records_and_never_moves_a_claim() {
        let file = Topology::parse(FILE, Path::new("mesh.toml")).unwrap();
        let mut etcd = Snapshot::default();
        let txns = import(&layout(), &plain(&file), None, &etcd).unwrap();
        run_all(&mut etcd, &txns);
        let again = import(&layout(), &plain(&file), None, &etcd).unwrap();
        assert!(again.iter().all(|t| t.compare_absent.is_empty()));
        run_all(&mut etcd, &again);

        let moved = FILE.replace("10.244.200.0/24", "10.244.201.0/24");
        let moved = Topology::parse(&moved, Path::new("mesh.toml")).unwrap();
        let err = import(&layout(), &plain(&moved), None, &etcd).unwrap_err();
        assert!(
            matches!(&err, TransferError::ClaimDiffers { node, .. } if node == "spoke-1"),
            "{err}"
        );
        let wider = FILE.replace("10.244.0.0/16", "10.240.0.0/12");
        let wider = Topology::parse(&wider, Path::new("mesh.toml")).unwrap();
        let err = import(&layout(), &plain(&wider), None, &etcd).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "/wiremesh/prod/settings: field 'cluster-cidr': the registry holds \
                 10.244.0.0/16, the file says 10.240.0.0/12"
            ),
            "{err}"
        );
    }

    #[test]
    fn scoped_endpoints_travel_through_import_and_export_both_ways() {
        let scoped = FILE.replace(
            "endpoint = \"[2001:db8::2]:51820\"",
            "endpoints = [{ address = \"10.0.1.5:51820\", scope = \"aws:vpc-1\" }, \
             { address = \"[2001:db8::2]:51820\" }, { address = \"10.9.0.5\", scope = \"lan\" }]",
        );
        let file = Topology::parse(&scoped, Path::new("mesh.toml")).unwrap();
        assert_eq!(file.node("spoke-2").unwrap().scoped.len(), 2);
        let mut etcd = Snapshot::default();
        let txns = import(&layout(), &plain(&file), None, &etcd).unwrap();
        run_all(&mut etcd, &txns);
        let record = &etcd.kvs[&layout().record("spoke-2")].value;
        let record: RecordValue = decode(record).unwrap();
        let shown: Vec<String> = record.endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "10.0.1.5:51820@aws:vpc-1",
                "10.9.0.5:51820@lan",
                "[2001:db8::2]:51820"
            ]
        );
        let a = assemble(&layout(), &etcd, Path::new("etcd")).unwrap();
        assert!(a.problems.is_empty(), "{:?}", a.problems);
        let text = export(&a.topology);
        let back = Topology::parse(&text, Path::new("back.toml")).unwrap();
        for name in ["hub-1", "spoke-1", "spoke-2"] {
            let (got, want) = (back.node(name).unwrap(), file.node(name).unwrap());
            assert_eq!(
                (&got.endpoint, &got.scoped),
                (&want.endpoint, &want.scoped),
                "{name}"
            );
        }
        // a node without scopes keeps the one-line form
        assert!(
            text.contains("endpoint = \"hub1.example.net:51820\""),
            "{text}"
        );
    }
}
