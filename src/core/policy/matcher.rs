//! The compiled rules as an index, and the per-packet lookup: which rule decides a packet, and
//! which `log` rules before it match.
//!
//! Why this shape. A linear scan costs one comparison per rule for every new flow, so 1,000
//! rules with the matching one last cost 1,000 comparisons, and a miss always does. Instead the
//! index narrows the rules down one dimension at a time, each with a lookup whose cost does not
//! grow with the number of rules:
//! 1. **Destination**: one longest-prefix table (`core/routing.rs`: a hash probe per distinct
//!    prefix length) over every destination prefix of every rule, plus `0.0.0.0/0` and `::/0`.
//!    Rules are *pushed down*: a prefix's entry lists every rule whose destination contains the
//!    prefix, so the longest match of an address lists exactly the rules whose destination holds
//!    the address. (Two prefixes that both hold an address nest, so any rule prefix holding it
//!    holds the longest one too.)
//! 2. **Protocol and port**: each destination entry has, per protocol class, the port space cut
//!    into the intervals the rules' ranges make; a binary search finds the packet's interval,
//!    whose list holds the rules that also match protocol and port, by order.
//! 3. **Source**: a list of at most [`SCAN_MAX`] rules is scanned, one source test per rule
//!    (itself a longest-prefix lookup), first decider wins. A longer list has its own source
//!    table, pushed down the same way, whose entries hold the answer outright: the deciding rule
//!    and the log rules before it.
//!
//! Identical lists are stored once, and so are identical destination entries, which most
//! prefixes of a mesh share. Building is bounded by `POLICY_INDEX_BUDGET` (`index.rs`).
//! Per-port or per-protocol hash tables alone would not do: a rule without ports is in every
//! bucket, and a destination-only index degrades to a scan when many rules share a destination,
//! which a policy of "region A may not reach region B on port N" does.

use super::spec::RuleId;
use crate::core::routing::PrefixTable;
use std::net::IpAddr;

/// Lists of at most this many rules are scanned; longer ones get a source table. Eight source
/// tests cost about what one more table lookup and the memory behind it cost.
pub const SCAN_MAX: usize = 8;

/// The protocol classes rules distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtoClass {
    Tcp,
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
    Other,
}

impl ProtoClass {
    pub fn of(proto: u8) -> ProtoClass {
        match proto {
            super::flow::TCP => ProtoClass::Tcp,
            super::flow::UDP => ProtoClass::Udp,
            super::flow::ICMP | super::flow::ICMPV6 => ProtoClass::Icmp,
            _ => ProtoClass::Other,
        }
    }
}

/// What the rules are asked about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: ProtoClass,
    /// The destination port of TCP and UDP; `None` when unknown (a later fragment) or when the
    /// protocol has none. Rules with `ports` match only a known port.
    pub port: Option<u16>,
}

/// The answer of the rules.
#[derive(Debug, Clone, Copy)]
pub struct Match<'a> {
    /// The first allow or deny rule that matches, if any.
    pub rule: Option<RuleId>,
    logs: Logs<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Logs<'a> {
    Inline([RuleId; SCAN_MAX], u8),
    Shared(&'a [RuleId]),
}

impl Match<'_> {
    /// The log rules that matched before the deciding one, in order.
    pub fn logs(&self) -> &[RuleId] {
        match &self.logs {
            Logs::Inline(ids, n) => &ids[..usize::from(*n)],
            Logs::Shared(ids) => ids,
        }
    }
}

/// The compiled index; built by `index.rs`.
#[derive(Debug)]
pub struct Matcher {
    /// Destination prefix → cell.
    pub(super) dst: PrefixTable<u32>,
    pub(super) cells: Vec<Cell>,
    pub(super) lists: Vec<List>,
    pub(super) outcomes: Vec<Outcome>,
    /// Per rule: its source test (`None`: any source).
    pub(super) sources: Vec<Option<PrefixTable<()>>>,
    /// Per rule: whether it decides (allow, deny) rather than logs.
    pub(super) decides: Vec<bool>,
    /// Rule references stored, for the figures.
    pub(super) references: usize,
}

/// The rules of one destination, by protocol class (and port).
#[derive(Debug)]
pub(super) struct Cell {
    pub(super) tcp: Ports,
    pub(super) udp: Ports,
    pub(super) icmp: u32,
    pub(super) other: u32,
}

/// Port intervals: `starts[i]..starts[i + 1]` holds the list `lists[i]`.
#[derive(Debug)]
pub(super) struct Ports {
    pub(super) starts: Box<[u16]>,
    pub(super) lists: Box<[u32]>,
    /// The rules without ports, for a packet whose port is unknown.
    pub(super) unknown: u32,
}

impl Ports {
    fn list(&self, port: Option<u16>) -> u32 {
        match port {
            None => self.unknown,
            Some(p) => self.lists[self.starts.partition_point(|&s| s <= p) - 1],
        }
    }
}

/// Rules that match a packet's destination, protocol and port, by order.
#[derive(Debug)]
pub(super) enum List {
    Scan(Box<[RuleId]>),
    /// Source prefix → outcome.
    Indexed(PrefixTable<u32>),
}

/// What a source gets from an indexed list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Outcome {
    pub(super) rule: Option<RuleId>,
    pub(super) logs: Box<[RuleId]>,
}

impl Matcher {
    /// The rule that decides `q`, and the log rules that match before it.
    pub fn decide(&self, q: &Query) -> Match<'_> {
        let none = Match {
            rule: None,
            logs: Logs::Shared(&[]),
        };
        // `0.0.0.0/0` and `::/0` are always present: every address has a cell
        let Some(&cell) = self.dst.lookup(q.dst) else {
            return none;
        };
        let cell = &self.cells[cell as usize];
        let list = match q.proto {
            ProtoClass::Tcp => cell.tcp.list(q.port),
            ProtoClass::Udp => cell.udp.list(q.port),
            ProtoClass::Icmp => cell.icmp,
            ProtoClass::Other => cell.other,
        };
        match &self.lists[list as usize] {
            List::Scan(ids) => {
                let mut logs = [0; SCAN_MAX];
                let mut n = 0u8;
                for &id in ids.iter() {
                    let i = id as usize;
                    if self.sources[i]
                        .as_ref()
                        .is_some_and(|t| t.lookup(q.src).is_none())
                    {
                        continue;
                    }
                    if self.decides[i] {
                        return Match {
                            rule: Some(id),
                            logs: Logs::Inline(logs, n),
                        };
                    }
                    logs[usize::from(n)] = id;
                    n += 1;
                }
                Match {
                    rule: None,
                    logs: Logs::Inline(logs, n),
                }
            }
            List::Indexed(table) => match table.lookup(q.src) {
                Some(&o) => {
                    let o = &self.outcomes[o as usize];
                    Match {
                        rule: o.rule,
                        logs: Logs::Shared(&o.logs),
                    }
                }
                None => none,
            },
        }
    }

    /// How many rule references the index stores (lists, outcomes): its size, for figures.
    pub fn references(&self) -> usize {
        self.references
    }
}
