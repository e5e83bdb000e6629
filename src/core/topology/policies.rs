//! The policy part of a topology file checked: `default-action`, `policy-mode`, `[cidr-set]`s,
//! node `labels` and each `[[policy]]`, into a [`MeshPolicy`]. Problems go to the same
//! collector as the rest of the file, naming the policy (or node) and the field, so one run
//! lists everything wrong. The format is documented in docs/policy.md.

use super::file::{RawCidrSet, RawPolicy, RawPolicyPart, RawSelector, RawTopology};
use super::nodes::{valid_name, NAME_RULE};
use super::shown::shown;
use super::validate::{parse_cidr, Collector};
use crate::constants::{POLICY_MAX_CIDRS, POLICY_MAX_LABELS, POLICY_MAX_PORTS, POLICY_MAX_RULES};
use crate::core::policy::labels::{key_problem, value_problem, BUILT_IN};
use crate::core::policy::spec::{
    merge_ports, Action, DefaultAction, Labels, MeshPolicy, Mode, NodeMatch, PortRange, Protocol,
    Rule, Selector,
};
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use toml::Spanned;

/// The policy fields, borrowed from a whole file or from a policy part alone, so both are checked
/// by one code path.
struct PolicyFields<'a> {
    default_action: Option<&'a Spanned<String>>,
    policy_mode: Option<&'a Spanned<String>>,
    cidr_set: &'a BTreeMap<String, Spanned<RawCidrSet>>,
    policy: &'a [Spanned<RawPolicy>],
}

/// Checks every policy part of `raw`; what is wrong is in `c` afterwards.
pub(super) fn check_policy(raw: &RawTopology, c: &mut Collector) -> MeshPolicy {
    let fields = PolicyFields {
        default_action: raw.default_action.as_ref(),
        policy_mode: raw.policy_mode.as_ref(),
        cidr_set: &raw.cidr_set,
        policy: &raw.policy,
    };
    check_fields(&fields, |c| check_labels(raw, c), c)
}

/// Checks a policy part alone (the registry's policy key). It has no nodes, so no labels: the
/// caller adds the labels the nodes carry where they are kept (the registry's records).
pub(super) fn check_part(raw: &RawPolicyPart, c: &mut Collector) -> MeshPolicy {
    let fields = PolicyFields {
        default_action: raw.default_action.as_ref(),
        policy_mode: raw.policy_mode.as_ref(),
        cidr_set: &raw.cidr_set,
        policy: &raw.policy,
    };
    check_fields(&fields, |_| BTreeMap::new(), c)
}

/// `labels` checks the nodes' labels, between the sets and the rules, so problems are listed in
/// the order a file is usually written.
fn check_fields(
    raw: &PolicyFields,
    labels: impl FnOnce(&mut Collector) -> BTreeMap<String, Labels>,
    c: &mut Collector,
) -> MeshPolicy {
    let default_action = raw
        .default_action
        .and_then(|s| {
            let line = c.lines.at(s);
            match s.get_ref().as_str() {
                "allow" => Some(DefaultAction::Allow),
                "deny" => Some(DefaultAction::Deny),
                other => {
                    c.push(
                        line,
                        None,
                        "default-action",
                        format!("'{}' is not an action here (allow or deny)", shown(other)),
                    );
                    None
                }
            }
        })
        .unwrap_or_default();
    let mode = raw
        .policy_mode
        .and_then(|s| {
            let line = c.lines.at(s);
            match s.get_ref().as_str() {
                "enforce" => Some(Mode::Enforce),
                "audit" => Some(Mode::Audit),
                other => {
                    c.push(
                        line,
                        None,
                        "policy-mode",
                        format!("'{}' is not a policy mode (enforce or audit)", shown(other)),
                    );
                    None
                }
            }
        })
        .unwrap_or_default();
    let cidr_sets = check_sets(raw, c);
    let labels = labels(c);
    let rules = check_rules(raw, c);
    MeshPolicy {
        default_action,
        mode,
        cidr_sets,
        labels,
        rules,
    }
}

