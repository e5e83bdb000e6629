//! `registry gc`: what to mark, unmark and remove, from one snapshot and the wall time.
//!
//! A node is absent when it has no presence key (its lease lapsed, or it left). gc marks an
//! absent node (`absent/<name>` with the wall time), unmarks it when it is present again, and
//! removes a node marked longer than `gc-after`: record, claim, mark and the `alloc/` locks of
//! its claim, in one transaction that holds only if nothing of it changed and it is still
//! absent. The wall time is an argument; the mark, not a lease, keeps the time, so gc may run
//! from anywhere, at any interval.
//!
//! It also removes `alloc/` keys that no claim backs: a join writes its claim and its locks in
//! one transaction, so such a key is never a join under way; it is a leftover or a forgery, and
//! it holds a slot no one can take.

use super::alloc::claimed_cidrs;
use super::keys::{Key, Layout};
use super::records::{encode, AbsentValue, VERSION};
use super::validate;
use super::{Kv, Snapshot, TxnSpec};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// The node is absent and unmarked: mark it with the wall time.
    Mark,
    /// The node is present again: its mark goes.
    Unmark,
    /// The node has been marked longer than `gc-after`: it goes, its CIDRs become free.
    Remove,
    /// An `alloc/` key no claim backs: it goes.
    Orphan,
}

/// One change gc makes, with the transaction that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub what: What,
    /// The node, or for [`What::Orphan`] the `alloc/` key.
    pub subject: String,
    pub txn: TxnSpec,
}

/// The keys of one node in the snapshot.
#[derive(Default)]
struct NodeKeys<'a> {
    record: Option<&'a Kv>,
    presence: Option<&'a Kv>,
    claim: Option<&'a Kv>,
    absent: Option<&'a Kv>,
}

/// The steps for `snapshot` at wall time `wall` (unix seconds); `gc_after` `None` turns marking
/// and removal off (unmarking and orphans still run).
pub fn plan(
    layout: &Layout,
    snapshot: &Snapshot,
    gc_after: Option<Duration>,
    wall: u64,
) -> Vec<Step> {
    let mut nodes: BTreeMap<String, NodeKeys> = BTreeMap::new();
    let mut allocs: Vec<(IpNet, &Kv)> = Vec::new();
    for (key, kv) in &snapshot.kvs {
        match layout.parse(key) {
            Ok(Key::Record(n)) => nodes.entry(n).or_default().record = Some(kv),
            Ok(Key::Presence(n)) => nodes.entry(n).or_default().presence = Some(kv),
            Ok(Key::Claim(n)) => nodes.entry(n).or_default().claim = Some(kv),
            Ok(Key::Absent(n)) => nodes.entry(n).or_default().absent = Some(kv),
            Ok(Key::Alloc(net)) => allocs.push((net, kv)),
            Ok(Key::Settings | Key::Policy) | Err(_) => {}
        }
    }
    let backed: HashSet<IpNet> = nodes
        .values()
        .filter_map(|n| n.claim)
        .flat_map(|kv| claimed_cidrs(&kv.value))
        .collect();
    let mut steps = Vec::new();
    for (name, keys) in &nodes {
        if let Some(step) = node_step(layout, name, keys, &allocs, gc_after, wall) {
            steps.push(step);
        }
    }
    for (net, kv) in allocs {
        if !backed.contains(&net) {
            steps.push(Step {
                what: What::Orphan,
                subject: kv.key.clone(),
                txn: TxnSpec {
                    compare_unchanged: vec![(kv.key.clone(), kv.mod_revision)],
                    deletes: vec![kv.key.clone()],
                    ..TxnSpec::default()
                },
            });
        }
    }
    steps
}

