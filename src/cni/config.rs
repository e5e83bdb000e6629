//! The network configuration a runtime hands us (`type: wiremesh-cni`), and the `bridge` +
//! `host-local` configuration built from it and the node state. Parsing goes in steps so each
//! failure gets the spec's code: not JSON (6), an unknown `cniVersion` (1), an unknown key (2,
//! naming key and value), a known key of the wrong shape (7).

use super::error::CniError;
use super::spec::{self, AddResult, Attachment, Dns, Route};
use super::state::{NodeState, DEFAULT_SUBNET_FILE};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::PathBuf;

/// Where the delegate configuration of each attachment is kept between ADD and DEL.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/wiremesh";
/// The Linux bridge the pods of this node hang on.
pub const DEFAULT_BRIDGE: &str = "wmcni0";

/// Every key we accept: ours, the spec's well-known ones, and those the runtime inserts.
/// Any other `cni.dev/` key is accepted too: the spec reserves the prefix for what runtimes
/// add, and a plugin must not fail on one it does not know. `cni.dev/attachments` is the spec-v1.1.0 text's name for what libcni sends as
/// `cni.dev/valid-attachments` (the spec's later text agrees with libcni); both are taken.
const KNOWN_KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "subnetFile",
    "dataDir",
    "bridge",
    "ipMasq",
    "ip-masq",
    "hairpinMode",
    "ipam",
    "dns",
    "runtimeConfig",
    "args",
    "prevResult",
    "capabilities",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
];

fn is_known_key(key: &str) -> bool {
    KNOWN_KEYS.contains(&key) || key.starts_with(RUNTIME_KEY_PREFIX)
}

/// The prefix the spec reserves for keys a runtime inserts into a plugin's configuration.
const RUNTIME_KEY_PREFIX: &str = "cni.dev/";

/// The known key `key` is a misspelling of, when they differ only in case, `-` and `_`.
fn spelt_like(key: &str) -> Option<&'static str> {
    let fold = |k: &str| {
        k.chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let folded = fold(key);
    KNOWN_KEYS.iter().copied().find(|k| fold(k) == folded)
}

/// The configuration's fields, each decoded on its own so that a wrong type names its key.
#[derive(Debug, Clone)]
struct RawNetConf {
    cni_version: String,
    name: String,
    subnet_file: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    bridge: Option<String>,
    ip_masq: Option<bool>,
    hairpin_mode: Option<bool>,
    ipam: Option<IpamOverrides>,
    dns: Option<Dns>,
    runtime_config: Option<Value>,
    args: Option<Value>,
    prev_result: Option<AddResult>,
    valid_attachments: Option<Vec<Attachment>>,
}

impl RawNetConf {
    fn from_object(o: &Map<String, Value>) -> Result<RawNetConf, CniError> {
        let required =
            |key: &str| field::<String>(o, key)?.ok_or_else(|| CniError::config(key, "missing"));
        required("type")?;
        Ok(RawNetConf {
            cni_version: required("cniVersion")?,
            name: required("name")?,
            subnet_file: field(o, "subnetFile")?,
            data_dir: field(o, "dataDir")?,
            bridge: field(o, "bridge")?,
            ip_masq: field(o, "ipMasq")?.or(field(o, "ip-masq")?),
            hairpin_mode: field(o, "hairpinMode")?,
            ipam: field(o, "ipam")?,
            dns: field(o, "dns")?,
            runtime_config: field(o, "runtimeConfig")?,
            args: field(o, "args")?,
            prev_result: field(o, "prevResult")?,
            valid_attachments: field(o, "cni.dev/valid-attachments")?
                .or(field(o, "cni.dev/attachments")?),
        })
    }
}

/// `o[key]` decoded as a `T`, absent (or null) as `None`; a wrong shape names `key`.
fn field<T: DeserializeOwned>(o: &Map<String, Value>, key: &str) -> Result<Option<T>, CniError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| CniError::config(key, e.to_string())),
    }
}

/// What may be said about the IPAM delegate: only where host-local keeps its reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpamOverrides {
    /// Must be `host-local` when given.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// host-local's store; default `/var/lib/cni/networks`.
    pub data_dir: Option<PathBuf>,
}

