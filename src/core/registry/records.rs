//! The registry's values as written (docs/registry.md, section 1): serde structs, checked by
//! [`super::validate`].
//!
//! Parsed like the topology file: unknown fields are errors (a typo in a hand-written record is
//! reported, not ignored), and every value carries `"v"`, read before anything else, so a value
//! from a newer wiremesh is refused by its version rather than by a field this one does not know.

use crate::constants::REGISTRY_VALUE_MAX;
use crate::core::topology::{clip, shown};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only value version this wiremesh writes and reads.
pub const VERSION: u64 = 1;

/// The mesh-wide settings (`settings`): the topology file's top level, less the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SettingsValue {
    /// The value's version, [`VERSION`].
    pub v: u64,
    /// `full` or `hub`, as in the file.
    pub mode: String,
    /// The overlay's IPv4 range; fixed once a claim exists.
    pub cluster_cidr: String,
    /// Prefix length of a claimed IPv4 pod CIDR (default 24).
    #[serde(default)]
    pub node_prefix: Option<u8>,
    /// The IPv6 range of a dual-stack mesh.
    #[serde(default)]
    pub cluster_cidr_v6: Option<String>,
    /// Prefix length of a claimed IPv6 pod CIDR (default 64).
    #[serde(default)]
    pub node_prefix_v6: Option<u8>,
    /// UDP port of every node that does not give its own (default 51820).
    #[serde(default)]
    pub listen_port: Option<u16>,
    /// Seconds between keepalives; 0 or absent turns them off.
    #[serde(default)]
    pub persistent_keepalive: Option<u16>,
    /// Tunnel MTU; absent means derived from the regions' underlay MTUs.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Per-region settings by region name.
    #[serde(default)]
    pub regions: BTreeMap<String, RegionValue>,
    /// When set, the only nodes whose `hub: true` is honoured; others are planned as spokes.
    #[serde(default)]
    pub hubs: Option<Vec<String>>,
    /// How long a node may be absent before `registry gc` removes it (`7d`, `12h`, `30m`,
    /// `600s`); absent turns gc of nodes off.
    #[serde(default)]
    pub gc_after: Option<String>,
}

/// One region's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegionValue {
    /// MTU of the underlay in this region (default 1500).
    #[serde(default)]
    pub underlay_mtu: Option<u16>,
}

/// Whether a node's record is planned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Planned (when it has a claim).
    #[default]
    Active,
    /// Stopped gracefully: not planned, but its claim and record stay, so it returns with the
    /// same CIDR.
    Left,
}

/// A node's record (`node/<name>/record`), written by the node itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecordValue {
    pub v: u64,
    /// Must equal the key's name.
    pub name: String,
    /// Cloud or site, for grouping; the file's name rules.
    pub cloud: String,
    /// Region; in hub mode spokes attach to their region's hubs.
    pub region: String,
    /// 0-8 endpoints; empty means behind NAT. Plain strings only: the first is the node's
    /// endpoint, as the file's one-line `endpoint`. With any `{address, scope}` entry: the file's
    /// `endpoints` list, with its rules (docs/nat.md, section 1).
    #[serde(default)]
    pub endpoints: Vec<EndpointValue>,
    /// The node's WireGuard public key, standard base64; unique in the mesh.
    pub public_key: String,
    /// The node's UDP port, when it differs from the mesh's.
    #[serde(default)]
    pub listen_port: Option<u16>,
    /// In hub mode, the node relays for its region (see `hubs` in the settings).
    #[serde(default)]
    pub hub: bool,
    /// At most 32 labels, shown by `registry status`; not used by the plan yet.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `active`, or `left` after a graceful stop.
    #[serde(default)]
    pub state: NodeState,
}

/// One entry of a record's `endpoints`: `"203.0.113.5:51820"` (unscoped, the form every record
/// had before scopes, kept so old records read as before) or
/// `{"address": "10.0.1.5:51820", "scope": "aws:vpc-1"}` (scope optional: unscoped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointValue {
    Plain(String),
    Object(EndpointObject),
}

/// The object form of an endpoint entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EndpointObject {
    /// `ip:port`, `[ipv6]:port` or `name:port`; the port defaults to the node's.
    pub address: String,
    /// The network in which only this address is reachable; absent: public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl EndpointValue {
    /// `ADDRESS@SCOPE` (as `--endpoint` takes it) or a plain `ADDRESS`. Scope names have no
    /// `@`, so the last one splits; a host name has none.
    pub fn from_flag(s: &str) -> Self {
        match s.rsplit_once('@') {
            Some((address, scope)) => EndpointValue::Object(EndpointObject {
                address: address.to_string(),
                scope: Some(scope.to_string()),
            }),
            None => EndpointValue::Plain(s.to_string()),
        }
    }

    pub fn address(&self) -> &str {
        match self {
            EndpointValue::Plain(a) => a,
            EndpointValue::Object(o) => &o.address,
        }
    }

    pub fn scope(&self) -> Option<&str> {
        match self {
            EndpointValue::Plain(_) => None,
            EndpointValue::Object(o) => o.scope.as_deref(),
        }
    }
}

