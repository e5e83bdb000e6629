//! Builds the [`Matcher`] from resolved rules (the shape and why: `matcher.rs`). Every rule
//! reference the build writes (into a destination's list, a port interval's list, a source
//! table) is counted against a budget, so no policy, however written, takes unbounded time
//! or memory: past the budget the build gives up and the policy is refused.

use super::addrs::{inside, sort_key, Addrs};
use super::compile::CompiledRule;
use super::matcher::{Cell, List, Matcher, Outcome, Ports, SCAN_MAX};
use super::spec::{Protocol, RuleId};
use crate::core::routing::PrefixTable;
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap};

/// `0.0.0.0/0` and `::/0`: every address falls in one of them.
fn everything() -> [IpNet; 2] {
    [
        "0.0.0.0/0".parse().expect("a CIDR"),
        "::/0".parse().expect("a CIDR"),
    ]
}

/// The index of `rules` (in order: a rule's id is its position), or `None` past `budget`
/// rule references.
pub(super) fn build(rules: &[CompiledRule], budget: usize) -> Option<Matcher> {
    let mut b = Builder {
        rules,
        budget,
        spent: 0,
        lists: Vec::new(),
        list_ids: HashMap::new(),
        outcomes: Vec::new(),
        outcome_ids: HashMap::new(),
        stored: 0,
    };
    // destinations: every prefix a rule names, each with the rules whose destination holds it
    let mut targets: Vec<IpNet> = rules
        .iter()
        .filter_map(|r| match &r.dst {
            Addrs::Any => None,
            Addrs::Prefixes(p) => Some(p.iter().copied()),
        })
        .flatten()
        .chain(everything())
        .collect();
    targets.sort_by_key(sort_key);
    targets.dedup();
    let mut holding: Vec<Vec<RuleId>> = vec![Vec::new(); targets.len()];
    for (id, r) in rules.iter().enumerate() {
        let id = id as RuleId;
        match &r.dst {
            Addrs::Any => {
                b.spend(targets.len())?;
                holding.iter_mut().for_each(|l| l.push(id));
            }
            Addrs::Prefixes(prefixes) => {
                for q in prefixes {
                    // normalised prefixes are disjoint: a target lies inside at most one
                    let range = inside(&targets, q);
                    b.spend(range.len())?;
                    holding[range].iter_mut().for_each(|l| l.push(id));
                }
            }
        }
    }
    let mut cells = Vec::new();
    let mut cell_ids: HashMap<Vec<RuleId>, u32> = HashMap::new();
    let mut dst = PrefixTable::new();
    for (target, list) in targets.into_iter().zip(holding) {
        let id = match cell_ids.get(&list) {
            Some(&id) => id,
            None => {
                let cell = b.cell(&list)?;
                let id = cells.len() as u32;
                cells.push(cell);
                cell_ids.insert(list, id);
                id
            }
        };
        dst.insert(target, id);
    }
    let sources = rules
        .iter()
        .map(|r| match &r.src {
            Addrs::Any => None,
            Addrs::Prefixes(p) => {
                let mut t = PrefixTable::new();
                p.iter().for_each(|n| {
                    t.insert(*n, ());
                });
                Some(t)
            }
        })
        .collect();
    Some(Matcher {
        dst,
        cells,
        references: b.stored,
        lists: b.lists,
        outcomes: b.outcomes,
        sources,
        decides: rules.iter().map(|r| r.action.decides()).collect(),
    })
}

struct Builder<'r> {
    rules: &'r [CompiledRule],
    budget: usize,
    /// References written so far, kept or not.
    spent: usize,
    lists: Vec<List>,
    list_ids: HashMap<Vec<RuleId>, u32>,
    outcomes: Vec<Outcome>,
    outcome_ids: HashMap<Outcome, u32>,
    /// References kept in the index.
    stored: usize,
}

