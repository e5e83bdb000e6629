//! The lints of `wiremesh policy check` on the three-region mesh (`testing.rs`).

use super::compile::compile;
use super::lint::{lint, Lint, Severity};
use super::testing::document;

const CONTROL_PORT: u16 = 51_871;

fn lints(top: &str, policies: &str) -> Vec<Lint> {
    let doc = document(top, policies);
    let policy = compile(&doc, None).unwrap();
    lint(&doc, &policy, CONTROL_PORT)
}

fn of(lints: &[Lint], severity: Severity) -> Vec<String> {
    lints
        .iter()
        .filter(|l| l.severity == severity)
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn a_rule_an_earlier_rule_covers_whole_is_shadowed() {
    let l = lints(
        "",
        r#"
[[policy]]
name = "fra-to-us"
order = 1
action = "allow"
from = { region = "europe-west3" }
to = { region = "us-east-1" }

[[policy]]
name = "fra-no-db"
order = 2
action = "deny"
from = { name = "fra-web" }
to = { name = "use-db" }
protocol = "tcp"
ports = [5432]

[[policy]]
name = "all-to-db"
order = 3
action = "deny"
to = { name = "use-db" }
protocol = "tcp"
ports = ["5000-6000"]
"#,
    );
    let errors = of(&l, Severity::Error);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(
            "error: line 53: policy 'fra-no-db': shadowed: never decides: policy 'fra-to-us' \
             (order 1, line 46) comes first"
        ),
        "{}",
        errors[0]
    );
}

#[test]
fn rules_that_pick_no_node_or_only_addresses_outside_the_cluster_match_nothing() {
    let l = lints(
        "",
        r#"
[[policy]]
name = "to-mars"
order = 1
action = "deny"
to = { region = "mars-1" }

[[policy]]
name = "from-outside"
order = 2
action = "deny"
from = { cidrs = ["192.0.2.0/24"] }
"#,
    );
    let errors = of(&l, Severity::Error);
    assert_eq!(
        errors,
        [
            "error: line 46: policy 'to-mars': matches nothing: `to` picks no address (nodes \
             with region 'mars-1'); no packet can match",
            "error: line 52: policy 'from-outside': matches nothing: `from` (192.0.2.0/24) lies \
             outside the cluster CIDRs, and only addresses inside them cross the mesh",
        ]
    );
}

#[test]
fn a_deny_that_also_cuts_dns_is_a_warning_unless_dns_is_allowed_before_it() {
    let deny = r#"
[[policy]]
name = "no-us"
order = 10
action = "deny"
from = { region = "europe-west3" }
to = { region = "us-east-1" }
"#;
    let warnings = of(&lints("", deny), Severity::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("policy 'no-us': denies DNS (udp/tcp 53) from nodes with region 'europe-west3' to nodes with region 'us-east-1'"), "{}", warnings[0]);
    let allow_dns = r#"
[[policy]]
name = "dns"
order = 1
action = "allow"
protocol = "udp"
ports = [53]
"#;
    let l = lints("", &format!("{allow_dns}{deny}"));
    assert_eq!(of(&l, Severity::Warning), Vec::<String>::new());
}

#[test]
fn default_deny_without_a_dns_allow_warns_and_says_control_traffic_is_exempt() {
    let l = lints("default-action = \"deny\"", "");
    let warnings = of(&l, Severity::Warning);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("blocks DNS (udp/tcp 53) between nodes"));
    let notes = of(&l, Severity::Note);
    assert!(notes
        .iter()
        .any(|n| n.contains("control messages") && n.contains("51871")));
}

#[test]
fn a_deny_over_icmp_or_the_control_port_says_what_it_does_not_block() {
    let l = lints(
        "",
        r#"
[[policy]]
name = "no-ping"
order = 1
action = "deny"
protocol = "icmp"

[[policy]]
name = "no-control"
order = 2
action = "deny"
protocol = "udp"
ports = [51871]
"#,
    );
    let notes = of(&l, Severity::Note);
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert!(notes[0].contains("policy 'no-ping': denies ICMP (ping) but not path-MTU discovery"));
    assert!(notes[1].contains("policy 'no-control': covers udp 51871, wiremesh's control port"));
    assert!(of(&l, Severity::Error).is_empty());
}

#[test]
fn an_unused_set_and_audit_mode_are_reported_and_a_clean_policy_is_quiet() {
    let l = lints(
        "policy-mode = \"audit\"\n[cidr-set.spare]\ncidrs = [\"10.244.3.0/24\"]",
        "",
    );
    assert_eq!(
        of(&l, Severity::Warning),
        ["warning: [cidr-set.spare] is named by no policy"]
    );
    assert!(of(&l, Severity::Note)[0].contains("audit"));
    let clean = lints(
        "",
        r#"
[[policy]]
name = "no-db"
order = 1
action = "deny"
from = { region = "europe-west3" }
to = { name = "use-db" }
protocol = "tcp"
ports = [5432]
"#,
    );
    assert!(clean.is_empty(), "{clean:#?}");
}
