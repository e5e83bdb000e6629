//! A checked policy and the topology → a [`Policy`] the data path can ask: selectors resolved
//! to addresses (labels, names, clouds and regions → the picked nodes' pod CIDRs, which hold
//! their overlay addresses; CIDR sets → their CIDRs), then indexed (`index.rs`).
//!
//! Compiling happens at load and reload, off the data path; its result is immutable and is
//! swapped in whole (docs/policy.md, section 5).

use super::addrs::{normalise, Addrs};
use super::counters::Counters;
use super::decide::Policy;
use super::index;
use super::spec::{Action, MeshPolicy, PortRange, Protocol, Selector};
use crate::constants::POLICY_INDEX_BUDGET;
use crate::core::topology::{Document, Topology};

/// One rule with its selectors resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledRule {
    pub name: String,
    pub order: u32,
    pub action: Action,
    pub protocol: Option<Protocol>,
    /// Empty: every port.
    pub ports: Vec<PortRange>,
    pub src: Addrs,
    pub dst: Addrs,
    /// Where the rule is written, for messages.
    pub line: Option<usize>,
}

/// Why a policy cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error(
        "the policy is too large to index: it would hold more than {budget} rule references \
         (rules × the destination prefixes and port intervals they share); merge rules, or \
         name fewer distinct prefixes and port ranges"
    )]
    TooLarge { budget: usize },
}

/// The addresses of a selector; `None` stands for any address.
pub fn resolve(selector: Option<&Selector>, policy: &MeshPolicy, topology: &Topology) -> Addrs {
    let Some(sel) = selector else {
        return Addrs::Any;
    };
    let mut nets = sel.cidrs.clone();
    for set in &sel.sets {
        nets.extend(policy.cidr_sets.get(set).into_iter().flatten().copied());
    }
    if let Some(m) = &sel.nodes {
        for n in &topology.nodes {
            if m.picks(&n.name, &n.cloud, &n.region, policy.labels.get(&n.name)) {
                nets.extend(n.pod_cidrs());
            }
        }
    }
    Addrs::Prefixes(normalise(nets))
}

/// Every rule of `policy` resolved against `topology`, in order.
pub fn resolve_rules(policy: &MeshPolicy, topology: &Topology) -> Vec<CompiledRule> {
    policy
        .rules
        .iter()
        .map(|r| CompiledRule {
            name: r.name.clone(),
            order: r.order,
            action: r.action,
            protocol: r.protocol,
            ports: r.ports.clone(),
            src: resolve(r.from.as_ref(), policy, topology),
            dst: resolve(r.to.as_ref(), policy, topology),
            line: r.line,
        })
        .collect()
}

/// Compiles a topology file's policy. `previous`, the policy in force, lends its counters (by
/// rule name) and its generation, which the result's is one above.
pub fn compile(doc: &Document, previous: Option<&Policy>) -> Result<Policy, CompileError> {
    compile_with_budget(doc, previous, POLICY_INDEX_BUDGET)
}

/// [`compile`] with the index's budget given, for tests of the bound.
pub fn compile_with_budget(
    doc: &Document,
    previous: Option<&Policy>,
    budget: usize,
) -> Result<Policy, CompileError> {
    let rules = resolve_rules(&doc.policy, &doc.topology);
    let matcher = index::build(&rules, budget).ok_or(CompileError::TooLarge { budget })?;
    let old_names: Vec<&str> = previous
        .map(|p| p.rules.iter().map(|r| r.name.as_str()).collect())
        .unwrap_or_default();
    let counters = Counters::carried_over(
        rules.iter().map(|r| r.name.as_str()),
        previous.map(|p| (old_names.as_slice(), &p.counters)),
    );
    Ok(Policy {
        permissive: doc.policy.is_permissive(),
        default_action: doc.policy.default_action,
        mode: doc.policy.mode,
        generation: previous.map_or(1, |p| p.generation.wrapping_add(1).max(1)),
        rules,
        matcher,
        counters,
    })
}

impl Policy {
    /// The policy of a mesh that has none: everything passes, nothing is tracked. A device
    /// starts with it, before its first plan.
    pub fn permissive() -> Policy {
        Policy {
            rules: Vec::new(),
            matcher: index::build(&[], POLICY_INDEX_BUDGET).expect("no rule fits any budget"),
            default_action: super::spec::DefaultAction::Allow,
            mode: super::spec::Mode::Enforce,
            generation: 0,
            counters: Counters::default(),
            permissive: true,
        }
    }
}
