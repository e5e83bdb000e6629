//! One value of the registry → its checked form, or every problem in it, each named by the
//! etcd key and the field.
//!
//! The rules are the topology file's, through the same functions (names, `Endpoint::parse`,
//! `PublicKey`, CIDRs, ports, MTUs), so a value is refused in the same words as the same line in
//! a file. What only the registry has (several endpoints, labels, `hubs`, `gc-after`, the claim's
//! size) is checked here.

use super::records::{
    decode, AbsentValue, ClaimValue, EndpointValue, NodeState, PresenceValue, RecordValue,
    SettingsValue,
};
use super::Problem;
use crate::constants::{DEFAULT_LISTEN_PORT, DEFAULT_UNDERLAY_MTU};
use crate::core::key::PublicKey;
use crate::core::policy::labels::{key_problem, value_problem};
use crate::core::topology::{
    check_list, mtu_problem, node_prefix_problem, parse_cidr, shown, underlay_mtu_problem,
    valid_name, Endpoint, EntryText, MeshMode, MeshSettings, Part, Region, ScopedEndpoint,
    MAX_ENDPOINTS, NAME_RULE, PORT_ZERO,
};
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The most labels a record may carry: as many as a node of a file.
pub const MAX_LABELS: usize = crate::constants::POLICY_MAX_LABELS;

/// Checked settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// What a topology file's top level says too.
    pub mesh: MeshSettings,
    /// `None`: any node may be a hub.
    pub hubs: Option<BTreeSet<String>>,
    /// `None`: gc of nodes is off.
    pub gc_after: Option<Duration>,
}

/// A checked node record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub cloud: String,
    pub region: String,
    /// What peers outside the node's scopes use; `None`: behind NAT.
    pub endpoint: Option<Endpoint>,
    /// The addresses reachable only inside a scope (docs/nat.md, section 1).
    pub scoped: Vec<ScopedEndpoint>,
    pub public_key: PublicKey,
    /// The node's port: its own, or the mesh's.
    pub listen_port: u16,
    pub hub: bool,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
}

/// A checked claim: network addresses inside the pools, each within one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub pod_cidr: Ipv4Net,
    pub pod_cidr_v6: Option<Ipv6Net>,
}

/// Collects a value's problems under its key.
struct Problems<'a> {
    key: &'a str,
    list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    fn new(key: &'a str) -> Self {
        Problems {
            key,
            list: Vec::new(),
        }
    }

    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.list.push(Problem::new(self.key, Some(field), message));
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<Problem>> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(self.list)
        }
    }
}

/// Decodes `value` of `key`, turning a parse failure into the key's one problem.
fn read<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, Vec<Problem>> {
    decode(value).map_err(|e| vec![Problem::new(key, e.field.as_deref(), e.message)])
}

