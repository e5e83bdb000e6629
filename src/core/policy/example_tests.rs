//! The decisions of docs/policy.md's examples, packet by packet, on a three-region mesh
//! (`testing.rs`): the Frankfurt → US-east example, label selectors by cloud and region, a
//! CIDR set, a port range, default deny with an explicit allow, ICMP errors of allowed flows,
//! fragments, log rules, audit mode.

use super::decide::{Decision, Reason, Verdict};
use super::flow::tests::v4;
use super::flow::{ACK, ICMP, SYN, UDP};
use super::testing::{host, ping, policy, tcp_packet, udp_packet, Node};
use std::sync::atomic::Ordering;

fn passes(reason: Reason) -> (Verdict, Reason) {
    (Verdict::Pass, reason)
}

fn dropped(reason: Reason) -> (Verdict, Reason) {
    (Verdict::Drop, reason)
}

fn seen(d: Decision) -> (Verdict, Reason) {
    (d.verdict, d.reason)
}

const FRANKFURT_TO_US_EAST: &str = r#"
[cidr-set.us-db]
cidrs = ["10.244.7.0/24"]

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
name = "fra-to-us-east-https"
order = 200
action = "allow"
from = { region = "europe-west3" }
to = { region = "us-east-1" }
protocol = "tcp"
ports = [443]
"#;

#[test]
fn frankfurt_may_not_reach_the_us_east_database_but_may_reach_https_and_get_replies() {
    let p = policy("default-action = \"deny\"", FRANKFURT_TO_US_EAST);
    let (fra, db, api) = (host(1, 10), host(7, 10), host(8, 10));
    let mut node = Node::new(1024);
    let table: &[(&str, Vec<u8>, (Verdict, Reason))] = &[
        (
            "fra → db:5432 is refused with ICMP",
            tcp_packet(fra, 40000, db, 5432, SYN),
            (Verdict::Reject, Reason::Rule(0)),
        ),
        (
            "fra → db:443 is allowed",
            tcp_packet(fra, 40001, db, 443, SYN),
            passes(Reason::Rule(1)),
        ),
        (
            "db:443 → fra answers through the tracked flow",
            tcp_packet(db, 443, fra, 40001, SYN | ACK),
            passes(Reason::Tracked),
        ),
        (
            "fra → db:443 goes on",
            tcp_packet(fra, 40001, db, 443, ACK),
            passes(Reason::Tracked),
        ),
        (
            "the refused flow left nothing to answer through",
            tcp_packet(db, 5432, fra, 40000, SYN | ACK),
            dropped(Reason::Default),
        ),
        (
            "fra → api:443 is allowed",
            tcp_packet(fra, 40002, api, 443, SYN),
            passes(Reason::Rule(1)),
        ),
        (
            "the database may not open a flow to Frankfurt",
            tcp_packet(db, 50000, fra, 443, SYN),
            dropped(Reason::Default),
        ),
        (
            "fra → db:22 gets the default",
            tcp_packet(fra, 40003, db, 22, SYN),
            dropped(Reason::Default),
        ),
        (
            "Singapore is not Frankfurt",
            tcp_packet(host(9, 1), 40004, db, 443, SYN),
            dropped(Reason::Default),
        ),
    ];
    for (what, pkt, want) in table {
        assert_eq!(seen(node.check(&p, pkt)), *want, "{what}");
    }
    assert_eq!(p.counters.rules[0].get(), 1);
    assert_eq!(p.counters.rules[1].get(), 2);
}