/// A checked network configuration.
#[derive(Debug, Clone)]
pub struct NetConf {
    /// The protocol version of this request; answers carry it.
    pub cni_version: String,
    /// The network name: host-local's store directory and our cache directory are named by it.
    pub name: String,
    /// The daemon's node state file (`subnetFile`).
    pub subnet_file: PathBuf,
    /// Our cache of each attachment's delegate configuration (`dataDir`).
    pub data_dir: PathBuf,
    /// The bridge's name (`bridge`).
    pub bridge: String,
    /// Masquerade traffic leaving the cluster CIDRs (`ipMasq`, also spelt `ip-masq`); on by
    /// default, as flannel's.
    pub ip_masq: bool,
    /// Lets a pod reach itself through a service address (`hairpinMode`); on by default.
    pub hairpin_mode: bool,
    pub ipam: IpamOverrides,
    pub dns: Option<Dns>,
    pub runtime_config: Option<Value>,
    pub args: Option<Value>,
    /// The runtime's `prevResult` (CHECK, DEL): the result of our ADD.
    pub prev_result: Option<AddResult>,
    /// GC: the attachments still valid.
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// The `cniVersion` of a request, if it has one, for the error object of a failed request.
pub fn requested_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| CniError::Decode {
            what: "network configuration on stdin".into(),
            source: e,
        })?;
        let object = value
            .as_object()
            .ok_or_else(|| CniError::config("(top level)", "not a JSON object"))?;
        let version = object
            .get("cniVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| CniError::config("cniVersion", "missing or not a string"))?;
        if !spec::is_supported(version) {
            return Err(CniError::IncompatibleVersion {
                version: version.into(),
                supported: spec::SUPPORTED_VERSIONS.join(", "),
            });
        }
        if let Some((key, value)) = object.iter().find(|(k, _)| !is_known_key(k)) {
            return Err(CniError::UnsupportedField {
                key: key.clone(),
                value: value.to_string(),
                hint: spelt_like(key)
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default(),
            });
        }
        Self::check(RawNetConf::from_object(object)?)
    }

    fn check(raw: RawNetConf) -> Result<NetConf, CniError> {
        if !spec::is_valid_identifier(&raw.name) {
            return Err(CniError::config(
                "name",
                format!(
                    "{:?} is not an alphanumeric followed by [A-Za-z0-9_.-]",
                    raw.name
                ),
            ));
        }
        let bridge = raw.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.into());
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ':', ' ']) {
            return Err(CniError::config(
                "bridge",
                format!("{bridge:?} is not a valid interface name (1–15 characters)"),
            ));
        }
        let ipam = raw.ipam.unwrap_or_default();
        if let Some(kind) = ipam.kind.as_deref().filter(|k| *k != "host-local") {
            return Err(CniError::config(
                "ipam.type",
                format!("{kind:?}: only host-local is supported"),
            ));
        }
        Ok(NetConf {
            cni_version: raw.cni_version,
            name: raw.name,
            subnet_file: raw
                .subnet_file
                .unwrap_or_else(|| DEFAULT_SUBNET_FILE.into()),
            data_dir: raw.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            bridge,
            ip_masq: raw.ip_masq.unwrap_or(true),
            hairpin_mode: raw.hairpin_mode.unwrap_or(true),
            ipam,
            dns: raw.dns,
            runtime_config: raw.runtime_config,
            args: raw.args,
            prev_result: raw.prev_result,
            valid_attachments: raw.valid_attachments,
        })
    }

    /// host-local's store for this network: `<dataDir>/<name>`.
    pub fn ipam_store(&self) -> PathBuf {
        let base = self
            .ipam
            .data_dir
            .clone()
            .unwrap_or_else(|| "/var/lib/cni/networks".into());
        base.join(&self.name)
    }
}