fn check_sets(raw: &PolicyFields, c: &mut Collector) -> BTreeMap<String, Vec<IpNet>> {
    let mut sets = BTreeMap::new();
    for (name, set) in raw.cidr_set {
        let line = c.lines.at(set);
        let field = format!("cidr-set.{}", shown(name));
        if !valid_name(name) {
            c.push(line, None, &field, format!("the set's name {NAME_RULE}"));
        }
        let cidrs = cidr_list(c, &set.get_ref().cidrs, None, &format!("{field}.cidrs"));
        if set.get_ref().cidrs.is_empty() {
            c.push(line, None, &field, "a set needs at least one CIDR".into());
        }
        sets.insert(name.clone(), cidrs);
    }
    sets
}

/// IPv4 or IPv6 CIDRs, each a network address; at most [`POLICY_MAX_CIDRS`].
fn cidr_list(
    c: &mut Collector,
    list: &[Spanned<String>],
    policy: Option<&str>,
    field: &str,
) -> Vec<IpNet> {
    if list.len() > POLICY_MAX_CIDRS {
        let line = c.lines.at(&list[0]);
        c.problem(
            line,
            None,
            policy,
            field,
            format!("{} CIDRs; at most {POLICY_MAX_CIDRS}", list.len()),
        );
        return Vec::new();
    }
    list.iter()
        .filter_map(|s| {
            let line = c.lines.at(s);
            parse_cidr::<IpNet>(s.get_ref())
                .map_err(|msg| c.problem(line, None, policy, field, msg))
                .ok()
        })
        .collect()
}

fn check_labels(raw: &RawTopology, c: &mut Collector) -> BTreeMap<String, Labels> {
    let mut all = BTreeMap::new();
    for node in &raw.node {
        let node = node.get_ref();
        let Some(labels) = &node.labels else { continue };
        let name = node.name.get_ref();
        if labels.len() > POLICY_MAX_LABELS {
            let line = c.lines.at(&node.name);
            c.push(
                line,
                Some(name),
                "labels",
                format!("{} labels; at most {POLICY_MAX_LABELS}", labels.len()),
            );
            continue;
        }
        let mut checked = Labels::new();
        for (key, value) in labels {
            let line = c.lines.at(value);
            let field = format!("labels.{}", shown(key));
            if let Some(msg) = key_problem(key).or_else(|| value_problem(value.get_ref())) {
                c.push(line, Some(name), &field, msg);
            }
            checked.insert(key.clone(), value.get_ref().clone());
        }
        if !checked.is_empty() {
            all.insert(name.clone(), checked);
        }
    }
    all
}

fn check_rules(raw: &PolicyFields, c: &mut Collector) -> Vec<Rule> {
    if raw.policy.len() > POLICY_MAX_RULES {
        let line = c.lines.at(&raw.policy[0]);
        c.problem(
            line,
            None,
            None,
            "policy",
            format!("{} policies; at most {POLICY_MAX_RULES}", raw.policy.len()),
        );
        return Vec::new();
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut orders: HashMap<u32, (&str, usize)> = HashMap::new();
    let mut rules = Vec::with_capacity(raw.policy.len());
    for p in raw.policy {
        let p = p.get_ref();
        let name = p.name.get_ref().as_str();
        let line = c.lines.at(&p.name);
        let at = line.unwrap_or(0);
        if !valid_name(name) {
            c.problem(line, None, Some(name), "name", NAME_RULE.into());
        }
        if let Some(first) = names.insert(name, at) {
            c.problem(
                line,
                None,
                Some(name),
                "name",
                format!("duplicate policy name (first at line {first})"),
            );
        }
        let order_line = c.lines.at(&p.order);
        let order = match u32::try_from(*p.order.get_ref()) {
            Ok(o) => {
                if let Some((other, other_line)) = orders.insert(o, (name, order_line.unwrap_or(0)))
                {
                    c.problem(
                        order_line,
                        None,
                        Some(name),
                        "order",
                        format!(
                            "order {o} is also policy '{}''s (line {other_line}): orders are \
                             unique, so which rule decides never depends on the file's order",
                            shown(other)
                        ),
                    );
                }
                Some(o)
            }
            Err(_) => {
                c.problem(
                    order_line,
                    None,
                    Some(name),
                    "order",
                    format!("{} is outside 0-{}", p.order.get_ref(), u32::MAX),
                );
                None
            }
        };
        let rule = check_rule(p, name, line, order, raw, c);
        rules.extend(rule);
    }
    rules.sort_by_key(|r| r.order);
    rules
}

/// One rule; `None` when any of its parts is wrong (the problem is recorded).
fn check_rule(
    p: &RawPolicy,
    name: &str,
    line: Option<usize>,
    order: Option<u32>,
    raw: &PolicyFields,
    c: &mut Collector,
) -> Option<Rule> {
    let before = c.problems.len();
    let reject = p.reject.as_ref().map(|r| *r.get_ref());
    let action_line = c.lines.at(&p.action);
    let action = match p.action.get_ref().as_str() {
        "allow" => Some(Action::Allow),
        "deny" => Some(Action::Deny {
            reject: reject.unwrap_or(false),
        }),
        "log" => Some(Action::Log),
        other => {
            c.problem(
                action_line,
                None,
                Some(name),
                "action",
                format!("'{}' is not an action (allow, deny or log)", shown(other)),
            );
            None
        }
    };
    if let (Some(r), Some(a)) = (&p.reject, action) {
        if *r.get_ref() && !matches!(a, Action::Deny { .. }) {
            let line = c.lines.at(r);
            c.problem(
                line,
                None,
                Some(name),
                "reject",
                format!("only a deny rejects; this rule's action is '{}'", a.word()),
            );
        }
    }
    let from = p.from.as_ref().map(|s| selector(c, s, name, "from", raw));
    let to = p.to.as_ref().map(|s| selector(c, s, name, "to", raw));
    let protocol = p.protocol.as_ref().and_then(|s| {
        let line = c.lines.at(s);
        match s.get_ref().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "icmp" => Some(Protocol::Icmp),
            other => {
                c.problem(
                    line,
                    None,
                    Some(name),
                    "protocol",
                    format!("'{}' is not a protocol (tcp, udp or icmp)", shown(other)),
                );
                None
            }
        }
    });
    let ports = p
        .ports
        .as_ref()
        .map(|list| ports(c, list, name, p.protocol.is_some(), protocol))
        .unwrap_or_default();
    if c.problems.len() != before {
        return None;
    }
    Some(Rule {
        name: name.to_string(),
        order: order?,
        action: action?,
        from: from.flatten(),
        to: to.flatten(),
        protocol,
        ports,
        line,
    })
}

