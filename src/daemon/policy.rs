//! The daemon's side of network policy (docs/policy.md): the document's policy compiled against
//! its topology and put in force in the engine, at start and at each reload, and what
//! `wiremesh status` shows of it.
//!
//! A policy is compiled only when what it resolves to changes: a reload that leaves the rules,
//! their addresses, the default and the mode alone keeps the policy in force, its generation
//! and therefore every tracked flow as it is. A mesh without policy never compiles one.

use crate::core::policy::compile::resolve_rules;
use crate::core::policy::{compile, CompileError, DefaultAction, Mode, Policy};
use crate::core::topology::Document;
use crate::engine::Device;
use crate::io::policy_status::{PolicyStatus, RuleHits};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The policy `doc` asks for, compiled, or `None` when the one in force already is it. Nothing
/// is put in force: the caller does that once the rest of the reload is known to be good.
pub(super) fn compiled(
    device: &Device,
    doc: &Document,
) -> Result<Option<Arc<Policy>>, CompileError> {
    let current = device.policy();
    let p = &doc.policy;
    let unchanged = current.default_action == p.default_action
        && current.mode == p.mode
        && current.is_permissive() == p.is_permissive()
        && current.rules == resolve_rules(p, &doc.topology);
    if unchanged {
        return Ok(None);
    }
    compile(doc, Some(&current)).map(|p| Some(Arc::new(p)))
}

/// Puts `policy` in force and says so.
pub(super) fn put_in_force(device: &Device, policy: Arc<Policy>) {
    tracing::info!(
        generation = policy.generation,
        rules = policy.rules.len(),
        default = word_of_default(policy.default_action),
        mode = word_of_mode(policy.mode),
        enforced = !policy.is_permissive(),
        "policy in force"
    );
    device.set_policy(policy);
}

/// The policy in force with its counters and table, for `wiremesh status`.
pub(super) fn status(device: &Device, now: Instant) -> PolicyStatus {
    let p = device.policy();
    let c = &p.counters.policy;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let table = device.conntrack(now);
    PolicyStatus {
        mode: word_of_mode(p.mode).into(),
        default_action: word_of_default(p.default_action).into(),
        generation: p.generation,
        enforced: !p.is_permissive(),
        rules: p
            .rules
            .iter()
            .zip(&p.counters.rules)
            .map(|(r, hits)| RuleHits {
                name: r.name.clone(),
                action: r.action.word().into(),
                hits: hits.get(),
            })
            .collect(),
        default_allowed: n(&c.default_allowed),
        default_denied: n(&c.default_denied),
        would_deny: n(&c.would_deny),
        related: n(&c.related),
        overflow: n(&c.overflow),
        revoked: n(&c.revoked),
        unreadable: n(&c.unreadable),
        conntrack_entries: table.live,
        conntrack_capacity: table.capacity,
        conntrack_evicted: table.evicted,
    }
}

pub(crate) fn word_of_mode(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

pub(crate) fn word_of_default(d: DefaultAction) -> &'static str {
    match d {
        DefaultAction::Allow => "allow",
        DefaultAction::Deny => "deny",
    }
}
