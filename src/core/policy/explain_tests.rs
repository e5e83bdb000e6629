//! `wiremesh policy explain`'s answers: endpoints by address or node name, ports and
//! protocols, the deciding rule or the default, log rules, audit mode.

use super::compile::compile;
use super::explain::{explain, packet, parse_target, ExplainError, Target};
use super::flow::{TCP, UDP};
use super::testing::document;

const POLICY: &str = r#"
[[policy]]
name = "log-db"
order = 1
action = "log"
to = { name = "use-db" }

[[policy]]
name = "fra-no-db"
order = 100
action = "deny"
reject = true
from = { region = "europe-west3" }
to = { name = "use-db" }
protocol = "tcp"
ports = [5432]
"#;

fn answer(top: &str, src: &str, dst: &str) -> String {
    let doc = document(top, POLICY);
    let p = compile(&doc, None).unwrap();
    let pkt = packet(src, &parse_target(dst).unwrap(), &doc.topology).unwrap();
    explain(&p, pkt).to_string()
}

#[test]
fn targets_are_read_with_and_without_port_and_protocol() {
    let t = |host: &str, port, proto| Target {
        host: host.into(),
        port,
        proto,
    };
    assert_eq!(parse_target("use-db").unwrap(), t("use-db", None, None));
    assert_eq!(
        parse_target("use-db:5432").unwrap(),
        t("use-db", Some(5432), Some(TCP))
    );
    assert_eq!(
        parse_target("10.244.7.1:53/udp").unwrap(),
        t("10.244.7.1", Some(53), Some(UDP))
    );
    assert_eq!(parse_target("fd00::1").unwrap(), t("fd00::1", None, None));
    assert_eq!(
        parse_target("[fd00::1]:443/tcp").unwrap(),
        t("fd00::1", Some(443), Some(TCP))
    );
    for bad in [
        "use-db:0",
        "use-db:http",
        "use-db:53/sctp",
        "[fd00::1",
        ":80",
    ] {
        assert!(
            matches!(parse_target(bad), Err(ExplainError::Syntax(..))),
            "{bad}"
        );
    }
}

#[test]
fn the_refused_database_port_names_its_rule_and_the_log_rule_before_it() {
    let out = answer("", "fra-web", "use-db:5432/tcp");
    assert_eq!(
        out,
        "packet:   10.244.1.1 (node fra-web) → 10.244.7.1:5432/tcp (node use-db)\n\
         decision: deny, answered with ICMP administratively prohibited\n\
         rule:     'fra-no-db' (order 100, line 52)\n\
         logged:   'log-db' (order 1, line 46)\n"
    );
}

#[test]
fn a_packet_no_rule_decides_gets_the_default_and_its_replies_are_tracked() {
    let out = answer("default-action = \"allow\"", "10.244.1.7", "10.244.7.9:443");
    assert!(out.contains("decision: allow\n"), "{out}");
    assert!(
        out.contains("rule:     none matched: default-action = \"allow\""),
        "{out}"
    );
    assert!(out.contains("replies:  pass"), "{out}");
    let ping = answer("default-action = \"deny\"", "sg-web", "fra-web");
    assert!(ping.contains("(ICMP echo request)"), "{ping}");
    assert!(ping.contains("decision: deny (dropped)"), "{ping}");
}

#[test]
fn audit_mode_says_what_would_be_denied() {
    let out = answer("policy-mode = \"audit\"", "fra-batch", "use-db:5432");
    assert!(out.contains("mode:     audit: would be denied"), "{out}");
}

#[test]
fn unknown_nodes_and_mixed_families_are_errors() {
    let doc = document("", POLICY);
    let t = parse_target("use-db:5432").unwrap();
    assert!(matches!(
        packet("nope", &t, &doc.topology),
        Err(ExplainError::Unknown(_))
    ));
    let v6 = parse_target("[fd00::1]:5432").unwrap();
    assert!(matches!(
        packet("10.244.1.1", &v6, &doc.topology),
        Err(ExplainError::Families(..))
    ));
    assert!(matches!(
        packet("fra-web", &v6, &doc.topology),
        Err(ExplainError::NoV6(_))
    ));
}