/// Checks the settings.
pub fn settings(key: &str, value: &[u8]) -> Result<Settings, Vec<Problem>> {
    let raw: SettingsValue = read(key, value)?;
    let mut p = Problems::new(key);
    let mode = match raw.mode.as_str() {
        "full" => MeshMode::Full,
        "hub" => MeshMode::Hub,
        other => {
            p.push(
                "mode",
                format!("'{}' is not a mesh mode (full or hub)", shown(other)),
            );
            MeshMode::Full
        }
    };
    let node_prefix = raw.node_prefix.unwrap_or(24);
    let cluster = parse_cidr::<Ipv4Net>(&raw.cluster_cidr)
        .map_err(|m| p.push("cluster-cidr", m))
        .ok();
    if let Some(msg) = cluster.and_then(|c| node_prefix_problem(node_prefix, c.prefix_len(), 30)) {
        p.push("node-prefix", msg);
    }
    let node_prefix_v6 = raw.node_prefix_v6.unwrap_or(64);
    let cluster_v6 = raw.cluster_cidr_v6.as_deref().and_then(|s| {
        parse_cidr::<Ipv6Net>(s)
            .map_err(|m| p.push("cluster-cidr-v6", m))
            .ok()
    });
    if let Some(msg) =
        cluster_v6.and_then(|c| node_prefix_problem(node_prefix_v6, c.prefix_len(), 126))
    {
        p.push("node-prefix-v6", msg);
    }
    if raw.listen_port == Some(0) {
        p.push("listen-port", PORT_ZERO);
    }
    if let Some(msg) = raw.mtu.and_then(mtu_problem) {
        p.push("mtu", msg);
    }
    let mut regions = BTreeMap::new();
    for (name, region) in &raw.regions {
        if !valid_name(name) {
            p.push("regions", format!("'{}' {NAME_RULE}", shown(name)));
        }
        let mtu = region.underlay_mtu.unwrap_or(DEFAULT_UNDERLAY_MTU);
        if let Some(msg) = region.underlay_mtu.and_then(underlay_mtu_problem) {
            p.push(&format!("regions.{}.underlay-mtu", shown(name)), msg);
        }
        regions.insert(name.clone(), Region { underlay_mtu: mtu });
    }
    let hubs: Option<BTreeSet<String>> = raw.hubs.map(|hubs| {
        for h in hubs.iter().filter(|h| !valid_name(h)) {
            p.push("hubs", format!("'{}' {NAME_RULE}", shown(h)));
        }
        hubs.into_iter().collect()
    });
    let gc_after = raw
        .gc_after
        .as_deref()
        .and_then(|s| parse_duration(s).map_err(|m| p.push("gc-after", m)).ok());
    let Some(cluster_cidr) = cluster else {
        return Err(p.list);
    };
    p.finish(Settings {
        mesh: MeshSettings {
            mode,
            cluster_cidr,
            node_prefix,
            cluster_cidr_v6: cluster_v6,
            node_prefix_v6,
            listen_port: raw.listen_port.unwrap_or(DEFAULT_LISTEN_PORT),
            persistent_keepalive: raw.persistent_keepalive.filter(|&k| k > 0),
            mtu: raw.mtu,
            regions,
        },
        hubs,
        gc_after,
    })
}

/// `7d`, `12h`, `30m` or `600s`; not zero (that would remove every node at the first gc).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("'{}' is not a duration like 7d, 12h, 30m or 600s", shown(s));
    let unit = s.chars().last().ok_or_else(bad)?;
    let seconds = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let total = n.checked_mul(seconds).ok_or_else(bad)?;
    if total == 0 {
        return Err(format!("'{}': 0 would remove every node at once", shown(s)));
    }
    Ok(Duration::from_secs(total))
}

/// Checks a node's record, stored under `name`'s key.
pub fn record(
    key: &str,
    name: &str,
    value: &[u8],
    settings: &Settings,
) -> Result<Record, Vec<Problem>> {
    let raw: RecordValue = read(key, value)?;
    let mut p = Problems::new(key);
    if raw.name != name {
        p.push(
            "name",
            format!("'{}' is not the key's name '{name}'", shown(&raw.name)),
        );
    }
    for (field, v) in [("cloud", &raw.cloud), ("region", &raw.region)] {
        if !valid_name(v) {
            p.push(field, format!("'{}' {NAME_RULE}", shown(v)));
        }
    }
    if raw.listen_port == Some(0) {
        p.push("listen-port", PORT_ZERO);
    }
    let listen_port = raw.listen_port.unwrap_or(settings.mesh.listen_port);
    let (endpoint, scoped) = endpoints(&mut p, &raw.endpoints, listen_port);
    let public_key = raw
        .public_key
        .parse::<PublicKey>()
        .map_err(|err| p.push("public-key", format!("not a WireGuard key: {err}")))
        .ok();
    check_labels(&mut p, &raw.labels);
    let Some(public_key) = public_key else {
        return Err(p.list);
    };
    p.finish(Record {
        name: raw.name,
        cloud: raw.cloud,
        region: raw.region,
        endpoint,
        scoped,
        public_key,
        listen_port,
        hub: raw.hub,
        labels: raw.labels,
        state: raw.state,
    })
}