#[test]
fn sender_and_receiver_each_judge_and_each_let_the_reply_through() {
    let p = policy("default-action = \"deny\"", FRANKFURT_TO_US_EAST);
    let (fra, db) = (host(1, 10), host(7, 10));
    let (mut sender, mut receiver) = (Node::new(256), Node::new(256));
    let syn = tcp_packet(fra, 40000, db, 443, SYN);
    let reply = tcp_packet(db, 443, fra, 40000, SYN | ACK);
    assert_eq!(
        seen(sender.check(&p, &syn)),
        passes(Reason::Rule(1)),
        "sender, early"
    );
    assert_eq!(
        seen(receiver.check(&p, &syn)),
        passes(Reason::Rule(1)),
        "receiver"
    );
    assert_eq!(
        seen(receiver.check(&p, &reply)),
        passes(Reason::Tracked),
        "answer out"
    );
    assert_eq!(
        seen(sender.check(&p, &reply)),
        passes(Reason::Tracked),
        "answer in"
    );
    let refused = tcp_packet(fra, 40001, db, 5432, SYN);
    assert_eq!(sender.check(&p, &refused).verdict, Verdict::Reject);
    assert_eq!(receiver.check(&p, &refused).verdict, Verdict::Reject);
}

#[test]
fn label_selectors_pick_nodes_by_cloud_and_by_region_and_labels() {
    let p = policy(
        "",
        r#"
[[policy]]
name = "aws-not-to-azure"
order = 10
action = "deny"
from = { cloud = "aws" }
to = { cloud = "azure" }

[[policy]]
name = "frankfurt-batch-not-to-us"
order = 20
action = "deny"
from = { region = "europe-west3", labels = { app = "batch" } }
to = { region = "us-east-1" }
"#,
    );
    let mut n = Node::new(256);
    let cases = [
        (host(7, 1), host(9, 1), dropped(Reason::Rule(0))),
        (host(8, 1), host(9, 1), dropped(Reason::Rule(0))),
        (host(9, 1), host(7, 1), passes(Reason::Default)),
        (host(7, 1), host(1, 1), passes(Reason::Default)),
        (host(2, 1), host(8, 1), dropped(Reason::Rule(1))),
        (host(2, 1), host(7, 1), dropped(Reason::Rule(1))),
        (host(1, 1), host(8, 1), passes(Reason::Default)),
        (host(2, 1), host(9, 1), passes(Reason::Default)),
    ];
    for (i, (src, dst, want)) in cases.into_iter().enumerate() {
        let d = n.check(&p, &udp_packet(src, 1000 + i as u16, dst, 53));
        assert_eq!(seen(d), want, "{src:?} → {dst:?}");
    }
}

#[test]
fn a_cidr_set_selects_exactly_its_addresses() {
    let p = policy(
        "",
        r#"
[cidr-set.partners]
cidrs = ["10.244.9.0/24", "10.244.2.128/25"]

[[policy]]
name = "no-partners"
order = 1
action = "deny"
to = { cidr-sets = ["partners"] }
"#,
    );
    let mut n = Node::new(256);
    let from = host(1, 1);
    for (dst, want) in [
        (host(2, 200), dropped(Reason::Rule(0))),
        (host(2, 128), dropped(Reason::Rule(0))),
        (host(2, 127), passes(Reason::Default)),
        (host(9, 9), dropped(Reason::Rule(0))),
        (host(7, 9), passes(Reason::Default)),
    ] {
        assert_eq!(seen(n.check(&p, &ping(from, dst, 1))), want, "{dst:?}");
    }
}

#[test]
fn a_port_range_holds_its_ends_and_nothing_beyond() {
    let p = policy(
        "default-action = \"deny\"",
        r#"
[[policy]]
name = "api-ports"
order = 1
action = "allow"
to = { name = "use-api" }
protocol = "tcp"
ports = [443, "8000-8100"]
"#,
    );
    let mut n = Node::new(256);
    let api = host(8, 1);
    for (port, allowed) in [
        (443, true),
        (444, false),
        (7999, false),
        (8000, true),
        (8050, true),
        (8100, true),
        (8101, false),
    ] {
        let d = n.check(&p, &tcp_packet(host(1, 1), port, api, port, SYN));
        assert_eq!(d.verdict == Verdict::Pass, allowed, "tcp {port}");
    }
    let d = n.check(&p, &udp_packet(host(1, 1), 1, api, 8050));
    assert_eq!(seen(d), dropped(Reason::Default), "udp is not tcp");
}

