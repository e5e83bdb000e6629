//! Every way a policy can be written wrong, and the exact error it gets: the file, the line,
//! the policy (or node) and the field, and what is wrong in words a person can act on.

use crate::core::key::PrivateKey;
use crate::core::topology::{Topology, TopologyError};
use std::path::Path;

/// Lines 1-11 of every case; the case goes on at line 12 (most with `order`, then `action`).
const HEAD: &str = "mode = \"full\"
cluster-cidr = \"10.244.0.0/16\"
[[node]]
name = \"a\"
cloud = \"c\"
region = \"r\"
public-key = \"{A}\"
[cidr-set.db]
cidrs = [\"10.244.7.0/24\"]
[[policy]]
name = \"p\"
";

/// A case's text (after [`HEAD`] unless it starts with `!`) and its one problem, as shown.
const CASES: &[(&str, &str, &str)] = &[
    (
        "unknown-action",
        "order = 1\naction = \"drop\"\n",
        "line 13: policy 'p': field 'action': 'drop' is not an action (allow, deny or log)",
    ),
    (
        "reject-on-an-allow",
        "order = 1\naction = \"allow\"\nreject = true\n",
        "line 14: policy 'p': field 'reject': only a deny rejects; this rule's action is 'allow'",
    ),
    (
        "ports-without-protocol",
        "order = 1\naction = \"deny\"\nports = [5432]\n",
        "line 14: policy 'p': field 'ports': ports need protocol = \"tcp\" or \"udp\"",
    ),
    (
        "ports-with-icmp",
        "order = 1\naction = \"deny\"\nprotocol = \"icmp\"\nports = [1]\n",
        "line 15: policy 'p': field 'ports': ports need protocol = \"tcp\" or \"udp\", not \"icmp\"",
    ),
    (
        "reversed-port-range",
        "order = 1\naction = \"deny\"\nprotocol = \"tcp\"\nports = [\"5432-80\"]\n",
        "line 15: policy 'p': field 'ports': \"5432-80\" is not a port range: 5432 > 80",
    ),
    (
        "port-zero",
        "order = 1\naction = \"deny\"\nprotocol = \"tcp\"\nports = [443, 0]\n",
        "line 15: policy 'p': field 'ports': 0 is not a port (1-65535)",
    ),
    (
        "port-too-big",
        "order = 1\naction = \"deny\"\nprotocol = \"udp\"\nports = [\"8000-70000\"]\n",
        "line 15: policy 'p': field 'ports': 70000 is not a port (1-65535)",
    ),
    (
        "port-of-the-wrong-type",
        "order = 1\naction = \"deny\"\nprotocol = \"tcp\"\nports = [true]\n",
        "line 15: policy 'p': field 'ports': boolean is not a port: give a number (5432) or a \
         range (\"8000-8100\")",
    ),
    (
        "port-by-name",
        "order = 1\naction = \"deny\"\nprotocol = \"tcp\"\nports = [\"https\"]\n",
        "line 15: policy 'p': field 'ports': 'https' is not a port (1-65535)",
    ),
    (
        "empty-ports",
        "order = 1\naction = \"deny\"\nprotocol = \"tcp\"\nports = []\n",
        "line 15: policy 'p': field 'ports': an empty list; leave `ports` out to mean every port",
    ),
    (
        "unknown-protocol",
        "order = 1\naction = \"deny\"\nprotocol = \"sctp\"\n",
        "line 14: policy 'p': field 'protocol': 'sctp' is not a protocol (tcp, udp or icmp)",
    ),
    (
        "unknown-cidr-set",
        "order = 1\naction = \"deny\"\nto = { cidr-sets = [\"dbs\"] }\n",
        "line 14: policy 'p': field 'to.cidr-sets': no [cidr-set.dbs]; sets: db",
    ),
    (
        "empty-selector",
        "order = 1\naction = \"deny\"\nfrom = {}\n",
        "line 14: policy 'p': field 'from': an empty selector; leave `from` out to mean any \
         address",
    ),
    (
        "built-in-attribute-as-a-label",
        "order = 1\naction = \"deny\"\nto = { labels = { region = \"us-east-1\" } }\n",
        "line 14: policy 'p': field 'to.labels.region': 'region' is a built-in attribute, not a \
         label: write `region = \"…\"` in the selector itself",
    ),
    (
        "bad-label-key-in-a-selector",
        "order = 1\naction = \"deny\"\nfrom = { labels = { \"-app\" = \"web\" } }\n",
        "line 14: policy 'p': field 'from.labels.-app': '-app' is not a label key: 1-63 \
         letters, digits, '-', '_' or '.', starting and ending with a letter or digit, after \
         an optional 'dns.prefix/'",
    ),
    (
        "empty-labels-in-a-selector",
        "order = 1\naction = \"deny\"\nfrom = { labels = {} }\n",
        "line 14: policy 'p': field 'from.labels': an empty table; leave `labels` out",
    ),
    (
        "cidr-with-host-bits",
        "order = 1\naction = \"deny\"\nto = { cidrs = [\"10.244.7.5/24\"] }\n",
        "line 14: policy 'p': field 'to.cidrs': 10.244.7.5/24 has host bits set; did you mean \
         10.244.7.0/24?",
    ),
    (
        "not-a-cidr",
        "order = 1\naction = \"deny\"\nto = { cidrs = [\"db-net\"] }\n",
        "line 14: policy 'p': field 'to.cidrs': 'db-net' is not a CIDR like 10.244.7.0/24 or \
         fd10:244:0:7::/64",
    ),
    (
        "bad-region-in-a-selector",
        "order = 1\naction = \"deny\"\nfrom = { region = \"eu west\" }\n",
        "line 14: policy 'p': field 'from.region': 'eu west' must be 1-63 letters, digits, \
         '-', '_' or '.'",
    ),
    (
        "negative-order",
        "order = -5\naction = \"deny\"\n",
        "line 12: policy 'p': field 'order': -5 is outside 0-4294967295",
    ),
    (
        "duplicate-order",
        "order = 7\naction = \"deny\"\n[[policy]]\nname = \"q\"\norder = 7\naction = \"allow\"\n",
        "line 16: policy 'q': field 'order': order 7 is also policy 'p''s (line 12): orders are \
         unique, so which rule decides never depends on the file's order",
    ),
    (
        "duplicate-name",
        "order = 1\naction = \"deny\"\n[[policy]]\nname = \"p\"\norder = 2\naction = \"allow\"\n",
        "line 15: policy 'p': field 'name': duplicate policy name (first at line 11)",
    ),
    (
        "bad-policy-name",
        "order = 1\naction = \"deny\"\n[[policy]]\nname = \"no db\"\norder = 2\naction = \"allow\"\n",
        "line 15: policy 'no db': field 'name': must be 1-63 letters, digits, '-', '_' or '.'",
    ),
    (
        "misspelt-policy-field",
        "order = 1\naction = \"deny\"\nport = [5432]\n",
        "line 14: policy 'p': field 'port': unknown field `port`, expected one of `name`, \
         `order`, `action`, `reject`, `from`, `to`, `protocol`, `ports`",
    ),
    (
        "misspelt-selector-field",
        "order = 1\naction = \"deny\"\nto = { nodes = [\"a\"] }\n",
        "line 14: policy 'p': field 'nodes': unknown field `nodes`, expected one of `name`, \
         `cloud`, `region`, `labels`, `cidrs`, `cidr-sets`",
    ),
    (
        "missing-action",
        "order = 1\n",
        "line 10: policy 'p': field 'action': missing field `action`",
    ),
    (
        "unknown-default-action",
        "!mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\ndefault-action = \"reject\"\n",
        "line 3: field 'default-action': 'reject' is not an action here (allow or deny)",
    ),
    (
        "unknown-policy-mode",
        "!mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\npolicy-mode = \"dry-run\"\n",
        "line 3: field 'policy-mode': 'dry-run' is not a policy mode (enforce or audit)",
    ),
    (
        "bad-node-label-value",
        "!mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n",
        "line 8: node 'a': field 'labels.app': 'no way' is not a label value: at most 63 \
         letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    ),
    (
        "empty-cidr-set",
        "!mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n[cidr-set.e]\ncidrs = []\n",
        "line 3: field 'cidr-set.e': a set needs at least one CIDR",
    ),
];

/// The node every case has, at lines 3-7 (or, for `!` cases, after their own text).
fn node(labels: &str) -> String {
    let key = PrivateKey::from_bytes([9; 32]).public_key();
    format!(
        "[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{key}\"\n{labels}"
    )
}

fn text_of(name: &str, case: &str) -> String {
    match case.strip_prefix('!') {
        // the case's own top level, then the node (with a bad label for that case)
        Some(top) => {
            let labels = if name == "bad-node-label-value" {
                "labels = { app = \"no way\" }\n"
            } else {
                ""
            };
            format!("{top}{}", node(labels))
        }
        None => {
            let key = PrivateKey::from_bytes([9; 32]).public_key().to_string();
            format!("{}{case}", HEAD.replace("{A}", &key))
        }
    }
}

#[test]
fn every_bad_policy_is_refused_with_its_file_line_policy_field_and_reason() {
    assert!(CASES.len() >= 20);
    let mut failures = Vec::new();
    for (name, case, want) in CASES {
        let file = format!("{name}.toml");
        let text = text_of(name, case);
        let err = match Topology::parse_with_policy(&text, Path::new(&file)) {
            Ok(_) => {
                failures.push(format!("{name}: accepted:\n{text}"));
                continue;
            }
            Err(e) => e,
        };
        let shown: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
        if shown != [want.to_string()] {
            failures.push(format!("{name}:\n  want {want}\n  got  {shown:?}"));
        }
        if !err.to_string().starts_with(&format!("{file}: ")) {
            failures.push(format!("{name}: the file is not named first: {err}"));
        }
        // the plain loader refuses the file too: a bad policy is a bad topology
        if Topology::parse(&text, Path::new(&file)).is_ok() {
            failures.push(format!("{name}: Topology::parse accepted it"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let key = PrivateKey::from_bytes([9; 32]).public_key().to_string();
    let text = format!(
        "{}order = 1\naction = \"drop\"\nprotocol = \"sctp\"\nto = {{ cidrs = [\"x\"] }}\n",
        HEAD.replace("{A}", &key)
    );
    let err = Topology::parse_with_policy(&text, Path::new("many.toml")).unwrap_err();
    let fields: Vec<Option<String>> = err.problems().into_iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        [
            Some("action".into()),
            Some("to.cidrs".into()),
            Some("protocol".into())
        ]
    );
    assert!(matches!(err, TopologyError::Invalid { .. }));
}

#[test]
fn a_topology_without_policy_parses_to_the_permissive_default() {
    let doc = Topology::parse_with_policy(
        &text_of(
            "none",
            "!mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n",
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    assert!(doc.policy.is_permissive());
    assert!(doc.policy.labels.is_empty() && doc.policy.cidr_sets.is_empty());
}