/// A record's endpoints. Plain strings only (every record before scopes): each must parse, the
/// first is the endpoint, and a private one is allowed, as the file's one-line `endpoint` (the
/// lab's addresses are private). With any object entry the list is the file's `endpoints`,
/// checked by the file's function, so a record is refused where that file line would be; the
/// registry's topology goes through the file's validation (`assemble.rs`), and a list it would
/// refuse must be stopped here, at its own record, not take the whole mesh down.
fn endpoints(
    p: &mut Problems,
    list: &[EndpointValue],
    port: u16,
) -> (Option<Endpoint>, Vec<ScopedEndpoint>) {
    if list.len() > MAX_ENDPOINTS {
        p.push(
            "endpoints",
            format!("{} entries; at most {MAX_ENDPOINTS}", list.len()),
        );
    }
    if list.iter().all(|e| matches!(e, EndpointValue::Plain(_))) {
        let mut first = None;
        for e in list.iter().take(MAX_ENDPOINTS) {
            match Endpoint::parse(e.address(), port) {
                Ok(ep) => {
                    first.get_or_insert(ep);
                }
                Err(err) => p.push("endpoints", format!("'{}': {err}", shown(e.address()))),
            }
        }
        return (first, Vec::new());
    }
    let entries: Vec<EntryText> = list
        .iter()
        .map(|e| EntryText {
            address: e.address(),
            scope: e.scope(),
        })
        .collect();
    let checked = check_list(&entries, port);
    // named as the decoder names a field: `endpoints[1].scope`; a plain string has no parts
    let field = |i: usize, part: &str| match &list[i] {
        EndpointValue::Plain(_) => format!("endpoints[{i}]"),
        EndpointValue::Object(_) => format!("endpoints[{i}].{part}"),
    };
    for problem in checked.problems {
        let (field, mut message) = match problem.part {
            // counted above, in the same words
            Part::List => continue,
            Part::Address(i) => (field(i, "address"), problem.message),
            Part::Scope(i) => (field(i, "scope"), problem.message),
        };
        if let Some(first) = problem.first {
            message.push_str(&format!(" (first as endpoints[{first}])"));
        }
        p.push(&field, message);
    }
    (checked.endpoint, checked.scoped)
}

/// At most [`MAX_LABELS`], by the rules of the file's `labels` (`core/policy/labels.rs`, the
/// Kubernetes rules): policy selectors match them, and `registry export` writes them into a file
/// that must parse.
fn check_labels(p: &mut Problems, labels: &BTreeMap<String, String>) {
    if labels.len() > MAX_LABELS {
        p.push(
            "labels",
            format!("{} labels; at most {MAX_LABELS}", labels.len()),
        );
        return;
    }
    for (k, v) in labels {
        if let Some(msg) = key_problem(k) {
            p.push("labels", msg);
        } else if let Some(msg) = value_problem(v) {
            p.push(&format!("labels.{k}"), msg);
        }
    }
}

/// Checks a claim against the pools: network addresses inside them, no larger than one slot
/// (so a claim never holds two), at most /30 (/126); a v6 CIDR exactly when dual stack.
pub fn claim(key: &str, value: &[u8], settings: &Settings) -> Result<Claim, Vec<Problem>> {
    let raw: ClaimValue = read(key, value)?;
    let mut p = Problems::new(key);
    let v4 = parse_cidr::<Ipv4Net>(&raw.pod_cidr)
        .map_err(|m| p.push("pod-cidr", m))
        .ok();
    if let Some(net) = v4 {
        if let Some(msg) = slot_problem(
            net,
            settings.mesh.cluster_cidr,
            settings.mesh.node_prefix,
            30,
            "cluster-cidr",
        ) {
            p.push("pod-cidr", msg);
        }
    }
    let v6 = match (&raw.pod_cidr_v6, settings.mesh.cluster_cidr_v6) {
        (None, None) => None,
        (Some(_), None) => {
            p.push("pod-cidr-v6", "set, but the mesh has no cluster-cidr-v6");
            None
        }
        (None, Some(_)) => {
            p.push(
                "pod-cidr-v6",
                "missing: the mesh is dual stack (cluster-cidr-v6)",
            );
            None
        }
        (Some(s), Some(pool)) => parse_cidr::<Ipv6Net>(s)
            .map_err(|m| p.push("pod-cidr-v6", m))
            .ok()
            .inspect(|&net| {
                if let Some(msg) = slot_problem(
                    net,
                    pool,
                    settings.mesh.node_prefix_v6,
                    126,
                    "cluster-cidr-v6",
                ) {
                    p.push("pod-cidr-v6", msg);
                }
            }),
    };
    let Some(pod_cidr) = v4 else {
        return Err(p.list);
    };
    p.finish(Claim {
        pod_cidr,
        pod_cidr_v6: v6,
    })
}

