//! The mesh's network policy in the registry (docs/registry.md, section 1; docs/policy.md).
//!
//! One key, `/wiremesh/<mesh>/policy`, holds the policy part of a topology file as TOML text
//! (`default-action`, `policy-mode`, `[cidr-set.NAME]`, `[[policy]]`): the format people already
//! write, checked by the file's own checker, so a policy means the same and is refused in the same
//! words (line, policy, field) wherever it lives. Labels stay in the node records; the rules name
//! them and [`of_snapshot`]'s caller adds them.
//!
//! A refused policy never reaches a plan: [`InForce`] keeps a daemon on its last good policy
//! while the key holds a bad one, and node changes still apply meanwhile.

use super::assemble::Assembled;
use super::keys::Layout;
use super::Snapshot;
use crate::constants::REGISTRY_POLICY_MAX;
use crate::core::policy::spec::Labels;
use crate::core::policy::MeshPolicy;
use crate::core::topology::{Problem, Topology, TopologyError};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml_edit::DocumentMut;

/// Why the policy key's value was refused: its problems, each with line, policy and field, as a
/// file's are shown, under the key's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRefused {
    /// The etcd key (or the file given to `registry policy set`), escaped and cut for messages.
    pub key: String,
    pub problems: Vec<Problem>,
}

impl PolicyRefused {
    fn of(key: &str, err: TopologyError) -> Self {
        PolicyRefused {
            key: super::shown_key(key),
            problems: err.problems(),
        }
    }

    fn one(key: &str, message: String) -> Self {
        PolicyRefused {
            key: super::shown_key(key),
            problems: vec![Problem {
                line: None,
                node: None,
                policy: None,
                field: None,
                message,
            }],
        }
    }
}

impl fmt::Display for PolicyRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the file's own format: "KEY: N problem(s):\n  line 3: policy 'p': field 'ports': …"
        let as_file = TopologyError::Invalid {
            file: PathBuf::from(&self.key),
            problems: self.problems.clone(),
        };
        write!(f, "{as_file}")
    }
}

impl std::error::Error for PolicyRefused {}

/// The policy `value` holds, checked; `key` names it in messages. Its labels are empty: they are
/// the records'. A value over [`REGISTRY_POLICY_MAX`] is refused unread.
pub fn check(key: &str, value: &[u8]) -> Result<MeshPolicy, PolicyRefused> {
    if value.len() > REGISTRY_POLICY_MAX {
        return Err(PolicyRefused::one(
            key,
            format!(
                "a value of {} bytes is over the limit of {REGISTRY_POLICY_MAX}; not parsed",
                value.len()
            ),
        ));
    }
    let text = std::str::from_utf8(value)
        .map_err(|e| PolicyRefused::one(key, format!("not UTF-8 text ({e})")))?;
    Topology::parse_policy(text, Path::new(key)).map_err(|e| PolicyRefused::of(key, e))
}

/// The policy a snapshot holds, with `labels` (the planned nodes', from their records). No
/// policy key is a permissive mesh, as a file without policy is.
pub fn of_snapshot(
    layout: &Layout,
    snapshot: &Snapshot,
    labels: &BTreeMap<String, Labels>,
) -> Result<MeshPolicy, PolicyRefused> {
    let key = layout.policy();
    let mut policy = match snapshot.kvs.get(&key) {
        Some(kv) => check(&key, &kv.value)?,
        None => MeshPolicy::default(),
    };
    policy.labels = labels.clone();
    Ok(policy)
}

/// The top-level keys of a topology file that make its policy part (docs/policy.md).
pub const PART_KEYS: [&str; 4] = ["default-action", "policy-mode", "cidr-set", "policy"];

/// The policy part of a topology file's text, as the policy key stores it: those keys as the
/// file wrote them (comments inside them kept); `None` when the file has no policy part.
pub fn part_of(file: &str) -> Result<Option<String>, toml_edit::TomlError> {
    let doc: DocumentMut = file.parse()?;
    let mut part = DocumentMut::new();
    for key in PART_KEYS {
        if let Some(item) = doc.get(key) {
            part.insert(key, item.clone());
        }
    }
    Ok((!part.is_empty()).then(|| part.to_string()))
}

/// A topology file's text with the policy part `part` added: its plain values (`default-action`,
/// `policy-mode`) join the file's top level, its tables follow the file's (TOML puts every
/// top-level value before the first table).
pub fn with_part(file: &str, part: &str) -> Result<String, toml_edit::TomlError> {
    let mut doc: DocumentMut = file.parse()?;
    let mut part: DocumentMut = part.parse()?;
    let values: Vec<String> = part
        .iter()
        .filter(|(_, item)| item.is_value())
        .map(|(k, _)| k.to_string())
        .collect();
    for key in values {
        if let Some(item) = part.remove(&key) {
            doc.insert(&key, item);
        }
    }
    Ok(format!("{doc}\n{}", part.to_string().trim_start()))
}

/// The policy a daemon runs on a registry: the policy key's while it is valid; while it is
/// refused, the last valid one with the labels the records carry now (labels belong to the
/// nodes, whose changes still apply). The issue's rule: the last good policy stays in force.
#[derive(Debug, Default)]
pub struct InForce {
    last_good: Option<MeshPolicy>,
}