#[test]
fn default_deny_lets_through_only_what_a_rule_allows_and_the_replies() {
    let p = policy(
        "default-action = \"deny\"",
        r#"
[[policy]]
name = "web-to-api"
order = 1
action = "allow"
from = { labels = { app = "web" } }
to = { labels = { app = "api" } }
protocol = "tcp"
ports = [443]

[[policy]]
name = "ping-within-frankfurt"
order = 2
action = "allow"
from = { region = "europe-west3" }
to = { region = "europe-west3" }
protocol = "icmp"
"#,
    );
    let mut n = Node::new(256);
    let (web, sg, api, batch) = (host(1, 1), host(9, 1), host(8, 1), host(2, 1));
    assert_eq!(
        seen(n.check(&p, &tcp_packet(web, 1, api, 443, SYN))),
        passes(Reason::Rule(0))
    );
    assert_eq!(
        seen(n.check(&p, &tcp_packet(sg, 1, api, 443, SYN))),
        passes(Reason::Rule(0))
    );
    assert_eq!(
        seen(n.check(&p, &tcp_packet(api, 443, sg, 1, SYN | ACK))),
        passes(Reason::Tracked)
    );
    assert_eq!(
        seen(n.check(&p, &tcp_packet(batch, 1, api, 443, SYN))),
        dropped(Reason::Default)
    );
    assert_eq!(
        seen(n.check(&p, &udp_packet(web, 1, api, 443))),
        dropped(Reason::Default)
    );
    assert_eq!(
        seen(n.check(&p, &ping(web, batch, 7))),
        passes(Reason::Rule(1))
    );
    let reply = v4(batch, web, ICMP, &[0, 0, 0, 0, 0, 7, 0, 1]);
    assert_eq!(
        seen(n.check(&p, &reply)),
        passes(Reason::Tracked),
        "echo reply"
    );
    assert_eq!(
        seen(n.check(&p, &ping(web, api, 8))),
        dropped(Reason::Default)
    );
    let stray = v4(api, web, ICMP, &[0, 0, 0, 0, 0, 9, 0, 1]);
    assert_eq!(
        seen(n.check(&p, &stray)),
        dropped(Reason::Default),
        "unasked echo reply"
    );
    let c = &p.counters.policy;
    assert_eq!(c.default_denied.load(Ordering::Relaxed), 4);
}

/// An ICMP error from `from` to `to` quoting `quoted` (type, code).
fn icmp_error(from: [u8; 4], to: [u8; 4], kind: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut icmp = vec![kind, code, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&quoted[..28]);
    v4(from, to, ICMP, &icmp)
}

#[test]
fn fragmentation_needed_for_an_allowed_flow_passes_and_for_any_other_does_not() {
    let p = policy("default-action = \"deny\"", FRANKFURT_TO_US_EAST);
    let (fra, api) = (host(1, 10), host(8, 10));
    let mut n = Node::new(256);
    let big = tcp_packet(fra, 40000, api, 443, ACK);
    assert_eq!(
        n.check(&p, &tcp_packet(fra, 40000, api, 443, SYN)).verdict,
        Verdict::Pass
    );
    // the path (or a hub on it) answers from the destination's address, as too_big.rs does
    let needed = icmp_error(api, fra, 3, 4, &big);
    assert_eq!(seen(n.check(&p, &needed)), passes(Reason::Related));
    let unreachable = icmp_error(api, fra, 3, 1, &big);
    assert_eq!(seen(n.check(&p, &unreachable)), passes(Reason::Related));
    let untracked = tcp_packet(fra, 40001, api, 443, ACK);
    let err = icmp_error(api, fra, 3, 4, &untracked);
    assert_eq!(
        seen(n.check(&p, &err)),
        dropped(Reason::Default),
        "no such flow"
    );
    let elsewhere = icmp_error(api, host(9, 1), 3, 4, &big);
    assert_eq!(
        seen(n.check(&p, &elsewhere)),
        dropped(Reason::Default),
        "not to its sender"
    );
    assert_eq!(p.counters.policy.related.load(Ordering::Relaxed), 2);
}

