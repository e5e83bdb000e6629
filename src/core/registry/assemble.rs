//! A [`Snapshot`] of the mesh → the [`Topology`] to plan, with every problem named by key.
//!
//! Unlike a file, which is refused whole, the registry skips only what cannot be planned: many
//! writers share it, and one node's bad record must not take the others' plans down. The rules
//! of docs/registry.md, "Who owns a CIDR when records disagree":
//!
//! - two claims overlap: the one with the smaller `mod_revision` keeps the CIDR (a rewritten
//!   claim is always newer, so no node can take a CIDR someone already holds);
//! - two planned records share a public key: the older record (`mod_revision`) wins;
//! - a record without a claim is *pending*; a claim without a record is reported; a `left`
//!   record is not planned;
//! - with `hubs` set, `hub: true` is honoured only for the nodes it lists;
//! - in hub mode, a spoke whose region has no hub is skipped.
//!
//! The survivors, ordered by name with every CIDR pinned, are written as a topology file
//! ([`super::transfer::export`]) and read back by `Topology::parse`: the registry's topology goes
//! through the file's validation and is exactly the one `registry export` prints.
//!
//! The policy key is checked apart (`policy.rs`), with the planned nodes' labels: a refused
//! policy never refuses the topology, so node changes apply while the daemon keeps its last good
//! policy.

use super::keys::{Key, Layout};
use super::policy::{self, PolicyRefused};
use super::records::NodeState;
use super::validate::{self, Claim, Record, Settings};
use super::{Problem, Revision, Snapshot};
use crate::core::key::PublicKey;
use crate::core::policy::spec::Labels;
use crate::core::policy::MeshPolicy;
use crate::core::topology::{Claims, MeshMode, Node, Topology, TopologyError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// What the registry holds, ready to plan.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub topology: Topology,
    pub settings: Settings,
    /// Everything skipped or ignored, each by key and field.
    pub problems: Vec<Problem>,
    /// Active records without a claim: joining, or waiting for the administrator.
    pub pending: Vec<String>,
    /// Records in state `left`: not planned, their claims kept.
    pub left: Vec<String>,
    /// The revision the snapshot was taken at.
    pub revision: Revision,
    /// The policy key's policy with `labels`; permissive when there is no key. Refused: the
    /// daemon keeps its last good one ([`super::policy::InForce`]).
    pub policy: Result<MeshPolicy, PolicyRefused>,
    /// The planned nodes' labels, from their records, by node name (nodes without labels absent).
    pub labels: BTreeMap<String, Labels>,
}

/// Why nothing could be planned; the daemon keeps its previous topology.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("{key}: no settings; `wiremesh registry import` writes them")]
    NoSettings { key: String },
    #[error("the settings are invalid:\n  {}", list(.0))]
    Settings(Vec<Problem>),
    #[error("no node can be planned ({} problem(s)){}", .0.len(),
            if .0.is_empty() { String::new() } else { format!(":\n  {}", list(.0)) })]
    NoNodes(Vec<Problem>),
    /// The checked records still failed the file's validation: a rule this module misses.
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// The checked values of a snapshot, by node name, with their revisions.
#[derive(Default)]
struct Values {
    records: BTreeMap<String, (Record, Revision, String)>,
    claims: Vec<(String, Claim, Revision, String)>,
    /// Every node with a claim key, valid or not: a node whose claim was refused (or lost an
    /// overlap) is reported by that claim, not listed as pending.
    claimed: HashSet<String>,
}

