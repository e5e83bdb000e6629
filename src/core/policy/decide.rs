//! The compiled [`Policy`] and its per-packet decision. The order of questions for a packet
//! (docs/policy.md, sections 2-6):
//! 1. a permissive policy (no rule, default allow) passes everything, tracking nothing;
//! 2. an unreadable packet is denied;
//! 3. a later fragment passes if its first fragment did, else is judged with its port unknown;
//! 4. an ICMP error addressed to the sender of a packet it quotes passes if that packet's flow
//!    is tracked (`Related`);
//! 5. a packet of a tracked flow passes (`Tracked`), once the flow has been judged by this
//!    policy's generation: a reload re-judges the flow's opening packet, and a flow now denied
//!    is revoked;
//! 6. anything else is judged by the rules; an allowed flow is tracked, and if the table has
//!    no room for it, it is denied (`Overflow`: fail closed).
//!
//! In audit mode every "deny" becomes a pass counted as `would_deny`, and the flow is tracked as
//! if it had been allowed.

use super::compile::CompiledRule;
use super::conntrack::{ConnTrack, Key, State};
use super::counters::{Counters, PolicyCounters};
use super::flow::{Flow, Kind, Tuple};
use super::matcher::{Matcher, ProtoClass, Query};
use super::spec::{Action, DefaultAction, Mode, RuleId};
use std::time::Instant;

/// A compiled policy: immutable, swapped whole on reload.
#[derive(Debug)]
pub struct Policy {
    pub rules: Vec<CompiledRule>,
    pub matcher: Matcher,
    pub default_action: DefaultAction,
    pub mode: Mode,
    /// One more than the policy it replaced; connection-tracking entries remember which
    /// generation judged them.
    pub generation: u32,
    pub counters: Counters,
    pub(super) permissive: bool,
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    /// Drop, and answer with ICMP administratively prohibited (`reject.rs`).
    Reject,
}

/// Why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The policy allows everything.
    Permissive,
    /// A packet of a tracked flow, or a reply.
    Tracked,
    /// An ICMP error about a tracked flow.
    Related,
    /// A later fragment of a datagram whose first fragment passed.
    Fragment,
    Rule(RuleId),
    Default,
    /// The connection table had no room for a new flow.
    Overflow,
    /// A flow a reload denied.
    Revoked,
    Unreadable,
}

/// The decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    /// Audit mode: the packet passed but enforcement would have denied it.
    pub would_deny: bool,
    /// The first `log` rule that matched this packet, for the engine's log line (the core
    /// logs nothing; every matching log rule is counted).
    pub logged: Option<RuleId>,
}

/// What the rules alone say about a query, before state and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub action: Action,
    /// The deciding rule; `None`: the default action.
    pub rule: Option<RuleId>,
    /// Log rules that matched before it.
    pub logs: Vec<RuleId>,
}

impl Judgement {
    pub fn allows(&self) -> bool {
        self.action == Action::Allow
    }
}

/// The rules' answer for a packet, counted.
struct Counted {
    allowed: bool,
    reason: Reason,
    reject: bool,
    logged: Option<RuleId>,
}

/// The query the rules answer for a packet.
pub fn query_of(t: &Tuple, port_known: bool) -> Query {
    let proto = ProtoClass::of(t.proto);
    Query {
        src: t.src,
        dst: t.dst,
        proto,
        port: (port_known && matches!(proto, ProtoClass::Tcp | ProtoClass::Udp))
            .then_some(t.dst_port),
    }
}

impl Policy {
    /// Whether the policy is not enforced at all (no rule, default allow).
    pub fn is_permissive(&self) -> bool {
        self.permissive
    }

    /// What the rules say about `q`, counting nothing: for `explain` and the lints.
    pub fn judge(&self, q: &Query) -> Judgement {
        let m = self.matcher.decide(q);
        Judgement {
            action: m.rule.map_or(
                match self.default_action {
                    DefaultAction::Allow => Action::Allow,
                    DefaultAction::Deny => Action::Deny { reject: false },
                },
                |id| self.rules[id as usize].action,
            ),
            rule: m.rule,
            logs: m.logs().to_vec(),
        }
    }

    /// The rules' answer for `q`, counted: the deciding rule (or the default) and every log
    /// rule that matched get a hit.
    fn judge_counted(&self, q: &Query) -> Counted {
        let m = self.matcher.decide(q);
        for &id in m.logs() {
            self.counters.rules[id as usize].hit();
        }
        let logged = m.logs().first().copied();
        match m.rule {
            Some(id) => {
                self.counters.rules[id as usize].hit();
                let (allowed, reject) = match self.rules[id as usize].action {
                    Action::Deny { reject } => (false, reject),
                    _ => (true, false),
                };
                Counted {
                    allowed,
                    reason: Reason::Rule(id),
                    reject,
                    logged,
                }
            }
            None => {
                let allowed = self.default_action == DefaultAction::Allow;
                let c = &self.counters.policy;
                PolicyCounters::add(if allowed {
                    &c.default_allowed
                } else {
                    &c.default_denied
                });
                Counted {
                    allowed,
                    reason: Reason::Default,
                    reject: false,
                    logged,
                }
            }
        }
    }

    fn pass(reason: Reason) -> Decision {
        Decision {
            verdict: Verdict::Pass,
            reason,
            would_deny: false,
            logged: None,
        }
    }

    /// A denial, or in audit mode a pass counted as `would_deny`.
    fn deny(&self, reason: Reason, reject: bool) -> Decision {
        if self.mode == Mode::Audit {
            PolicyCounters::add(&self.counters.policy.would_deny);
            return Decision {
                verdict: Verdict::Pass,
                reason,
                would_deny: true,
                logged: None,
            };
        }
        Decision {
            verdict: if reject {
                Verdict::Reject
            } else {
                Verdict::Drop
            },
            reason,
            would_deny: false,
            logged: None,
        }
    }