/// Destination ports: numbers and `"N"` or `"N-M"` strings, with a protocol that has ports.
fn ports(
    c: &mut Collector,
    list: &Spanned<Vec<Spanned<toml::Value>>>,
    policy: &str,
    protocol_given: bool,
    protocol: Option<Protocol>,
) -> Vec<PortRange> {
    let line = c.lines.at(list);
    let values = list.get_ref();
    if values.is_empty() {
        c.problem(
            line,
            None,
            Some(policy),
            "ports",
            "an empty list; leave `ports` out to mean every port".into(),
        );
    }
    if values.len() > POLICY_MAX_PORTS {
        c.problem(
            line,
            None,
            Some(policy),
            "ports",
            format!("{} entries; at most {POLICY_MAX_PORTS}", values.len()),
        );
        return Vec::new();
    }
    match protocol {
        Some(Protocol::Tcp | Protocol::Udp) => {}
        // a protocol that is itself wrong has its own problem already
        _ if protocol_given && protocol.is_none() => {}
        other => c.problem(
            line,
            None,
            Some(policy),
            "ports",
            format!(
                "ports need protocol = \"tcp\" or \"udp\"{}",
                other.map_or(String::new(), |p| format!(", not \"{}\"", p.word()))
            ),
        ),
    }
    let mut ranges = Vec::with_capacity(values.len());
    for v in values {
        let line = c.lines.at(v);
        match port_range(v.get_ref()) {
            Ok(r) => ranges.push(r),
            Err(msg) => c.problem(line, None, Some(policy), "ports", msg),
        }
    }
    merge_ports(ranges)
}

fn port_range(v: &toml::Value) -> Result<PortRange, String> {
    let port = |text: &str| -> Result<u16, String> {
        match text.trim().parse::<u32>() {
            Ok(p @ 1..=65_535) => Ok(p as u16),
            Ok(p) => Err(format!("{p} is not a port (1-65535)")),
            Err(_) => Err(format!("'{}' is not a port (1-65535)", shown(text))),
        }
    };
    match v {
        toml::Value::Integer(i) => match u16::try_from(*i) {
            Ok(p) if p > 0 => Ok(PortRange { first: p, last: p }),
            _ => Err(format!("{i} is not a port (1-65535)")),
        },
        toml::Value::String(s) => match s.split_once('-') {
            None => port(s).map(|p| PortRange { first: p, last: p }),
            Some((a, b)) => {
                let (first, last) = (port(a)?, port(b)?);
                if first > last {
                    return Err(format!(
                        "\"{}\" is not a port range: {first} > {last}",
                        shown(s)
                    ));
                }
                Ok(PortRange { first, last })
            }
        },
        other => Err(format!(
            "{} is not a port: give a number (5432) or a range (\"8000-8100\")",
            other.type_str()
        )),
    }
}