/// Assembles `snapshot` of the mesh laid out by `layout`; `source` names it in messages.
pub fn assemble(
    layout: &Layout,
    snapshot: &Snapshot,
    source: &Path,
) -> Result<Assembled, AssembleError> {
    let settings_key = layout.settings();
    let settings_kv = snapshot
        .kvs
        .get(&settings_key)
        .ok_or_else(|| AssembleError::NoSettings {
            key: settings_key.clone(),
        })?;
    let settings =
        validate::settings(&settings_key, &settings_kv.value).map_err(AssembleError::Settings)?;
    let mut problems = Vec::new();
    let values = read_values(layout, snapshot, &settings, &mut problems);

    let owned = owners(&values.claims, &mut problems);
    let mut pending = Vec::new();
    let mut left = Vec::new();
    let mut candidates = Vec::new();
    for (name, (record, revision, key)) in &values.records {
        match (record.state, owned.get(name)) {
            (NodeState::Left, _) => left.push(name.clone()),
            (NodeState::Active, None) if values.claimed.contains(name) => {}
            (NodeState::Active, None) => pending.push(name.clone()),
            (NodeState::Active, Some(claim)) => candidates.push((record, *claim, *revision, key)),
        }
    }
    for (name, _, _, key) in &values.claims {
        if !values.records.contains_key(name) {
            problems.push(Problem::new(key, None, "a claim without a record; ignored"));
        }
    }
    let candidates = unique_keys(candidates, &mut problems);
    let nodes = nodes(&settings, candidates, &mut problems);
    if nodes.is_empty() {
        return Err(AssembleError::NoNodes(problems));
    }
    let candidate = Topology {
        source: source.to_path_buf(),
        mesh: settings.mesh.clone(),
        nodes,
        lab_links: Vec::new(),
    };
    let topology = Topology::parse(&super::transfer::export(&candidate), source)?;
    let labels: BTreeMap<String, Labels> = topology
        .nodes
        .iter()
        .filter_map(|n| {
            let (record, _, _) = values.records.get(&n.name)?;
            (!record.labels.is_empty()).then(|| (n.name.clone(), record.labels.clone()))
        })
        .collect();
    Ok(Assembled {
        policy: policy::of_snapshot(layout, snapshot, &labels),
        labels,
        topology,
        settings,
        problems,
        pending,
        left,
        revision: snapshot.revision,
    })
}

/// Every record and claim checked; the rest of the keys checked for form only.
fn read_values(
    layout: &Layout,
    snapshot: &Snapshot,
    settings: &Settings,
    problems: &mut Vec<Problem>,
) -> Values {
    let mut values = Values::default();
    let skipped = |p: Vec<Problem>| {
        p.into_iter().map(|mut p| {
            p.message.push_str("; skipped");
            p
        })
    };
    for (key, kv) in &snapshot.kvs {
        match layout.parse(key) {
            // read apart: the policy never refuses the topology (`policy.rs`)
            Ok(Key::Settings | Key::Policy) => {}
            Ok(Key::Record(name)) => match validate::record(key, &name, &kv.value, settings) {
                Ok(r) => {
                    values
                        .records
                        .insert(name, (r, kv.mod_revision, key.clone()));
                }
                Err(p) => problems.extend(skipped(p)),
            },
            Ok(Key::Claim(name)) => {
                values.claimed.insert(name.clone());
                match validate::claim(key, &kv.value, settings) {
                    Ok(c) => values.claims.push((name, c, kv.mod_revision, key.clone())),
                    Err(p) => problems.extend(skipped(p)),
                }
            }
            Ok(Key::Presence(_)) => {
                if let Err(p) = validate::presence(key, &kv.value) {
                    problems.extend(p);
                }
            }
            Ok(Key::Absent(_)) => {
                if let Err(p) = validate::absent(key, &kv.value) {
                    problems.extend(p);
                }
            }
            // locks for racing joiners, not the authority: gc reports the orphans
            Ok(Key::Alloc(_)) => {}
            Err(e) => problems.push(Problem::new(key, None, format!("{e}; ignored"))),
        }
    }
    values
}

