//! The network policy's series (docs/policy.md), read from the policy in force on each scrape,
//! like every other series here.
//!
//! | family | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `wiremesh_policy_rule_hits` | counter | policy, action | packets the rule decided or logged |
//! | `wiremesh_policy_default` | counter | action | new flows the default action decided |
//! | `wiremesh_policy_events` | counter | event | `related` (ICMP errors of tracked flows passed), `would_deny` (audit), `overflow`, `revoked`, `unreadable` |
//! | `wiremesh_policy_generation` | gauge | | 0 without policy; one more at each change |
//! | `wiremesh_conntrack_entries` / `_capacity` | gauge | | the connection table |
//! | `wiremesh_conntrack_evicted` | counter | | unanswered flows pushed out by new ones |
//!
//! A rule's count survives a reload that keeps its name; a removed rule's series disappears.

use crate::engine::Device;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::atomic::Ordering;

pub(super) fn encode(enc: &mut DescriptorEncoder, dev: &Device) -> fmt::Result {
    let p = dev.policy();
    let c = &p.counters.policy;
    let mut hits = enc.encode_descriptor(
        "wiremesh_policy_rule_hits",
        "Packets a policy rule decided (the first of each flow; every packet of a denied one), or logged.",
        None,
        MetricType::Counter,
    )?;
    for (rule, counter) in p.rules.iter().zip(&p.counters.rules) {
        let labels = [
            ("policy", rule.name.as_str()),
            ("action", rule.action.word()),
        ];
        ConstCounter::new(counter.get()).encode(hits.encode_family(&labels)?)?;
    }
    let mut default = enc.encode_descriptor(
        "wiremesh_policy_default",
        "New flows no allow or deny rule matched, by the default action that decided them.",
        None,
        MetricType::Counter,
    )?;
    for (action, v) in [("allow", &c.default_allowed), ("deny", &c.default_denied)] {
        let v = v.load(Ordering::Relaxed);
        ConstCounter::new(v).encode(default.encode_family(&[("action", action)])?)?;
    }
    let mut events = enc.encode_descriptor(
        "wiremesh_policy_events",
        "Policy decisions not made by a rule: related ICMP errors passed, audit-mode would-deny, and denials for overflow, revocation by a reload, or an unreadable packet.",
        None,
        MetricType::Counter,
    )?;
    for (event, v) in [
        ("related", &c.related),
        ("would_deny", &c.would_deny),
        ("overflow", &c.overflow),
        ("revoked", &c.revoked),
        ("unreadable", &c.unreadable),
    ] {
        let v = v.load(Ordering::Relaxed);
        ConstCounter::new(v).encode(events.encode_family(&[("event", event)])?)?;
    }
    let table = dev.conntrack(std::time::Instant::now());
    for (name, help, v) in [
        (
            "wiremesh_policy_generation",
            "The policy in force: 0 without one, one more at each change.",
            i64::from(p.generation),
        ),
        (
            "wiremesh_conntrack_entries",
            "Flows the connection table holds now.",
            table.live as i64,
        ),
        (
            "wiremesh_conntrack_capacity",
            "Flows the connection table can hold; 0 until a policy is enforced.",
            table.capacity as i64,
        ),
    ] {
        let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(v).encode(m)?;
    }
    let m = enc.encode_descriptor(
        "wiremesh_conntrack_evicted",
        "Unanswered flows pushed out of the connection table by new ones.",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(table.evicted).encode(m)
}