fn node_step(
    layout: &Layout,
    name: &str,
    keys: &NodeKeys,
    allocs: &[(IpNet, &Kv)],
    gc_after: Option<Duration>,
    wall: u64,
) -> Option<Step> {
    let step = |what, txn| Step {
        what,
        subject: name.to_string(),
        txn,
    };
    let absent_key = layout.absent(name);
    let unchanged = |kv: Option<&Kv>| kv.map(|kv| (kv.key.clone(), kv.mod_revision));
    if keys.presence.is_some() {
        let mark = keys.absent?;
        return Some(step(
            What::Unmark,
            TxnSpec {
                compare_unchanged: vec![(mark.key.clone(), mark.mod_revision)],
                deletes: vec![absent_key],
                ..TxnSpec::default()
            },
        ));
    }
    let gc_after = gc_after?;
    // an unreadable mark (hand-written, newer) is replaced by a fresh one, never trusted
    let since = keys
        .absent
        .and_then(|kv| validate::absent(&kv.key, &kv.value).ok())
        .map(|m| m.since);
    let presence_key = layout.presence(name);
    let Some(since) = since else {
        let mark = encode(&AbsentValue {
            v: VERSION,
            since: wall,
        });
        let mut txn = TxnSpec {
            compare_absent: vec![presence_key],
            puts: vec![(absent_key.clone(), mark)],
            ..TxnSpec::default()
        };
        match unchanged(keys.absent) {
            Some(c) => txn.compare_unchanged.push(c),
            None => txn.compare_absent.push(absent_key),
        }
        return Some(step(What::Mark, txn));
    };
    if wall.saturating_sub(since) < gc_after.as_secs() {
        return None;
    }
    Some(step(
        What::Remove,
        removal(layout, name, keys, allocs, true),
    ))
}

/// The transaction that removes `name` (`registry remove`): its record, claim, presence, mark
/// and the `alloc/` locks of its claim, all only if unchanged since `snapshot`; unless `force`,
/// also only while the node is absent. `None` when the registry holds nothing of the node.
pub fn remove(layout: &Layout, snapshot: &Snapshot, name: &str, force: bool) -> Option<TxnSpec> {
    let mut keys = NodeKeys::default();
    let mut allocs = Vec::new();
    for (key, kv) in &snapshot.kvs {
        match layout.parse(key) {
            Ok(Key::Record(n)) if n == name => keys.record = Some(kv),
            Ok(Key::Presence(n)) if n == name => keys.presence = Some(kv),
            Ok(Key::Claim(n)) if n == name => keys.claim = Some(kv),
            Ok(Key::Absent(n)) if n == name => keys.absent = Some(kv),
            Ok(Key::Alloc(net)) => allocs.push((net, kv)),
            _ => {}
        }
    }
    let any = keys.record.or(keys.claim).or(keys.presence).or(keys.absent);
    any?;
    Some(removal(layout, name, &keys, &allocs, !force))
}