/// The configuration handed to `bridge` (which hands it on to `host-local`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub bridge: String,
    /// The bridge holds each pod CIDR's gateway address: the node routes for its pods.
    pub is_gateway: bool,
    /// Always false: bridge's masquerade spares only the pod CIDR, so it would also rewrite
    /// traffic to other nodes' pods; see `masq.rs`.
    pub ip_masq: bool,
    pub hairpin_mode: bool,
    pub mtu: u32,
    pub ipam: HostLocalConf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_result: Option<AddResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostLocalConf {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// One range set per pod CIDR: an address from each family.
    pub ranges: Vec<Vec<HostLocalRange>>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLocalRange {
    pub subnet: IpNet,
    pub gateway: IpAddr,
}

/// The delegate configuration for `conf` on a node in `state`, at the delegate's `version`.
pub fn bridge_conf(conf: &NetConf, state: &NodeState, version: &str) -> BridgeConf {
    let ranges = state
        .pods
        .iter()
        .map(|&(subnet, gateway)| vec![HostLocalRange { subnet, gateway }])
        .collect();
    let mut routes = Vec::new();
    for &(cidr, gateway) in &state.pods {
        let default: IpNet = if cidr.addr().is_ipv4() {
            "0.0.0.0/0".parse().expect("a valid CIDR")
        } else {
            "::/0".parse().expect("a valid CIDR")
        };
        let same_family = |c: &&IpNet| c.addr().is_ipv4() == cidr.addr().is_ipv4();
        // The cluster routes are explicit so that pods keep reaching each other even where
        // another attachment owns the default route.
        for dst in
            std::iter::once(default).chain(state.cluster_cidrs.iter().filter(same_family).copied())
        {
            // Explicit: bridge's CHECK compares each route's `gw` with the kernel's.
            routes.push(route(dst, gateway));
        }
    }
    BridgeConf {
        cni_version: version.into(),
        name: conf.name.clone(),
        kind: "bridge".into(),
        bridge: conf.bridge.clone(),
        is_gateway: true,
        ip_masq: false,
        hairpin_mode: conf.hairpin_mode,
        mtu: state.mtu,
        ipam: HostLocalConf {
            kind: "host-local".into(),
            data_dir: conf.ipam.data_dir.clone(),
            ranges,
            routes,
        },
        dns: conf.dns.clone(),
        runtime_config: conf.runtime_config.clone(),
        args: conf.args.clone(),
        prev_result: None,
    }
}

fn route(dst: IpNet, gw: IpAddr) -> Route {
    Route {
        dst,
        gw: Some(gw),
        mtu: None,
        advmss: None,
        priority: None,
        table: None,
        scope: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> NodeState {
        NodeState {
            path: "/x/subnet.json".into(),
            node: "n1".into(),
            pods: vec![
                (
                    "10.244.1.0/24".parse().unwrap(),
                    "10.244.1.1".parse().unwrap(),
                ),
                (
                    "fd00:10:244:1::/64".parse().unwrap(),
                    "fd00:10:244:1::1".parse().unwrap(),
                ),
            ],
            cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
            mtu: 1420,
        }
    }

    #[test]
    fn defaults_turn_masquerade_on_and_point_at_the_daemon_state() {
        let c =
            NetConf::parse(br#"{"cniVersion":"1.1.0","name":"wm","type":"wiremesh-cni"}"#).unwrap();
        assert!(c.ip_masq);
        assert_eq!(c.subnet_file, PathBuf::from(DEFAULT_SUBNET_FILE));
        assert_eq!(c.ipam_store(), PathBuf::from("/var/lib/cni/networks/wm"));
    }

    #[test]
    fn each_bad_input_gets_the_specs_code_and_names_its_field() {
        let cases: &[(&[u8], u32, &str)] = &[
            (b"{not json", 6, "stdin"),
            (
                br#"{"cniVersion":"9.9.9","name":"wm","type":"t"}"#,
                1,
                "cniVersion",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"wm","type":"t","bogus":42}"#,
                2,
                "bogus",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"wm","type":"t","ipMasq":"yes"}"#,
                7,
                "ipMasq",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"../x","type":"t"}"#,
                7,
                "name",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"w","type":"t","ipam":{"type":"dhcp"}}"#,
                7,
                "ipam.type",
            ),
        ];
        for (input, code, names) in cases {
            let e = NetConf::parse(input).unwrap_err();
            assert_eq!(e.code(), *code, "{e}");
            assert!(e.to_string().contains(names), "{e} should name {names}");
        }
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"wm","type":"t","bogus":42}"#)
            .unwrap_err();
        assert!(
            e.to_string().contains("42"),
            "code 2 names the value too: {e}"
        );
    }

    #[test]
    fn every_key_the_spec_defines_and_any_runtime_key_is_accepted() {
        let conf = br#"{
            "cniVersion": "1.0.0", "name": "wm", "type": "wiremesh-cni",
            "args": {"cni": {"ips": []}}, "ipMasq": true, "ipam": {"type": "host-local"},
            "dns": {"nameservers": ["10.96.0.10"]},
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": []},
            "prevResult": {"cniVersion": "1.0.0", "interfaces": [], "ips": []},
            "cni.dev/valid-attachments": [],
            "cni.dev/some-future-key": {"anything": 1}
        }"#;
        let c = NetConf::parse(conf).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.ip_masq);
        assert_eq!(c.valid_attachments.as_deref(), Some(&[][..]));
    }

    #[test]
    fn a_misspelt_key_of_ours_is_refused_with_the_spelling_we_know() {
        for (bad, good) in [("subnetfile", "subnetFile"), ("ip_masq", "ipMasq")] {
            let conf = format!(r#"{{"cniVersion":"1.0.0","name":"wm","type":"t","{bad}":1}}"#);
            let e = NetConf::parse(conf.as_bytes()).unwrap_err();
            assert_eq!(e.code(), 2, "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(bad) && msg.contains(&format!("did you mean `{good}`")),
                "{msg}"
            );
        }
    }

    #[test]
    fn the_bridge_gets_the_gateways_mtu_and_routes_for_the_cluster_and_default() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"wm","type":"wiremesh-cni","ip-masq":false}"#,
        )
        .unwrap();
        assert!(!conf.ip_masq, "ip-masq is read as ipMasq");
        let b = bridge_conf(&conf, &state(), "1.0.0");
        assert!(b.is_gateway && !b.ip_masq);
        assert_eq!(b.mtu, 1420);
        assert_eq!(b.ipam.ranges[0][0].gateway.to_string(), "10.244.1.1");
        let dsts: Vec<String> = b.ipam.routes.iter().map(|r| r.dst.to_string()).collect();
        assert_eq!(dsts, ["0.0.0.0/0", "10.244.0.0/16", "::/0"]);
        assert_eq!(b.cni_version, "1.0.0");
    }
}