    /// The decision the rules' answer `c` makes.
    fn decided(&self, c: &Counted) -> Decision {
        let d = if c.allowed {
            Self::pass(c.reason)
        } else {
            self.deny(c.reason, c.reject)
        };
        Decision {
            logged: c.logged,
            ..d
        }
    }

    /// The decision for packet `pkt` at `now`, with the node's connection table.
    pub fn check_packet(&self, ct: &mut ConnTrack, pkt: &[u8], now: Instant) -> Decision {
        if self.permissive {
            return Self::pass(Reason::Permissive);
        }
        match Flow::parse(pkt) {
            Ok(flow) => self.check(ct, &flow, now),
            Err(_) => self.unreadable(),
        }
    }

    /// The decision for a packet that cannot be read: denied (in audit mode, passed and
    /// counted), never tracked.
    pub fn unreadable(&self) -> Decision {
        if self.permissive {
            return Self::pass(Reason::Permissive);
        }
        PolicyCounters::add(&self.counters.policy.unreadable);
        self.deny(Reason::Unreadable, false)
    }

    /// The decision for a parsed packet at `now` (the order of questions: module doc).
    pub fn check(&self, ct: &mut ConnTrack, flow: &Flow, now: Instant) -> Decision {
        if self.permissive {
            return Self::pass(Reason::Permissive);
        }
        let t = &flow.tuple;
        match flow.kind {
            Kind::LaterFragment { id } => {
                let key = Key::fragment(t, id);
                if let Some(e) = ct.find(&key, true, now) {
                    if e.generation == self.generation {
                        return Self::pass(Reason::Fragment);
                    }
                    ct.remove(e.handle);
                }
                return self.judge_untracked(t, false);
            }
            Kind::IcmpError { quoted } => {
                // the error must go back to the quoted packet's sender, about a tracked flow
                if quoted.src == t.dst && self.tracked(ct, &quoted, now) {
                    PolicyCounters::add(&self.counters.policy.related);
                    return Self::pass(Reason::Related);
                }
                return self.judge_untracked(t, true);
            }
            _ => {}
        }
        let (key, forward) = Key::of(t);
        let tcp_flags = match flow.kind {
            Kind::Tcp { flags } => Some(flags),
            _ => None,
        };
        if let Some(e) = ct.find(&key, forward, now) {
            let mut state = e.state;
            if e.generation != self.generation {
                let opening = ct.opening(e.handle);
                let allowed = self.judge_counted(&query_of(&opening, true)).allowed;
                if !allowed && self.mode == Mode::Audit {
                    PolicyCounters::add(&self.counters.policy.would_deny);
                }
                if allowed || self.mode == Mode::Audit {
                    ct.renew(e.handle, self.generation);
                    if state == State::Revoked {
                        state = State::Opening;
                    }
                } else {
                    ct.revoke(e.handle, self.generation, now);
                    state = State::Revoked;
                }
            }
            if state == State::Revoked {
                ct.on_packet(e.handle, e.reply, tcp_flags, now);
                PolicyCounters::add(&self.counters.policy.revoked);
                return self.deny(Reason::Revoked, false);
            }
            ct.on_packet(e.handle, e.reply, tcp_flags, now);
            self.track_fragments(ct, flow, now);
            return Self::pass(Reason::Tracked);
        }
        // a new flow; ICMP messages other than echo requests open none
        let opens = match flow.kind {
            Kind::Echo { request } => request,
            Kind::Icmp { .. } => false,
            _ => true,
        };
        let judged = self.judge_counted(&query_of(t, true));
        if !judged.allowed && self.mode == Mode::Enforce {
            return self.decided(&judged);
        }
        if opens
            && ct
                .insert(key, forward, State::Opening, self.generation, now)
                .is_err()
        {
            PolicyCounters::add(&self.counters.policy.overflow);
            return self.deny(Reason::Overflow, false);
        }
        self.track_fragments(ct, flow, now);
        self.decided(&judged)
    }

    /// Whether the flow of `t` is tracked and allowed under this policy (re-judging it if
    /// an older generation admitted it).
    fn tracked(&self, ct: &mut ConnTrack, t: &Tuple, now: Instant) -> bool {
        let (key, forward) = Key::of(t);
        let Some(e) = ct.find(&key, forward, now) else {
            return false;
        };
        if e.state == State::Revoked && e.generation == self.generation {
            return false;
        }
        if e.generation != self.generation {
            let allowed = self
                .judge_counted(&query_of(&ct.opening(e.handle), true))
                .allowed;
            if !allowed && self.mode == Mode::Enforce {
                ct.revoke(e.handle, self.generation, now);
                return false;
            }
            ct.renew(e.handle, self.generation);
        }
        true
    }

    /// A packet that opens no flow, judged by the rules alone.
    fn judge_untracked(&self, t: &Tuple, port_known: bool) -> Decision {
        let judged = self.judge_counted(&query_of(t, port_known));
        self.decided(&judged)
    }

    /// The first fragment of a datagram passed: let its later fragments through.
    fn track_fragments(&self, ct: &mut ConnTrack, flow: &Flow, now: Instant) {
        if let Some(id) = flow.first_fragment {
            // best effort: without room the later fragments are judged on their own
            let _ = ct.insert(
                Key::fragment(&flow.tuple, id),
                true,
                State::Fragment,
                self.generation,
                now,
            );
        }
    }
}