impl InForce {
    /// The policy to run for `a`. Refused with no earlier good policy (a start) is an error.
    pub fn update(&mut self, a: &Assembled) -> Result<MeshPolicy, PolicyRefused> {
        match (&a.policy, &self.last_good) {
            (Ok(policy), _) => {
                self.last_good = Some(policy.clone());
                Ok(policy.clone())
            }
            (Err(_), Some(good)) => Ok(MeshPolicy {
                labels: a.labels.clone(),
                ..good.clone()
            }),
            (Err(refused), None) => Err(refused.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::spec::DefaultAction;

    const KEY: &str = "/wiremesh/prod/policy";

    const GOOD: &str = r#"default-action = "deny"

[cidr-set.db]
cidrs = ["10.244.7.0/24"]

[[policy]]
name = "web-to-db"
order = 10
action = "allow"
from = { labels = { app = "web" } }
to = { cidr-sets = ["db"] }
protocol = "tcp"
ports = [5432]
"#;

    #[test]
    fn a_policy_value_is_checked_by_the_files_checker() {
        let p = check(KEY, GOOD.as_bytes()).unwrap();
        assert_eq!(p.default_action, DefaultAction::Deny);
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].name, "web-to-db");
        assert_eq!(p.rules[0].line, Some(7));
        assert!(p.labels.is_empty());
    }

    #[test]
    fn a_bad_policy_names_the_key_line_policy_and_field() {
        let bad = GOOD.replace("ports = [5432]", "ports = [\"5432-80\"]");
        let err = check(KEY, bad.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/wiremesh/prod/policy: 1 problem(s):\n  line 13: policy 'web-to-db': field 'ports': \
             \"5432-80\" is not a port range: 5432 > 80"
        );
    }

    #[test]
    fn a_whole_topology_in_the_policy_key_is_refused_naming_the_field() {
        let whole = format!("mode = \"full\"\n{GOOD}");
        let err = check(KEY, whole.as_bytes()).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(
                "/wiremesh/prod/policy: 1 problem(s):\n  line 1: field 'mode': unknown field `mode`"
            ),
            "{shown}"
        );
    }

    #[test]
    fn an_oversized_or_binary_value_is_refused_unread() {
        let big = vec![b'#'; REGISTRY_POLICY_MAX + 1];
        let err = check(KEY, &big).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
        let err = check(KEY, &[0xff, 0xfe]).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn a_files_policy_part_is_cut_out_and_put_back_with_the_same_meaning() {
        let file = format!(
            "mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\npolicy-mode = \"audit\"\n{GOOD}\n\
             [[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\n\
             public-key = \"{}\"\nlabels = {{ app = \"web\" }}\n",
            crate::core::registry::testing::key_text(1)
        );
        let whole = Topology::parse_with_policy(&file, Path::new("mesh.toml")).unwrap();
        let part = part_of(&file).unwrap().unwrap();
        assert!(
            !part.contains("[[node]]") && !part.contains("cluster-cidr"),
            "{part}"
        );
        let alone = check(KEY, part.as_bytes()).unwrap();
        assert_eq!(alone.rules.len(), 1);
        assert_eq!(
            (alone.default_action, alone.mode),
            (whole.policy.default_action, whole.policy.mode)
        );
        assert_eq!(alone.cidr_sets, whole.policy.cidr_sets);

        let nodes_only = crate::core::registry::transfer::export(&whole.topology);
        let back = with_part(&nodes_only, &part).unwrap();
        let back = Topology::parse_with_policy(&back, Path::new("back.toml")).unwrap();
        let strip = |p: &MeshPolicy| {
            let mut p = p.clone();
            p.labels.clear();
            p.rules.iter_mut().for_each(|r| r.line = None);
            p
        };
        assert_eq!(strip(&back.policy), strip(&whole.policy));
        assert_eq!(part_of(&nodes_only).unwrap(), None);
    }

    #[test]
    fn a_refused_policy_keeps_the_last_good_one_with_the_records_labels_now() {
        use crate::core::registry::assemble::assemble;
        use crate::core::registry::testing::{settings_json, Builder};
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .record("a", 1, r#","labels":{"app":"web"}"#)
            .claim("a", "10.244.1.0/24");
        let key = b.layout.policy();
        b.put(&key, GOOD);
        let run = |b: &Builder| assemble(&b.layout, &b.snapshot(), Path::new("etcd")).unwrap();
        let mut in_force = InForce::default();
        let good = in_force.update(&run(&b)).unwrap();
        assert_eq!(good.rules.len(), 1);
        assert_eq!(good.labels["a"]["app"], "web");

        b.put(&key, "default-action = \"maybe\"\n");
        b.record("a", 1, r#","labels":{"app":"db"}"#);
        let a = run(&b);
        let refused = a.policy.clone().unwrap_err();
        assert_eq!(
            refused.to_string(),
            "/wiremesh/prod/policy: 1 problem(s):\n  line 1: field 'default-action': 'maybe' is \
             not an action here (allow or deny)"
        );
        let kept = in_force.update(&a).unwrap();
        assert_eq!(
            (&kept.rules, kept.default_action),
            (&good.rules, good.default_action)
        );
        assert_eq!(
            kept.labels["a"]["app"], "db",
            "the records' labels still apply"
        );
        assert_eq!(InForce::default().update(&a), Err(refused), "at a start");
    }

    #[test]
    fn no_policy_key_is_a_permissive_mesh_with_the_records_labels() {
        let layout = Layout::new("prod").unwrap();
        let labels: BTreeMap<String, Labels> =
            [("a".to_string(), [("app".into(), "web".into())].into())].into();
        let p = of_snapshot(&layout, &Snapshot::default(), &labels).unwrap();
        assert!(p.is_permissive());
        assert_eq!(p.labels, labels);
    }
}