#[test]
fn later_fragments_follow_their_first_and_strangers_are_judged_without_a_port() {
    let p = policy(
        "default-action = \"deny\"",
        r#"
[[policy]]
name = "dns"
order = 1
action = "allow"
to = { name = "use-api" }
protocol = "udp"
ports = [53]
"#,
    );
    let mut n = Node::new(256);
    let (fra, api) = (host(1, 1), host(8, 1));
    let mut first = udp_packet(fra, 5000, api, 53);
    first[6] = 0x20; // more fragments, offset 0, id 0x1234
    assert_eq!(seen(n.check(&p, &first)), passes(Reason::Rule(0)));
    let mut later = v4(fra, api, UDP, &[0xab; 32]);
    later[6] = 0x00;
    later[7] = 0x02;
    assert_eq!(seen(n.check(&p, &later)), passes(Reason::Fragment));
    later[4] = 0x99; // another datagram
    assert_eq!(
        seen(n.check(&p, &later)),
        dropped(Reason::Default),
        "ports rules need a port"
    );
}

#[test]
fn a_log_rule_counts_and_lets_the_next_rule_decide() {
    let p = policy(
        "",
        r#"
[[policy]]
name = "log-us-east"
order = 1
action = "log"
to = { region = "us-east-1" }

[[policy]]
name = "no-db"
order = 2
action = "deny"
to = { name = "use-db" }
"#,
    );
    let mut n = Node::new(64);
    let d = n.check(&p, &ping(host(1, 1), host(7, 1), 1));
    assert_eq!((seen(d), d.logged), (dropped(Reason::Rule(1)), Some(0)));
    let d = n.check(&p, &ping(host(1, 1), host(8, 1), 1));
    assert_eq!((seen(d), d.logged), (passes(Reason::Default), Some(0)));
    let d = n.check(&p, &ping(host(1, 1), host(9, 1), 1));
    assert_eq!((seen(d), d.logged), (passes(Reason::Default), None));
    assert_eq!(p.counters.rules[0].get(), 2);
}

#[test]
fn audit_mode_counts_what_it_would_deny_and_drops_nothing() {
    let p = policy(
        "policy-mode = \"audit\"\ndefault-action = \"deny\"",
        FRANKFURT_TO_US_EAST,
    );
    let mut n = Node::new(64);
    let (fra, db) = (host(1, 1), host(7, 1));
    let d = n.check(&p, &tcp_packet(fra, 1, db, 5432, SYN));
    assert_eq!(
        (d.verdict, d.reason, d.would_deny),
        (Verdict::Pass, Reason::Rule(0), true)
    );
    let d = n.check(&p, &tcp_packet(db, 5432, fra, 1, SYN | ACK));
    assert_eq!(
        (seen(d), d.would_deny),
        (passes(Reason::Tracked), false),
        "counted once"
    );
    let d = n.check(&p, &tcp_packet(fra, 2, db, 443, SYN));
    assert_eq!((seen(d), d.would_deny), (passes(Reason::Rule(1)), false));
    assert!(n.check(&p, &[0x45, 0]).would_deny);
    assert_eq!(p.counters.policy.would_deny.load(Ordering::Relaxed), 2);
}

#[test]
fn unreadable_packets_are_denied_unless_the_policy_allows_everything() {
    let strict = policy("default-action = \"deny\"", "");
    let open = policy("", "");
    assert!(open.is_permissive() && !strict.is_permissive());
    let mut n = Node::new(64);
    assert_eq!(
        seen(n.check(&strict, &[0x45; 10])),
        dropped(Reason::Unreadable)
    );
    assert_eq!(
        seen(n.check(&open, &[0x45; 10])),
        passes(Reason::Permissive)
    );
    let d = n.check(&open, &tcp_packet(host(1, 1), 1, host(7, 1), 5432, SYN));
    assert_eq!(seen(d), passes(Reason::Permissive));
    assert_eq!(n.ct.live(n.now), 0, "a permissive policy tracks nothing");
}