/// As `--endpoint` takes it: `ADDRESS` or `ADDRESS@SCOPE`.
impl std::fmt::Display for EndpointValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.scope() {
            Some(scope) => write!(f, "{}@{scope}", self.address()),
            None => f.write_str(self.address()),
        }
    }
}

impl Serialize for EndpointValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EndpointValue::Plain(a) => s.serialize_str(a),
            EndpointValue::Object(o) => o.serialize(s),
        }
    }
}

/// By hand rather than `untagged`, so a bad object is refused by its own field's name (serde's
/// untagged enums only say that no variant matched).
impl<'de> Deserialize<'de> for EndpointValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = EndpointValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an address string or an object {\"address\", \"scope\"}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EndpointValue::Plain(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let de = serde::de::value::MapAccessDeserializer::new(map);
                EndpointObject::deserialize(de).map(EndpointValue::Object)
            }
        }
        d.deserialize_any(Entry)
    }
}

/// A node's claim (`claims/<name>`): its pod CIDRs, written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClaimValue {
    pub v: u64,
    /// A network address inside `cluster-cidr`, no larger than one `node-prefix` slot.
    pub pod_cidr: String,
    /// Present exactly when the mesh is dual stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr_v6: Option<String>,
}

/// A node's presence (`node/<name>/presence`, on a lease): informational only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PresenceValue {
    pub v: u64,
    /// When the daemon started, unix seconds.
    pub since: u64,
    /// The daemon's version.
    pub version: String,
}

/// The value of an `alloc/` key: which node took the CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AllocValue {
    pub v: u64,
    pub node: String,
}

/// `registry gc`'s mark on a node found absent (`absent/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AbsentValue {
    pub v: u64,
    /// When gc first found the node absent, unix seconds.
    pub since: u64,
}

/// Why a value could not be read; the field is in the value's spelling, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub field: Option<String>,
    pub message: String,
}

/// The longest parser message shown: room for serde's list of expected fields.
const MESSAGE_MAX: usize = 400;

/// Reads `value` as a `T`: refused unparsed when over [`REGISTRY_VALUE_MAX`]; then its `"v"`
/// (only [`VERSION`] is known); then the whole value, naming the field a problem lies in.
pub fn decode<T: DeserializeOwned>(value: &[u8]) -> Result<T, Unreadable> {
    let fail = |field: Option<&str>, message: String| Unreadable {
        field: field.map(str::to_string),
        message,
    };
    if value.len() > REGISTRY_VALUE_MAX {
        return Err(fail(
            None,
            format!(
                "a value of {} bytes is over the limit of {REGISTRY_VALUE_MAX}; not parsed",
                value.len()
            ),
        ));
    }
    let text =
        std::str::from_utf8(value).map_err(|e| fail(None, format!("not UTF-8 text ({e})")))?;
    /// Only the version; every other field is read once the version is known.
    #[derive(Deserialize)]
    struct Version {
        v: serde_json::Value,
    }
    let version: Version = serde_json::from_str(text).map_err(|e| {
        let field = e.to_string().contains("missing field `v`").then_some("v");
        fail(
            field,
            format!("not a value of the registry: {}", message(&e)),
        )
    })?;
    match version.v.as_u64() {
        Some(VERSION) => {}
        Some(v) => {
            return Err(fail(
                Some("v"),
                format!(
                    "version {v} is not known to wiremesh {} (written by a newer wiremesh?)",
                    env!("CARGO_PKG_VERSION")
                ),
            ))
        }
        None => {
            return Err(fail(
                Some("v"),
                format!(
                    "'{}' is not a version number",
                    shown(&version.v.to_string())
                ),
            ))
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != "." && !path.is_empty()).then(|| shown(&path));
        fail(field.as_deref(), message(e.inner()))
    })?;
    de.end()
        .map_err(|e| fail(None, format!("trailing text: {}", message(&e))))?;
    Ok(parsed)
}

/// A parser's message as a problem shows it: escaped (it may quote the value) and cut.
fn message(e: &serde_json::Error) -> String {
    clip(&e.to_string(), MESSAGE_MAX)
}