/// Why `net` cannot be a claim in `pool` of `/prefix` slots, if it cannot.
fn slot_problem<N>(net: N, pool: N, prefix: u8, max: u8, pool_field: &str) -> Option<String>
where
    N: Copy + std::fmt::Display + Into<ipnet::IpNet>,
{
    let (n, c): (ipnet::IpNet, ipnet::IpNet) = (net.into(), pool.into());
    if !c.contains(&n) {
        Some(format!("{net} is outside the cluster CIDR {pool}"))
    } else if n.prefix_len() < prefix {
        Some(format!(
            "{net} is larger than one /{prefix} slot of {pool_field}"
        ))
    } else if n.prefix_len() > max {
        Some(format!("{net} is too small; at most /{max}"))
    } else {
        None
    }
}

/// Checks a presence value (only its form: it is informational).
pub fn presence(key: &str, value: &[u8]) -> Result<PresenceValue, Vec<Problem>> {
    read(key, value)
}

/// Checks gc's absence mark.
pub fn absent(key: &str, value: &[u8]) -> Result<AbsentValue, Vec<Problem>> {
    read(key, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry::testing::{key_text, settings_json};

    const KEY: &str = "/wiremesh/prod/node/x/record";

    fn dual() -> Settings {
        settings("s", settings_json(true).as_bytes()).unwrap()
    }

    fn record_json(fields: &str) -> String {
        format!(
            r#"{{"v":1,"name":"x","cloud":"c","region":"r","public-key":"{}"{fields}}}"#,
            key_text(1)
        )
    }

    /// The problems of a record, as `field: message` lines.
    fn record_problems(json: &str) -> Vec<String> {
        record(KEY, "x", json.as_bytes(), &dual())
            .unwrap_err()
            .into_iter()
            .map(|p| {
                assert_eq!(p.key, KEY);
                format!("{}: {}", p.field.unwrap_or_default(), p.message)
            })
            .collect()
    }

    #[test]
    fn a_good_record_is_checked_with_the_meshs_port_as_default() {
        let r = record(
            KEY,
            "x",
            record_json(r#","endpoints":["gw.example.net","192.0.2.1:5"]"#).as_bytes(),
            &dual(),
        )
        .unwrap();
        assert_eq!(r.listen_port, 51820);
        assert_eq!(r.endpoint.unwrap().to_string(), "gw.example.net:51820");
        assert!(r.scoped.is_empty());
        assert_eq!(r.state, NodeState::Active);
    }

    #[test]
    fn a_bad_key_is_refused_in_the_files_words_naming_key_and_field() {
        let json = record_json("").replace(&key_text(1), "AAAA");
        let p = record(KEY, "x", json.as_bytes(), &dual()).unwrap_err();
        assert_eq!(
            p[0].to_string(),
            "/wiremesh/prod/node/x/record: field 'public-key': not a WireGuard key: decodes to 3 \
             bytes, a WireGuard key has 32"
        );
    }

    #[test]
    fn every_problem_of_a_record_is_reported_at_once() {
        let labels: Vec<String> = (0..33).map(|i| format!("\"k{i}\":\"v\"")).collect();
        let json = format!(
            r#"{{"v":1,"name":"y","cloud":"c c","region":"r","public-key":"{}","listen-port":0,
            "endpoints":["2001:db8::1:5","a","b","c","d","e","f","g","h"],"labels":{{{}}}}}"#,
            key_text(1),
            labels.join(",")
        );
        let got = record_problems(&json);
        assert_eq!(
            got,
            [
                "name: 'y' is not the key's name 'x'",
                "cloud: 'c c' must be 1-63 letters, digits, '-', '_' or '.'",
                "listen-port: port 0 is not a port to listen on",
                "endpoints: 9 entries; at most 8",
                "endpoints: '2001:db8::1:5': IPv6 address must be in brackets: [addr]:port",
                "labels: 33 labels; at most 32",
            ]
        );
    }

    #[test]
    fn an_old_record_of_plain_strings_keeps_its_meaning_private_addresses_included() {
        let r = record(
            KEY,
            "x",
            record_json(r#","endpoints":["10.99.0.2:51820","10.99.0.2:51820"]"#).as_bytes(),
            &dual(),
        )
        .unwrap();
        assert_eq!(r.endpoint.unwrap().to_string(), "10.99.0.2:51820");
        assert!(r.scoped.is_empty());
    }

    #[test]
    fn scoped_entries_give_the_first_unscoped_endpoint_and_the_scoped_ones() {
        let r = record(
            KEY,
            "x",
            record_json(
                r#","endpoints":[{"address":"10.0.1.5","scope":"aws:vpc-1"},
                "203.0.113.5:51820",{"address":"198.51.100.7"}]"#,
            )
            .as_bytes(),
            &dual(),
        )
        .unwrap();
        assert_eq!(r.endpoint.unwrap().to_string(), "203.0.113.5:51820");
        assert_eq!(r.scoped.len(), 1);
        assert_eq!(r.scoped[0].scope, "aws:vpc-1");
        assert_eq!(r.scoped[0].endpoint.to_string(), "10.0.1.5:51820");
    }

    #[test]
    fn a_bad_scoped_list_is_refused_by_the_files_rules_naming_each_entry() {
        let got = record_problems(&record_json(
            r#","endpoints":[{"address":"203.0.113.5:51820"},"203.0.113.5",
            {"address":"10.0.0.1","scope":""},{"address":"10.0.0.2","scope":"Vpc 1"},
            "192.168.1.1",{"address":"10.0.0.3"},{"address":"x:0","scope":"a"}]"#,
        ));
        assert_eq!(
            got,
            [
                "endpoints[1]: '203.0.113.5' is listed twice (first as endpoints[0])",
                "endpoints[2].scope: empty scope: name the network this address is reachable \
                 in, or leave the scope out for a public address",
                "endpoints[3].scope: 'Vpc 1': a scope is 1-63 of a-z, 0-9, ':', '.', '_', '-'",
                "endpoints[4]: '192.168.1.1' is a private address: give it the scope it is \
                 reachable in (aws:vpc-1, say), or it is tried from networks that cannot reach it",
                "endpoints[5].scope: '10.0.0.3' is a private address: give it the scope it is \
                 reachable in (aws:vpc-1, say), or it is tried from networks that cannot reach it",
                "endpoints[6].address: 'x:0': bad port '0' (expected 1-65535)",
            ]
        );
        let nine: Vec<String> = (1..=9)
            .map(|i| format!(r#"{{"address":"10.0.0.{i}","scope":"s"}}"#))
            .collect();
        let got = record_problems(&record_json(&format!(
            r#","endpoints":[{}]"#,
            nine.join(",")
        )));
        assert_eq!(got, ["endpoints: 9 entries; at most 8"]);
    }

    #[test]
    fn an_unknown_field_in_an_endpoint_object_is_named() {
        let got = record_problems(&record_json(
            r#","endpoints":[{"address":"10.0.0.1","scop":"s"}]"#,
        ));
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("endpoints[0].scop: unknown field `scop`"),
            "{got:?}"
        );
        let got = record_problems(&record_json(r#","endpoints":[7]"#));
        assert!(got[0].starts_with("endpoints[0]: invalid type"), "{got:?}");
    }

    #[test]
    fn labels_are_checked_by_name_and_value() {
        let got = record_problems(&record_json(
            r#","labels":{"Zone.":"b","ok":"a\u001bb","fine":"yes","Tier_1":"A.b"}"#,
        ));
        assert_eq!(
            got,
            [
                "labels: 'Zone.' is not a label key: 1-63 letters, digits, '-', '_' or '.', \
                 starting and ending with a letter or digit, after an optional 'dns.prefix/'",
                "labels.ok: 'a\\u{1b}b' is not a label value: at most 63 letters, digits, '-', \
                 '_' or '.', starting and ending with a letter or digit",
            ]
        );
    }

    #[test]
    fn claims_must_be_one_slot_inside_the_pool_and_dual_stack_when_the_mesh_is() {
        let s = dual();
        let ok = br#"{"v":1,"pod-cidr":"10.244.7.0/24","pod-cidr-v6":"fd10:244:0:7::/64"}"#;
        assert!(claim("k", ok, &s).is_ok());
        let cases: &[(&str, &str)] = &[
            (
                r#"{"v":1,"pod-cidr":"10.245.0.0/24","pod-cidr-v6":"fd10:244::/64"}"#,
                "pod-cidr: 10.245.0.0/24 is outside the cluster CIDR 10.244.0.0/16",
            ),
            (
                r#"{"v":1,"pod-cidr":"10.244.0.0/23","pod-cidr-v6":"fd10:244::/64"}"#,
                "pod-cidr: 10.244.0.0/23 is larger than one /24 slot of cluster-cidr",
            ),
            (
                r#"{"v":1,"pod-cidr":"10.244.0.0/31","pod-cidr-v6":"fd10:244::/64"}"#,
                "pod-cidr: 10.244.0.0/31 is too small; at most /30",
            ),
            (
                r#"{"v":1,"pod-cidr":"10.244.0.1/24","pod-cidr-v6":"fd10:244::/64"}"#,
                "pod-cidr: 10.244.0.1/24 has host bits set; did you mean 10.244.0.0/24?",
            ),
            (
                r#"{"v":1,"pod-cidr":"10.244.0.0/24"}"#,
                "pod-cidr-v6: missing: the mesh is dual stack (cluster-cidr-v6)",
            ),
            (
                r#"{"v":1,"pod-cidr":"10.244.0.0/24","pod-cidr-v6":"fd10:244::/60"}"#,
                "pod-cidr-v6: fd10:244::/60 is larger than one /64 slot of cluster-cidr-v6",
            ),
        ];
        for (json, want) in cases {
            let got = claim("k", json.as_bytes(), &s).unwrap_err();
            let got = format!("{}: {}", got[0].field.as_deref().unwrap(), got[0].message);
            assert_eq!(&got, want, "{json}");
        }
    }

    #[test]
    fn settings_are_refused_in_the_files_words() {
        let json = r#"{"v":1,"mode":"ring","cluster-cidr":"10.244.0.0/16","node-prefix":16,
            "listen-port":0,"mtu":100,"regions":{"r":{"underlay-mtu":10}},"hubs":["a b"],
            "gc-after":"7 days"}"#;
        let got: Vec<String> = settings("/wiremesh/p/settings", json.as_bytes())
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        let want = [
            "field 'mode': 'ring' is not a mesh mode (full or hub)",
            "field 'node-prefix': /16 must be longer than the cluster's /16 and at most /30",
            "field 'listen-port': port 0 is not a port to listen on",
            "field 'mtu': 100 is outside 576-65455",
            "field 'regions.r.underlay-mtu': 10 is outside 576-65535",
            "field 'hubs': 'a b' must be 1-63 letters, digits, '-', '_' or '.'",
            "field 'gc-after': '7 days' is not a duration like 7d, 12h, 30m or 600s",
        ];
        let want: Vec<String> = want
            .iter()
            .map(|w| format!("/wiremesh/p/settings: {w}"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn durations_are_read_in_their_four_units() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("600s"), Ok(Duration::from_secs(600)));
        for bad in [
            "",
            "d",
            "7",
            "-1d",
            "1.5h",
            "99999999999999999999d",
            "0s",
            "7dd",
            "٣d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_value_that_is_not_json_is_one_problem_of_its_key() {
        let p = record(KEY, "x", b"{not json", &dual()).unwrap_err();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, KEY);
        assert!(
            p[0].message.starts_with("not a value of the registry"),
            "{p:?}"
        );
    }
}