/// Which node owns each claim: oldest first, a claim overlapping an older one loses (naming
/// both keys). Returns the winners by node name.
fn owners(
    claims: &[(String, Claim, Revision, String)],
    problems: &mut Vec<Problem>,
) -> HashMap<String, Claim> {
    let mut order: Vec<&(String, Claim, Revision, String)> = claims.iter().collect();
    order.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
    // owners are (key, revision), for the message of the claim that loses
    let mut held4: Claims<(String, Revision)> = Claims::v4();
    let mut held6: Claims<(String, Revision)> = Claims::v6();
    let mut owned = HashMap::new();
    for (name, claim, revision, key) in order {
        let clash4 = held4.overlapping(claim.pod_cidr).next().cloned();
        let clash6 = claim
            .pod_cidr_v6
            .and_then(|net| held6.overlapping(net).next().cloned());
        let clash = clash4
            .map(|c| ("pod-cidr", claim.pod_cidr.to_string(), c))
            .or_else(|| {
                clash6.map(|c| {
                    let net = claim.pod_cidr_v6.map(|n| n.to_string()).unwrap_or_default();
                    ("pod-cidr-v6", net, c)
                })
            });
        if let Some((field, net, (older, older_rev))) = clash {
            problems.push(Problem::new(
                key,
                Some(field),
                format!(
                    "{net} overlaps the older claim {} (revision {older_rev}); node skipped",
                    super::shown_key(&older)
                ),
            ));
            continue;
        }
        held4.insert(claim.pod_cidr, (key.clone(), *revision));
        if let Some(net) = claim.pod_cidr_v6 {
            held6.insert(net, (key.clone(), *revision));
        }
        owned.insert(name.clone(), *claim);
    }
    owned
}

type Candidate<'a> = (&'a Record, Claim, Revision, &'a String);

/// Drops every candidate whose public key an older record holds.
fn unique_keys<'a>(
    mut candidates: Vec<Candidate<'a>>,
    problems: &mut Vec<Problem>,
) -> Vec<Candidate<'a>> {
    candidates.sort_by(|a, b| (a.2, &a.0.name).cmp(&(b.2, &b.0.name)));
    let mut holders: HashMap<PublicKey, &String> = HashMap::new();
    candidates.retain(
        |(record, _, _, key)| match holders.get(&record.public_key) {
            Some(older) => {
                problems.push(Problem::new(
                    key,
                    Some("public-key"),
                    format!(
                        "the same key as the older record {}; skipped",
                        super::shown_key(older)
                    ),
                ));
                false
            }
            None => {
                holders.insert(record.public_key, *key);
                true
            }
        },
    );
    candidates.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    candidates
}