fn removal(
    layout: &Layout,
    name: &str,
    keys: &NodeKeys,
    allocs: &[(IpNet, &Kv)],
    require_absent: bool,
) -> TxnSpec {
    let mut txn = TxnSpec::default();
    if require_absent {
        txn.compare_absent.push(layout.presence(name));
    } else if let Some(p) = keys.presence {
        txn.deletes.push(p.key.clone());
    }
    for kv in [keys.record, keys.claim, keys.absent].into_iter().flatten() {
        txn.compare_unchanged
            .push((kv.key.clone(), kv.mod_revision));
        txn.deletes.push(kv.key.clone());
    }
    let held: BTreeSet<IpNet> = keys
        .claim
        .map(|kv| claimed_cidrs(&kv.value))
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (_, kv) in allocs.iter().filter(|(net, _)| held.contains(net)) {
        txn.compare_unchanged
            .push((kv.key.clone(), kv.mod_revision));
        txn.deletes.push(kv.key.clone());
    }
    txn
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry::testing::{run_all, settings_json, Builder};

    const DAY: u64 = 86_400;
    const WEEK: Duration = Duration::from_secs(7 * DAY);

    /// A mesh with nodes `a` (present) and `b` (absent), each with claim and lock.
    fn mesh() -> Builder {
        let mut b = Builder::new();
        b.settings(&settings_json(false))
            .node("a", 1, "10.244.1.0/24")
            .node("b", 2, "10.244.2.0/24")
            .put(
                "/wiremesh/prod/node/a/presence",
                r#"{"v":1,"since":1,"version":"0.1.0"}"#,
            )
            .put(
                "/wiremesh/prod/alloc/v4/10.244.1.0-24",
                r#"{"v":1,"node":"a"}"#,
            )
            .put(
                "/wiremesh/prod/alloc/v4/10.244.2.0-24",
                r#"{"v":1,"node":"b"}"#,
            );
        b
    }

    fn whats(steps: &[Step]) -> Vec<(What, &str)> {
        steps.iter().map(|s| (s.what, s.subject.as_str())).collect()
    }

    #[test]
    fn an_absent_node_is_marked_then_removed_after_gc_after_and_its_cidr_freed() {
        let b = mesh();
        let mut etcd = b.snapshot();
        let t0 = 1_767_000_000;
        let steps = plan(&b.layout, &etcd, Some(WEEK), t0);
        assert_eq!(whats(&steps), [(What::Mark, "b")]);
        run_all(&mut etcd, &[steps[0].txn.clone()]);
        assert!(plan(&b.layout, &etcd, Some(WEEK), t0 + 7 * DAY - 1).is_empty());
        let steps = plan(&b.layout, &etcd, Some(WEEK), t0 + 7 * DAY);
        assert_eq!(whats(&steps), [(What::Remove, "b")]);
        assert_eq!(
            steps[0].txn.deletes,
            [
                "/wiremesh/prod/node/b/record",
                "/wiremesh/prod/claims/b",
                "/wiremesh/prod/absent/b",
                "/wiremesh/prod/alloc/v4/10.244.2.0-24",
            ]
        );
        run_all(&mut etcd, &[steps[0].txn.clone()]);
        assert!(etcd
            .kvs
            .keys()
            .all(|k| !k.contains("/b") && !k.contains("10.244.2.")));
        assert!(plan(&b.layout, &etcd, Some(WEEK), t0 + 8 * DAY).is_empty());
    }

    #[test]
    fn a_node_back_before_removal_is_unmarked_and_a_removal_racing_its_return_fails() {
        let b = mesh();
        let mut etcd = b.snapshot();
        let t0 = 1_767_000_000;
        let mark = plan(&b.layout, &etcd, Some(WEEK), t0);
        run_all(&mut etcd, &[mark[0].txn.clone()]);
        let removal = plan(&b.layout, &etcd, Some(WEEK), t0 + 8 * DAY);
        assert_eq!(whats(&removal), [(What::Remove, "b")]);
        // b returns before the removal runs
        let presence = b.layout.presence("b");
        let returned = TxnSpec {
            puts: vec![(presence, br#"{"v":1,"since":2,"version":"0.1.0"}"#.to_vec())],
            ..TxnSpec::default()
        };
        run_all(&mut etcd, &[returned]);
        let outcome = crate::core::registry::testing::run_txn(&mut etcd, &removal[0].txn);
        assert!(matches!(
            outcome,
            crate::core::registry::TxnOutcome::Conflict(_)
        ));
        let steps = plan(&b.layout, &etcd, Some(WEEK), t0 + 8 * DAY);
        assert_eq!(whats(&steps), [(What::Unmark, "b")]);
        run_all(&mut etcd, &[steps[0].txn.clone()]);
        assert!(!etcd.kvs.contains_key(&b.layout.absent("b")));
    }

    #[test]
    fn without_gc_after_no_node_is_marked_or_removed() {
        let b = mesh();
        assert!(plan(&b.layout, &b.snapshot(), None, u64::MAX).is_empty());
    }

    #[test]
    fn locks_no_claim_backs_are_removed_and_backed_ones_kept() {
        let mut b = mesh();
        b.put("/wiremesh/prod/alloc/v4/10.244.9.0-24", "forged")
            .put("/wiremesh/prod/alloc/v6/fd10::-64", "")
            // a claim with an unknown field still backs its lock
            .put(
                "/wiremesh/prod/claims/c",
                r#"{"v":2,"pod-cidr":"10.244.3.0/24"}"#,
            )
            .put("/wiremesh/prod/alloc/v4/10.244.3.0-24", "{}");
        let steps = plan(&b.layout, &b.snapshot(), None, 0);
        assert_eq!(
            whats(&steps),
            [
                (What::Orphan, "/wiremesh/prod/alloc/v4/10.244.9.0-24"),
                (What::Orphan, "/wiremesh/prod/alloc/v6/fd10::-64"),
            ]
        );
    }

    #[test]
    fn an_unreadable_mark_is_replaced_never_trusted() {
        let mut b = mesh();
        b.put(
            "/wiremesh/prod/absent/b",
            r#"{"v":1,"since":0,"extra":true}"#,
        );
        let steps = plan(&b.layout, &b.snapshot(), Some(WEEK), 1_767_000_000);
        assert_eq!(whats(&steps), [(What::Mark, "b")]);
        assert_eq!(steps[0].txn.compare_unchanged.len(), 1);
    }

    #[test]
    fn a_wall_clock_behind_the_mark_removes_nothing() {
        let mut b = mesh();
        b.put("/wiremesh/prod/absent/b", r#"{"v":1,"since":2000000000}"#);
        assert!(plan(&b.layout, &b.snapshot(), Some(WEEK), 1_767_000_000).is_empty());
    }
}
