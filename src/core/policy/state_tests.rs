//! The connection table under floods (its bound holds, overflow fails closed and is counted)
//! and across reloads (flows still allowed go on, flows now denied stop, counters carry over).

use super::compile::compile;
use super::conntrack::WAYS;
use super::decide::{Reason, Verdict};
use super::flow::{ACK, SYN};
use super::testing::{document, host, policy, tcp_packet, Node};
use std::sync::atomic::Ordering;

const NO_DB: &str = r#"
[[policy]]
name = "no-db"
order = 1
action = "deny"
to = { name = "use-db" }
protocol = "tcp"
ports = [5432]
"#;

/// A source address and port for flow `i` of a flood, spread over Frankfurt's /24s.
fn flood_source(i: u32) -> ([u8; 4], u16) {
    ([10, 244, 1 + (i % 2) as u8, (i >> 16) as u8], i as u16)
}

#[test]
fn a_flood_of_denied_syns_leaves_the_table_empty() {
    let p = policy("", NO_DB);
    let mut n = Node::new(4096);
    for i in 0..200_000u32 {
        let (src, port) = flood_source(i);
        let d = n.check(&p, &tcp_packet(src, port, host(7, 1), 5432, SYN));
        assert_eq!((d.verdict, d.reason), (Verdict::Drop, Reason::Rule(0)));
    }
    assert_eq!(n.ct.live(n.now), 0);
    assert_eq!(n.ct.stats().inserted, 0);
    assert_eq!(p.counters.rules[0].get(), 200_000);
}

#[test]
fn a_flood_of_allowed_new_flows_never_grows_the_table_past_its_capacity() {
    let p = policy("", NO_DB);
    let mut n = Node::new(1024);
    let capacity = n.ct.capacity();
    assert_eq!(capacity, 1024);
    for i in 0..50_000u32 {
        let (src, port) = flood_source(i);
        let d = n.check(&p, &tcp_packet(src, port, host(8, 1), 443, SYN));
        // unanswered flows make room for each other: nothing is refused
        assert_eq!(d.verdict, Verdict::Pass, "flow {i}");
        assert!(i % 1000 != 0 || n.ct.live(n.now) <= capacity);
    }
    assert!(n.ct.live(n.now) <= capacity);
    assert_eq!(n.ct.stats().full, 0);
    assert!(n.ct.stats().evicted >= 50_000 - capacity as u64);
}

#[test]
fn when_every_slot_holds_an_answered_flow_new_flows_fail_closed_and_are_counted() {
    let p = policy("", NO_DB);
    let mut n = Node::new(256);
    let capacity = n.ct.capacity();
    let api = host(8, 1);
    let mut established = Vec::new();
    let mut refused = 0u64;
    for i in 0..(capacity as u32 * 4) {
        let (src, port) = flood_source(i);
        let d = n.check(&p, &tcp_packet(src, port, api, 443, SYN));
        if d.verdict == Verdict::Drop {
            assert_eq!(d.reason, Reason::Overflow);
            refused += 1;
            continue;
        }
        let answer = n.check(&p, &tcp_packet(api, 443, src, port, SYN | ACK));
        assert_eq!(answer.reason, Reason::Tracked);
        established.push((src, port));
        assert!(n.ct.live(n.now) <= capacity);
    }
    assert!(refused >= capacity as u64 * 3, "{refused}");
    assert_eq!(p.counters.policy.overflow.load(Ordering::Relaxed), refused);
    assert_eq!(n.ct.stats().full, refused);
    assert!(established.len() <= capacity);
    // buckets fill unevenly: most, not all, slots hold a flow before the first refusal
    assert!(established.len() >= capacity / 2, "{}", established.len());
    // the answered flows were never cut
    for (src, port) in established {
        let d = n.check(&p, &tcp_packet(src, port, api, 443, ACK));
        assert_eq!(d.reason, Reason::Tracked);
    }
    const { assert!(WAYS >= 2) };
}

const ALLOW_DB: &str = r#"
[[policy]]
name = "db"
order = 1
action = "allow"
to = { name = "use-db" }
protocol = "tcp"
ports = [5432]

[[policy]]
name = "https"
order = 2
action = "allow"
protocol = "tcp"
ports = [443]
"#;

const DENY_DB: &str = r#"
[[policy]]
name = "https"
order = 2
action = "allow"
protocol = "tcp"
ports = [443]

[[policy]]
name = "db"
order = 3
action = "deny"
to = { name = "use-db" }
protocol = "tcp"
ports = [5432]
"#;

#[test]
fn a_reload_from_allow_to_deny_stops_the_running_flow_both_ways_and_refuses_new_ones() {
    let doc = document("default-action = \"deny\"", ALLOW_DB);
    let v1 = compile(&doc, None).unwrap();
    let mut n = Node::new(256);
    let (fra, db) = (host(1, 1), host(7, 1));
    let out = tcp_packet(fra, 40000, db, 5432, ACK);
    let back = tcp_packet(db, 5432, fra, 40000, ACK);
    let https = tcp_packet(fra, 40001, db, 443, ACK);
    assert_eq!(
        n.check(&v1, &tcp_packet(fra, 40000, db, 5432, SYN)).verdict,
        Verdict::Pass
    );
    assert_eq!(n.check(&v1, &back).reason, Reason::Tracked);
    assert_eq!(n.check(&v1, &https).verdict, Verdict::Pass);

    let v2 = compile(&document("default-action = \"deny\"", DENY_DB), Some(&v1)).unwrap();
    assert_eq!(v2.generation, v1.generation + 1);
    assert_eq!(n.check(&v2, &out).reason, Reason::Revoked);
    assert_eq!(
        n.check(&v2, &back).reason,
        Reason::Revoked,
        "nor from the other end"
    );
    assert_eq!(n.check(&v2, &out).verdict, Verdict::Drop);
    let new = n.check(&v2, &tcp_packet(fra, 40002, db, 5432, SYN));
    assert_eq!((new.verdict, new.reason), (Verdict::Drop, Reason::Rule(1)));
    // the flow the new policy still allows was not interrupted
    assert_eq!(n.check(&v2, &https).reason, Reason::Tracked);
    assert_eq!(v2.counters.policy.revoked.load(Ordering::Relaxed), 3);
    // counters followed their rules by name
    assert_eq!(v2.counters.rules[0].get(), v1.counters.rules[1].get());
    assert!(v2.counters.rules[0].get() >= 2);

    // back to allow: new flows pass, and so does the revoked one
    let v3 = compile(&doc, Some(&v2)).unwrap();
    let again = n.check(&v3, &tcp_packet(fra, 40003, db, 5432, SYN));
    assert_eq!(
        (again.verdict, again.reason),
        (Verdict::Pass, Reason::Rule(0))
    );
    assert_eq!(n.check(&v3, &out).reason, Reason::Tracked);
}

#[test]
fn a_denied_new_flow_and_an_unanswered_fragment_cost_no_entry_but_an_allowed_one_does() {
    let p = policy("default-action = \"deny\"", ALLOW_DB);
    let mut n = Node::new(64);
    n.check(&p, &tcp_packet(host(1, 1), 1, host(7, 1), 22, SYN));
    assert_eq!(n.ct.live(n.now), 0);
    n.check(&p, &tcp_packet(host(1, 1), 1, host(7, 1), 443, SYN));
    assert_eq!(n.ct.live(n.now), 1);
}