/// A `from` or `to` table.
fn selector(
    c: &mut Collector,
    s: &Spanned<RawSelector>,
    policy: &str,
    side: &str,
    raw: &PolicyFields,
) -> Option<Selector> {
    let line = c.lines.at(s);
    let sel = s.get_ref();
    let before = c.problems.len();
    if sel.name.is_none()
        && sel.cloud.is_none()
        && sel.region.is_none()
        && sel.labels.is_none()
        && sel.cidrs.is_none()
        && sel.cidr_sets.is_none()
    {
        c.problem(
            line,
            None,
            Some(policy),
            side,
            format!("an empty selector; leave `{side}` out to mean any address"),
        );
        return None;
    }
    let attribute = |c: &mut Collector, value: &Option<Spanned<String>>, key: &str| {
        let v = value.as_ref()?;
        if !valid_name(v.get_ref()) {
            let line = c.lines.at(v);
            c.problem(
                line,
                None,
                Some(policy),
                &format!("{side}.{key}"),
                format!("'{}' {NAME_RULE}", shown(v.get_ref())),
            );
        }
        Some(v.get_ref().clone())
    };
    let name = attribute(c, &sel.name, "name");
    let cloud = attribute(c, &sel.cloud, "cloud");
    let region = attribute(c, &sel.region, "region");
    let mut labels = Labels::new();
    if let Some(given) = &sel.labels {
        if given.is_empty() {
            c.problem(
                line,
                None,
                Some(policy),
                &format!("{side}.labels"),
                "an empty table; leave `labels` out".into(),
            );
        }
        for (key, value) in given {
            let line = c.lines.at(value);
            let field = format!("{side}.labels.{}", shown(key));
            let problem = if BUILT_IN.contains(&key.as_str()) {
                Some(format!(
                    "'{key}' is a built-in attribute, not a label: write `{key} = \"…\"` in the \
                     selector itself"
                ))
            } else {
                key_problem(key).or_else(|| value_problem(value.get_ref()))
            };
            if let Some(msg) = problem {
                c.problem(line, None, Some(policy), &field, msg);
            }
            labels.insert(key.clone(), value.get_ref().clone());
        }
    }
    let cidrs = match &sel.cidrs {
        Some(list) if list.is_empty() => {
            c.problem(
                line,
                None,
                Some(policy),
                &format!("{side}.cidrs"),
                "an empty list; leave `cidrs` out".into(),
            );
            Vec::new()
        }
        Some(list) => cidr_list(c, list, Some(policy), &format!("{side}.cidrs")),
        None => Vec::new(),
    };
    let mut sets = Vec::new();
    for set in sel.cidr_sets.iter().flatten() {
        if raw.cidr_set.contains_key(set.get_ref()) {
            sets.push(set.get_ref().clone());
            continue;
        }
        let line = c.lines.at(set);
        let known: Vec<String> = raw.cidr_set.keys().map(|k| shown(k)).collect();
        c.problem(
            line,
            None,
            Some(policy),
            &format!("{side}.cidr-sets"),
            if known.is_empty() {
                format!(
                    "no [cidr-set.{}]; the file defines no set",
                    shown(set.get_ref())
                )
            } else {
                format!(
                    "no [cidr-set.{}]; sets: {}",
                    shown(set.get_ref()),
                    known.join(", ")
                )
            },
        );
    }
    if sel.cidr_sets.as_ref().is_some_and(Vec::is_empty) {
        c.problem(
            line,
            None,
            Some(policy),
            &format!("{side}.cidr-sets"),
            "an empty list; leave `cidr-sets` out".into(),
        );
    }
    let picks_nodes =
        sel.name.is_some() || sel.cloud.is_some() || sel.region.is_some() || sel.labels.is_some();
    (c.problems.len() == before).then(|| Selector {
        nodes: picks_nodes.then_some(NodeMatch {
            name,
            cloud,
            region,
            labels,
        }),
        cidrs,
        sets,
    })
}
