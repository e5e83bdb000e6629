//! Network policy (docs/policy.md): who may reach whom across clouds and regions, decided
//! without I/O and without reading a clock.
//!
//! The room, in the order a policy flows:
//! - `spec`: the checked rules, as the topology parser makes them (`core/topology/policies.rs`);
//!   `labels`: the rules of label keys and values;
//! - `compile`: rules and topology → a [`Policy`]: selectors resolved to prefixes (`addrs`),
//!   then indexed (`index` builds the `matcher`, whose lookup is not a scan of the rules);
//! - `flow`: a packet → its tuple, kind, fragments and quoted packet;
//! - `decide`: the decision for a packet with the connection table (`conntrack`) and the
//!   counters (`counters`); `reject`: the ICMP answer of a rejecting rule;
//! - `lint`: what `wiremesh policy check` reports; `explain`: what `wiremesh policy explain`
//!   prints.
//!
//! The engine (next: docs/policy.md, section 9) holds a `Policy` in an `ArcSwap` and a
//! `ConnTrack`, and calls [`Policy::check_packet`] before a decrypted packet is written to
//! the tun device and before a packet read from it is encrypted.
pub mod addrs;
pub mod compile;
pub mod conntrack;
pub mod counters;
pub mod decide;
pub mod explain;
pub mod flow;
mod index;
pub mod labels;
pub mod lint;
pub mod matcher;
pub mod reject;
pub mod spec;
#[cfg(test)]
pub(crate) mod testing;

pub use compile::{compile, CompileError, CompiledRule};
pub use conntrack::ConnTrack;
pub use decide::{Decision, Policy, Reason, Verdict};
pub use spec::{Action, DefaultAction, MeshPolicy, Mode, Protocol, Rule, RuleId};

#[cfg(test)]
mod bad_policy_tests;
#[cfg(test)]
mod example_tests;
#[cfg(test)]
mod explain_tests;
#[cfg(test)]
mod lint_tests;
#[cfg(test)]
mod matcher_tests;
#[cfg(test)]
mod state_tests;