/// A value as the registry stores it: compact JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("the registry's values always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"v":1, "name":"gcp-c", "cloud":"gcp", "region":"europe-west1",
        "endpoints":["198.51.100.23:51820"], "public-key":"0RtLThWa0kfAonVsQ+cWMLCRrgZ4UiVgq7vaCWRMhVQ=",
        "listen-port":51820, "hub":false, "labels":{"zone":"b"}, "state":"active"}"#;

    #[test]
    fn the_designs_examples_parse() {
        let r: RecordValue = decode(RECORD.as_bytes()).unwrap();
        assert_eq!(r.name, "gcp-c");
        assert_eq!(r.labels["zone"], "b");
        let s: SettingsValue = decode(
            br#"{"v":1, "mode":"hub", "cluster-cidr":"10.244.0.0/16", "node-prefix":24,
             "cluster-cidr-v6":"fd10:244::/56", "node-prefix-v6":64, "listen-port":51820,
             "persistent-keepalive":25, "mtu":null, "regions":{"europe-west1":{"underlay-mtu":1460}},
             "hubs":null, "gc-after":"7d"}"#,
        )
        .unwrap();
        assert_eq!(s.regions["europe-west1"].underlay_mtu, Some(1460));
        let c: ClaimValue =
            decode(br#"{"v":1, "pod-cidr":"10.244.7.0/24", "pod-cidr-v6":"fd10:244:0:7::/64"}"#)
                .unwrap();
        assert_eq!(c.pod_cidr, "10.244.7.0/24");
        let p: PresenceValue =
            decode(br#"{"v":1, "since":1767180000, "version":"0.2.0"}"#).unwrap();
        assert_eq!(p.since, 1_767_180_000);
    }

    #[test]
    fn a_value_round_trips_through_encode() {
        let r: RecordValue = decode(RECORD.as_bytes()).unwrap();
        assert_eq!(decode::<RecordValue>(&encode(&r)).unwrap(), r);
    }

    #[test]
    fn an_unknown_field_is_named() {
        let text = RECORD.replace("\"hub\"", "\"hubb\"");
        let err = decode::<RecordValue>(text.as_bytes()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("hubb"), "{err:?}");
        assert!(
            err.message
                .starts_with("unknown field `hubb`, expected one of"),
            "{err:?}"
        );
    }

    #[test]
    fn a_wrong_type_is_named_by_its_field() {
        let text = RECORD.replace("\"listen-port\":51820", "\"listen-port\":70000");
        let err = decode::<RecordValue>(text.as_bytes()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("listen-port"), "{err:?}");
    }

    #[test]
    fn a_newer_version_is_refused_by_its_number_before_its_fields() {
        let text = r#"{"v":2, "field-of-the-future":true}"#;
        let err = decode::<RecordValue>(text.as_bytes()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("v"));
        assert!(err.message.contains("version 2 is not known"), "{err:?}");
        assert!(err.message.contains("newer wiremesh"), "{err:?}");
    }

    #[test]
    fn garbage_of_every_kind_is_refused_without_a_panic() {
        let huge = format!("{{\"v\":1,\"name\":\"{}\"}}", "x".repeat(1 << 20));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (Vec::new(), None),
            (b"\xff\xfe\x00".to_vec(), None),
            (b"null".to_vec(), None),
            (b"[1,2]".to_vec(), None),
            (b"{\"name\":\"a\"}".to_vec(), Some("v")),
            (b"{\"v\":\"1\"}".to_vec(), Some("v")),
            (b"{\"v\":-1}".to_vec(), Some("v")),
            (b"{\"v\":1e400}".to_vec(), None),
            (b"{\"v\":1}".to_vec(), None),
            (b"{\"v\":1} trailing".to_vec(), None),
            (huge.into_bytes(), None),
            (deep.as_bytes()[..4000].to_vec(), None),
            ("{\"v\":1,\"name\":\"\u{1b}[2J\"".as_bytes().to_vec(), None),
        ];
        for (value, field) in cases {
            let err = decode::<RecordValue>(&value).unwrap_err();
            assert_eq!(err.field.as_deref(), field, "{err:?}");
            assert!(!err.message.chars().any(char::is_control), "{err:?}");
            assert!(err.message.len() < 600, "{err:?}");
        }
    }

    #[test]
    fn a_value_over_the_limit_is_refused_unparsed() {
        let big = vec![b' '; REGISTRY_VALUE_MAX + 1];
        let err = decode::<ClaimValue>(&big).unwrap_err();
        assert!(err.message.contains("4097 bytes"), "{err:?}");
    }
}