impl Builder<'_> {
    fn spend(&mut self, n: usize) -> Option<()> {
        self.spent += n;
        (self.spent <= self.budget).then_some(())
    }

    fn rule(&self, id: RuleId) -> &CompiledRule {
        &self.rules[id as usize]
    }

    /// The entry of one destination: its rules split by protocol class and port.
    fn cell(&mut self, list: &[RuleId]) -> Option<Cell> {
        let of = |b: &Self, want: Option<Protocol>| -> Vec<RuleId> {
            list.iter()
                .copied()
                .filter(|&id| {
                    let p = b.rule(id).protocol;
                    p.is_none() || (want.is_some() && p == want)
                })
                .collect()
        };
        let tcp = of(self, Some(Protocol::Tcp));
        let udp = of(self, Some(Protocol::Udp));
        let icmp = of(self, Some(Protocol::Icmp));
        let other = of(self, None);
        Some(Cell {
            tcp: self.ports(&tcp)?,
            udp: self.ports(&udp)?,
            icmp: self.list(&icmp)?,
            other: self.list(&other)?,
        })
    }

    /// Cuts the port space at every range's ends, sweeping once: the rules active in an
    /// interval are those without ports plus those whose range holds it.
    fn ports(&mut self, list: &[RuleId]) -> Option<Ports> {
        let portless: Vec<RuleId> = list
            .iter()
            .copied()
            .filter(|&id| self.rule(id).ports.is_empty())
            .collect();
        // (port, starts?, rule): a range opens at `first` and closes at `last + 1`
        let mut events: Vec<(u32, bool, RuleId)> = Vec::new();
        for &id in list {
            for r in &self.rule(id).ports {
                events.push((u32::from(r.first), true, id));
                events.push((u32::from(r.last) + 1, false, id));
            }
        }
        events.sort_unstable();
        let mut active: BTreeSet<RuleId> = BTreeSet::new();
        let mut starts = vec![0u16];
        let mut lists = vec![self.list(&portless)?];
        let mut i = 0;
        while i < events.len() {
            let at = events[i].0;
            while i < events.len() && events[i].0 == at {
                let (_, opens, id) = events[i];
                if opens {
                    active.insert(id);
                } else {
                    active.remove(&id);
                }
                i += 1;
            }
            if at > u32::from(u16::MAX) {
                break;
            }
            let mut here: Vec<RuleId> = portless.iter().chain(&active).copied().collect();
            here.sort_unstable();
            let id = self.list(&here)?;
            if lists.last() == Some(&id) {
                continue;
            }
            if starts.last() == Some(&(at as u16)) {
                *lists.last_mut().expect("one list per start") = id;
            } else {
                starts.push(at as u16);
                lists.push(id);
            }
        }
        Some(Ports {
            starts: starts.into(),
            lists: lists.into(),
            unknown: self.list(&portless)?,
        })
    }

    /// The id of a list of rules, stored once however many intervals share it.
    fn list(&mut self, rules: &[RuleId]) -> Option<u32> {
        self.spend(rules.len())?;
        if let Some(&id) = self.list_ids.get(rules) {
            return Some(id);
        }
        let list = if rules.len() <= SCAN_MAX {
            self.stored += rules.len();
            List::Scan(rules.into())
        } else {
            List::Indexed(self.source_table(rules)?)
        };
        let id = self.lists.len() as u32;
        self.lists.push(list);
        self.list_ids.insert(rules.to_vec(), id);
        Some(id)
    }

    /// A source table for a long list: every source prefix of its rules (plus the two
    /// everything-prefixes) → the first deciding rule holding it and the log rules before.
    fn source_table(&mut self, list: &[RuleId]) -> Option<PrefixTable<u32>> {
        let mut targets: Vec<IpNet> = list
            .iter()
            .filter_map(|&id| match &self.rule(id).src {
                Addrs::Any => None,
                Addrs::Prefixes(p) => Some(p.iter().copied()),
            })
            .flatten()
            .chain(everything())
            .collect();
        targets.sort_by_key(sort_key);
        targets.dedup();
        self.spend(targets.len())?;
        let mut found: Vec<(Option<RuleId>, Vec<RuleId>)> = vec![(None, Vec::new()); targets.len()];
        let mut open = targets.len();
        for &id in list {
            if open == 0 {
                break;
            }
            let rule = self.rule(id);
            let decides = rule.action.decides();
            let ranges: Vec<std::ops::Range<usize>> = match &rule.src {
                Addrs::Any => std::iter::once(0..targets.len()).collect(),
                Addrs::Prefixes(p) => p.iter().map(|q| inside(&targets, q)).collect(),
            };
            self.spend(ranges.iter().map(|r| r.len()).sum())?;
            for t in ranges.into_iter().flatten() {
                let (rule, logs) = &mut found[t];
                if rule.is_some() {
                    continue;
                }
                if decides {
                    *rule = Some(id);
                    open -= 1;
                } else {
                    logs.push(id);
                }
            }
        }
        let mut table = PrefixTable::new();
        for (target, (rule, logs)) in targets.into_iter().zip(found) {
            let outcome = Outcome {
                rule,
                logs: logs.into(),
            };
            let id = match self.outcome_ids.get(&outcome) {
                Some(&id) => id,
                None => {
                    self.stored += 1 + outcome.logs.len();
                    let id = self.outcomes.len() as u32;
                    self.outcomes.push(outcome.clone());
                    self.outcome_ids.insert(outcome, id);
                    id
                }
            };
            table.insert(target, id);
            self.stored += 1;
        }
        Some(table)
    }
}
