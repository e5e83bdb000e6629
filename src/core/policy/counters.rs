//! What policy counts, as plain atomics the data-path threads increment and `wiremesh status`
//! and Prometheus read. A compiled policy holds them behind `Arc`s, and a recompiled one takes
//! over the previous one's by rule name, so a reload neither resets a rule's count nor mixes up
//! two rules that swapped orders.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Packets one rule decided (or logged): each is the first packet of a flow, a packet of a flow
/// it denied (denied flows are not tracked, so each of their packets is judged), or a tracked
/// flow judged again after a reload.
#[derive(Debug, Default)]
pub struct RuleCounter {
    hits: AtomicU64,
}

impl RuleCounter {
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// The mesh-wide counts, one set per node whatever the rules.
#[derive(Debug, Default)]
pub struct PolicyCounters {
    /// New flows `default-action` allowed / denied.
    pub default_allowed: AtomicU64,
    pub default_denied: AtomicU64,
    /// Audit mode: packets that would have been denied and passed.
    pub would_deny: AtomicU64,
    /// New flows denied because their connection-table bucket held only answered flows.
    pub overflow: AtomicU64,
    /// Packets of flows a reload revoked.
    pub revoked: AtomicU64,
    /// Packets that could not be read, denied.
    pub unreadable: AtomicU64,
    /// ICMP errors passed because they belong to a tracked flow.
    pub related: AtomicU64,
}

impl PolicyCounters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every counter of one compiled policy: per rule (by rule id) and mesh-wide.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub rules: Vec<Arc<RuleCounter>>,
    pub policy: Arc<PolicyCounters>,
}

impl Counters {
    /// Counters for `names` (rule ids in order), taking over those of `previous` with the same
    /// name and its mesh-wide ones.
    pub fn carried_over<'a>(
        names: impl Iterator<Item = &'a str>,
        previous: Option<(&[&str], &Counters)>,
    ) -> Counters {
        let old: HashMap<&str, &Arc<RuleCounter>> = previous
            .map(|(names, c)| names.iter().copied().zip(&c.rules).collect())
            .unwrap_or_default();
        Counters {
            rules: names
                .map(|n| old.get(n).map_or_else(Arc::default, |c| Arc::clone(c)))
                .collect(),
            policy: previous.map_or_else(Arc::default, |(_, c)| Arc::clone(&c.policy)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_each_rules_count_by_name_and_starts_new_rules_at_zero() {
        let first = Counters::carried_over(["a", "b"].into_iter(), None);
        first.rules[0].hit();
        first.rules[1].hit();
        first.rules[1].hit();
        PolicyCounters::add(&first.policy.overflow);
        // "b" moved before "a", "c" is new, "a" is kept
        let names = ["a", "b"];
        let second = Counters::carried_over(["b", "c", "a"].into_iter(), Some((&names, &first)));
        let counts: Vec<u64> = second.rules.iter().map(|r| r.get()).collect();
        assert_eq!(counts, [2, 0, 1]);
        assert_eq!(second.policy.overflow.load(Ordering::Relaxed), 1);
        first.rules[0].hit();
        assert_eq!(second.rules[2].get(), 2, "shared, not copied");
    }
}