/// The planned nodes, by name: `hubs` applied, and in hub mode spokes without a hub skipped.
fn nodes(
    settings: &Settings,
    candidates: Vec<Candidate<'_>>,
    problems: &mut Vec<Problem>,
) -> Vec<Node> {
    let mut nodes: Vec<(Node, &String)> = candidates
        .into_iter()
        .map(|(record, claim, _, key)| {
            let allowed = settings
                .hubs
                .as_ref()
                .is_none_or(|hubs| hubs.contains(&record.name));
            if record.hub && !allowed {
                problems.push(Problem::new(
                    key,
                    Some("hub"),
                    "not listed in the settings' hubs; planned as a spoke",
                ));
            }
            let node = Node {
                name: record.name.clone(),
                cloud: record.cloud.clone(),
                region: record.region.clone(),
                endpoint: record.endpoint.clone(),
                scoped: record.scoped.clone(),
                public_key: record.public_key,
                pod_cidr: claim.pod_cidr,
                pod_cidr_v6: claim.pod_cidr_v6,
                pod_cidr_pinned: true,
                pod_cidr_v6_pinned: claim.pod_cidr_v6.is_some(),
                hub: record.hub && allowed,
                listen_port: record.listen_port,
            };
            (node, key)
        })
        .collect();
    if settings.mesh.mode == MeshMode::Hub {
        let with_hub: HashSet<String> = nodes
            .iter()
            .filter(|(n, _)| n.hub)
            .map(|(n, _)| n.region.clone())
            .collect();
        nodes.retain(|(n, key)| {
            let keep = with_hub.contains(&n.region);
            if !keep {
                problems.push(Problem::new(
                    key,
                    Some("region"),
                    format!(
                        "region '{}' has no hub among the planned nodes; skipped",
                        n.region
                    ),
                ));
            }
            keep
        });
    }
    nodes.into_iter().map(|(n, _)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry::testing::{key_text, settings_json, Builder};

    fn run(b: &Builder) -> Result<Assembled, AssembleError> {
        assemble(
            &b.layout,
            &b.snapshot(),
            Path::new("etcd://test/wiremesh/prod/"),
        )
    }

    fn names(a: &Assembled) -> Vec<&str> {
        a.topology.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    fn shown(a: &Assembled) -> Vec<String> {
        a.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn claimed_active_records_are_planned_by_name_with_their_claims() {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .node("b", 1, "10.244.2.0/24")
            .node("a", 2, "10.244.1.0/24");
        let a = run(&b).unwrap();
        assert_eq!(names(&a), ["a", "b"]);
        assert_eq!(a.topology.nodes[0].pod_cidr.to_string(), "10.244.1.0/24");
        assert!(a.topology.nodes.iter().all(|n| n.pod_cidr_pinned));
        assert!(a.problems.is_empty(), "{:?}", a.problems);
    }

    #[test]
    fn the_older_of_two_overlapping_claims_keeps_the_cidr() {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .node("old", 1, "10.244.1.0/24")
            .node("new", 2, "10.244.1.0/24")
            .node("other", 3, "10.244.3.0/24");
        let a = run(&b).unwrap();
        assert_eq!(names(&a), ["old", "other"]);
        assert_eq!(
            shown(&a),
            [
                "/wiremesh/prod/claims/new: field 'pod-cidr': 10.244.1.0/24 overlaps the older \
              claim /wiremesh/prod/claims/old (revision 4); node skipped"
            ]
        );
    }

    #[test]
    fn a_claim_rewritten_onto_a_held_cidr_is_newest_and_loses() {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .node("thief", 1, "10.244.9.0/24")
            .node("victim", 2, "10.244.1.0/24")
            .claim("thief", "10.244.1.0/24");
        let a = run(&b).unwrap();
        assert_eq!(names(&a), ["victim"]);
        assert!(
            shown(&a)[0].starts_with("/wiremesh/prod/claims/thief:"),
            "{:?}",
            shown(&a)
        );
    }

    #[test]
    fn the_older_of_two_records_with_one_key_wins() {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .node("first", 1, "10.244.1.0/24")
            .node("copy", 1, "10.244.2.0/24");
        let a = run(&b).unwrap();
        assert_eq!(names(&a), ["first"]);
        assert_eq!(
            shown(&a),
            [
                "/wiremesh/prod/node/copy/record: field 'public-key': the same key as the older \
              record /wiremesh/prod/node/first/record; skipped"
            ]
        );
    }

    #[test]
    fn pending_left_and_unrecorded_claims_are_told_apart() {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .node("up", 1, "10.244.1.0/24")
            .record("joining", 2, "")
            .record("gone", 3, r#","state":"left""#)
            .claim("gone", "10.244.3.0/24")
            .claim("orphan", "10.244.4.0/24");
        let a = run(&b).unwrap();
        assert_eq!(names(&a), ["up"]);
        assert_eq!(a.pending, ["joining"]);
        assert_eq!(a.left, ["gone"]);
        assert_eq!(
            shown(&a),
            ["/wiremesh/prod/claims/orphan: a claim without a record; ignored"]
        );
    }

    #[test]
    fn a_node_whose_claim_is_refused_is_reported_by_its_claim_not_pending() {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .node("good", 1, "10.244.1.0/24")
            .node("bad", 2, "10.245.0.0/24");
        let a = run(&b).unwrap();
        assert_eq!(names(&a), ["good"]);
        assert!(a.pending.is_empty(), "{:?}", a.pending);
        assert_eq!(
            shown(&a),
            ["/wiremesh/prod/claims/bad: field 'pod-cidr': 10.245.0.0/24 is outside the cluster \
              CIDR 10.244.0.0/16; skipped"]
        );
    }

    #[test]
    fn a_bad_record_is_skipped_by_key_and_the_rest_planned() {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .node("good", 1, "10.244.1.0/24")
            .node("bad", 2, "10.244.2.0/24");
        let bad = b.layout.record("bad");
        b.put(
            &bad,
            r#"{"v":1,"name":"bad","cloud":"c","region":"r","public-key":"AAAA"}"#,
        );
        let a = run(&b).unwrap();
        assert_eq!(names(&a), ["good"]);
        assert_eq!(
            shown(&a),
            [
                "/wiremesh/prod/node/bad/record: field 'public-key': not a WireGuard key: \
                 decodes to 3 bytes, a WireGuard key has 32; skipped",
                "/wiremesh/prod/claims/bad: a claim without a record; ignored",
            ]
        );
    }

    #[test]
    fn garbage_values_and_unknown_keys_are_reported_never_a_panic() {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .node("good", 1, "10.244.1.0/24");
        let garbage: [&str; 6] = [
            "",
            "\u{0}\u{1b}[2J",
            r#"{"v":99,"name":"x"}"#,
            r#"{"v":1,"name":"x","cloud":"c","region":"r","public-key":"k","extra":1}"#,
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            r#"{"v":1,"pod-cidr":"10.244.0.0/8"}"#,
        ];
        for (i, g) in garbage.iter().enumerate() {
            let name = format!("g{i}");
            let (record, claim) = (b.layout.record(&name), b.layout.claim(&name));
            b.put(&record, g).put(&claim, g);
        }
        let big = "x".repeat(1 << 20);
        b.put("/wiremesh/prod/node/huge/record", &big);
        b.put("/wiremesh/prod/new-kind-of-key", "{}");
        b.put(
            &format!("/wiremesh/prod/claims/{}", "\u{1b}".repeat(5000)),
            "{}",
        );
        let a = run(&b).unwrap();
        assert_eq!(names(&a), ["good"]);
        // each garbage record and claim, the huge one, two unknown keys
        assert!(a.problems.len() >= 6 * 2 + 3, "{:#?}", a.problems);
        for p in shown(&a) {
            assert!(p.starts_with("/wiremesh/prod/"), "{p}");
            assert!(!p.chars().any(char::is_control), "{p}");
            assert!(p.len() < 1000, "{p}");
        }
    }

    #[test]
    fn missing_or_bad_settings_keep_the_previous_topology() {
        let mut b = Builder::new();
        b.node("a", 1, "10.244.1.0/24");
        assert!(matches!(run(&b), Err(AssembleError::NoSettings { .. })));
        b.settings(r#"{"v":1,"mode":"full","cluster-cidr":"nope"}"#);
        let err = run(&b).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the settings are invalid:\n  /wiremesh/prod/settings: field 'cluster-cidr': 'nope' \
             is not an IPv4 CIDR like 10.244.0.0/16"
        );
    }

    #[test]
    fn nothing_to_plan_is_an_error_not_an_empty_mesh() {
        let mut b = Builder::new();
        b.settings(&settings_json(false)).record("joining", 1, "");
        assert!(matches!(run(&b), Err(AssembleError::NoNodes(p)) if p.is_empty()));
    }

    #[test]
    fn in_hub_mode_unlisted_hubs_are_spokes_and_hubless_spokes_are_skipped() {
        let mut b = Builder::new();
        b.settings(
            r#"{"v":1,"mode":"hub","cluster-cidr":"10.244.0.0/16","hubs":["h"],
                "regions":{"r":{"underlay-mtu":1460}}}"#,
        )
        .record("h", 1, r#","hub":true"#)
        .claim("h", "10.244.1.0/24")
        .record("s", 2, "")
        .claim("s", "10.244.2.0/24")
        .claim("rogue", "10.244.3.0/24");
        let rogue = b.layout.record("rogue");
        b.put(
            &rogue,
            &format!(
                r#"{{"v":1,"name":"rogue","cloud":"c","region":"r2","public-key":"{}","hub":true}}"#,
                key_text(3)
            ),
        );
        let a = run(&b).unwrap();
        assert_eq!(names(&a), ["h", "s"]);
        assert_eq!(a.topology.underlay_mtu("r"), 1460);
        assert_eq!(
            shown(&a),
            [
                "/wiremesh/prod/node/rogue/record: field 'hub': not listed in the settings' \
                 hubs; planned as a spoke",
                "/wiremesh/prod/node/rogue/record: field 'region': region 'r2' has no hub \
                 among the planned nodes; skipped",
            ]
        );
    }

    #[test]
    fn the_assembled_topology_is_what_the_file_would_give() {
        let mut b = Builder::new();
        b.settings(&settings_json(true))
            .record("a", 1, r#","endpoints":["192.0.2.1"],"listen-port":5000"#)
            .put(
                "/wiremesh/prod/claims/a",
                r#"{"v":1,"pod-cidr":"10.244.1.0/24","pod-cidr-v6":"fd10:244:0:1::/64"}"#,
            );
        let a = run(&b).unwrap();
        let n = &a.topology.nodes[0];
        assert_eq!(n.endpoint.as_ref().unwrap().to_string(), "192.0.2.1:5000");
        assert_eq!(n.listen_port, 5000);
        assert_eq!(n.pod_cidr_v6.unwrap().to_string(), "fd10:244:0:1::/64");
        let again = Topology::parse(
            &crate::core::registry::transfer::export(&a.topology),
            &a.topology.source,
        )
        .unwrap();
        assert_eq!(again, a.topology);
    }

    #[test]
    fn a_scoped_record_gives_peers_in_its_scope_the_private_address_and_others_the_public() {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .record(
                "a",
                1,
                r#","endpoints":[{"address":"10.0.1.5","scope":"aws:vpc-1"},"203.0.113.5"]"#,
            )
            .claim("a", "10.244.1.0/24")
            .record(
                "b",
                2,
                r#","endpoints":["203.0.113.6",{"address":"10.0.1.6","scope":"aws:vpc-1"}]"#,
            )
            .claim("b", "10.244.2.0/24")
            .record("c", 3, r#","endpoints":["198.51.100.7"]"#)
            .claim("c", "10.244.3.0/24");
        let a = run(&b).unwrap();
        assert!(a.problems.is_empty(), "{:?}", a.problems);
        let t = &a.topology;
        let to = |from: &str, to: &str| {
            let (from, to) = (t.node(from).unwrap(), t.node(to).unwrap());
            to.endpoint_for(from).map(|e| e.to_string())
        };
        assert_eq!(to("a", "b").as_deref(), Some("10.0.1.6:51820"));
        assert_eq!(to("b", "a").as_deref(), Some("10.0.1.5:51820"));
        assert_eq!(to("c", "a").as_deref(), Some("203.0.113.5:51820"));
        assert_eq!(to("c", "b").as_deref(), Some("203.0.113.6:51820"));
        assert_eq!(to("a", "c").as_deref(), Some("198.51.100.7:51820"));
    }

    #[test]
    fn a_bad_scoped_record_is_skipped_by_key_and_field_and_the_rest_planned() {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .node("good", 1, "10.244.1.0/24")
            .record(
                "bad",
                2,
                r#","endpoints":[{"address":"10.0.1.5","scope":"aws:vpc-1"},"10.0.9.9"]"#,
            )
            .claim("bad", "10.244.2.0/24");
        let a = run(&b).unwrap();
        assert_eq!(names(&a), ["good"]);
        assert_eq!(
            shown(&a),
            [
                "/wiremesh/prod/node/bad/record: field 'endpoints[1]': '10.0.9.9' is a private \
                 address: give it the scope it is reachable in (aws:vpc-1, say), or it is tried \
                 from networks that cannot reach it; skipped",
                "/wiremesh/prod/claims/bad: a claim without a record; ignored",
            ]
        );
    }
}
