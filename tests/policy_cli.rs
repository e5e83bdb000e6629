//! `wiremesh policy explain` and `wiremesh policy check` end to end on topology files (no root
//! needed): decisions and the rules behind them, lints and exit statuses, and a bad policy's
//! error naming file, line, policy and field.

mod common;

use common::{text, wiremesh};
use std::path::{Path, PathBuf};

/// Frankfurt (`fra-web`, `fra-batch`), US-east (`use-db`, `use-api`), Singapore (`sg-web`):
/// `tests/topologies/policy-five-nodes.toml` (shared with the library's policy tests), with `top`
/// before its nodes and `policies` after them.
fn mesh(top: &str, policies: &str) -> String {
    let file = std::fs::read_to_string(common::topology("policy-five-nodes.toml")).unwrap();
    let (head, nodes) = file.split_once("\n[[node]]").expect("the mesh has nodes");
    format!("{head}{top}\n[[node]]{nodes}\n{policies}")
}

const FRANKFURT_TO_US_EAST: &str = r#"
[cidr-set.us-db]
cidrs = ["10.244.7.0/24"]

[[policy]]
name = "dns"
order = 10
action = "allow"
protocol = "udp"
ports = [53]

[[policy]]
name = "fra-no-us-db"
order = 100
action = "deny"
reject = true
from = { region = "europe-west3" }
to = { cidr-sets = ["us-db"] }
protocol = "tcp"
ports = ["5432"]

[[policy]]
name = "fra-to-us-east"
order = 200
action = "allow"
from = { region = "europe-west3" }
to = { region = "us-east-1" }
protocol = "tcp"
ports = [443, "8000-8100"]
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn explain(file: &Path, src: &str, dst: &str) -> String {
    let out = wiremesh(&["policy", "explain", "-t", file.to_str().unwrap(), src, dst]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn explain_names_the_rule_that_refuses_the_database_and_the_one_that_allows_https() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "mesh.toml",
        &mesh("default-action = \"deny\"", FRANKFURT_TO_US_EAST),
    );
    let db = explain(&file, "fra-web", "use-db:5432/tcp");
    assert!(
        db.contains("10.244.1.1 (node fra-web) → 10.244.7.1:5432/tcp (node use-db)"),
        "{db}"
    );
    assert!(
        db.contains("decision: deny, answered with ICMP administratively prohibited"),
        "{db}"
    );
    assert!(db.contains("rule:     'fra-no-us-db' (order 100"), "{db}");
    let https = explain(&file, "10.244.2.9", "use-db:443");
    assert!(https.contains("decision: allow"), "{https}");
    assert!(
        https.contains("rule:     'fra-to-us-east' (order 200"),
        "{https}"
    );
    assert!(https.contains("replies:  pass"), "{https}");
    let range = explain(&file, "fra-web", "10.244.8.20:8100");
    assert!(range.contains("'fra-to-us-east'"), "{range}");
    let other = explain(&file, "sg-web", "use-api:443/tcp");
    assert!(
        other.contains("none matched: default-action = \"deny\""),
        "{other}"
    );
    let dns = explain(&file, "sg-web", "use-api:53/udp");
    assert!(dns.contains("rule:     'dns'"), "{dns}");
}

#[test]
fn explain_on_a_topology_without_policy_allows_everything() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "plain.toml", &mesh("", ""));
    let out = explain(&file, "fra-web", "use-db:5432");
    assert!(out.contains("decision: allow"), "{out}");
    assert!(out.contains("the topology has no policy"), "{out}");
}

#[test]
fn explain_refuses_an_unknown_node() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "mesh.toml", &mesh("", FRANKFURT_TO_US_EAST));
    let out = wiremesh(&[
        "policy",
        "explain",
        "-t",
        file.to_str().unwrap(),
        "nowhere",
        "use-db",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'nowhere' is neither an address nor a node"),
        "{err}"
    );
}

fn check(file: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["policy", "check", "-t", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    wiremesh(&args)
}

#[test]
fn check_passes_a_clean_policy_and_fails_a_shadowed_rule() {
    let dir = tempfile::tempdir().unwrap();
    let clean = write(dir.path(), "clean.toml", &mesh("", FRANKFURT_TO_US_EAST));
    let out = check(&clean, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("3 rule(s), default-action = \"allow\": 0 error(s), 0 warning(s)"),
        "{stdout}"
    );

    // after the https allow, and narrowed to a port it allows: it can never decide
    let shadowed = FRANKFURT_TO_US_EAST
        .replace("order = 100", "order = 300")
        .replace("ports = [\"5432\"]", "ports = [\"443\"]");
    let file = write(dir.path(), "shadowed.toml", &mesh("", &shadowed));
    let out = check(&file, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("policy 'fra-no-us-db': shadowed: never decides: policy 'fra-to-us-east'"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("shadowed.toml: policy check failed: 1 error(s)"),
        "{stderr}"
    );
}

#[test]
fn a_deny_that_cuts_dns_is_a_warning_that_only_strict_fails_on() {
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"
[[policy]]
name = "no-us"
order = 1
action = "deny"
from = { region = "europe-west3" }
to = { region = "us-east-1" }
"#;
    let file = write(dir.path(), "dns.toml", &mesh("", policy));
    let out = check(&file, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("warning: line"), "{stdout}");
    assert!(
        stdout.contains("policy 'no-us': denies DNS (udp/tcp 53)"),
        "{stdout}"
    );
    assert!(stdout.contains("note: "), "{stdout}");
    assert!(!check(&file, &["--strict"]).status.success());
}

#[test]
fn check_reports_a_bad_policy_with_file_line_policy_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = FRANKFURT_TO_US_EAST.replace("ports = [\"5432\"]", "ports = [\"5432-80\"]");
    let file = write(dir.path(), "bad.toml", &mesh("", &bad));
    for args in [vec![], vec!["--strict"]] {
        let out = check(&file, &args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("bad.toml: 1 problem(s):\n  line 63: policy 'fra-no-us-db': field 'ports': \"5432-80\" is not a port range: 5432 > 80"),
            "{stderr}"
        );
    }
    let out = wiremesh(&[
        "policy",
        "explain",
        "-t",
        file.to_str().unwrap(),
        "fra-web",
        "use-db",
    ]);
    assert!(!out.status.success());
}
