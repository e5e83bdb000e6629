//! What `wiremesh policy check` reports about a valid policy (docs/policy.md, section 7): rules
//! that can never decide (shadowed) or never match, denials that also cut DNS, and what a deny
//! over ICMP or the control port does and does not do, given that control messages are exempt.
//!
//! Shadowing is judged pairwise: a rule covered only by several earlier rules together is not
//! reported. Covering is judged prefix by prefix (`addrs.rs`).

use super::addrs::Addrs;
use super::compile::CompiledRule;
use super::decide::Policy;
use super::spec::{Action, DefaultAction, MeshPolicy, Mode, PortRange, Protocol, Selector};
use crate::core::topology::{shown, Document};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    Note,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub severity: Severity,
    /// The rule concerned, if any.
    pub policy: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.severity {
            Severity::Error => "error: ",
            Severity::Warning => "warning: ",
            Severity::Note => "note: ",
        })?;
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(p) = &self.policy {
            write!(f, "policy '{}': ", shown(p))?;
        }
        f.write_str(&self.message)
    }
}

/// The well-known port of DNS.
const DNS: u16 = 53;

/// Every finding about `policy`, compiled from `doc`. `control_port`: the UDP port of the
/// engine's in-tunnel control messages.
pub fn lint(doc: &Document, policy: &Policy, control_port: u16) -> Vec<Lint> {
    let spec = &doc.policy;
    let mut out = Vec::new();
    let mesh = &doc.topology.mesh;
    let mut cluster: Vec<IpNet> = vec![IpNet::V4(mesh.cluster_cidr)];
    cluster.extend(mesh.cluster_cidr_v6.map(IpNet::V6));
    let cluster = Addrs::Prefixes(super::addrs::normalise(cluster));
    for (j, (rule, written)) in policy.rules.iter().zip(&spec.rules).enumerate() {
        let at = |severity, message| Lint {
            severity,
            policy: Some(rule.name.clone()),
            line: rule.line,
            message,
        };
        let mut nothing = false;
        for (side, addrs, sel) in [
            ("from", &rule.src, &written.from),
            ("to", &rule.dst, &written.to),
        ] {
            if addrs.is_empty() {
                nothing = true;
                out.push(at(
                    Severity::Error,
                    format!(
                        "matches nothing: `{side}` picks no address ({}); no packet can match",
                        describe(sel.as_ref())
                    ),
                ));
            } else if !cluster.overlaps(addrs) {
                nothing = true;
                out.push(at(
                    Severity::Error,
                    format!(
                        "matches nothing: `{side}` ({}) lies outside the cluster CIDRs, and \
                         only addresses inside them cross the mesh",
                        describe(sel.as_ref())
                    ),
                ));
            }
        }
        if !nothing {
            let shadow = policy.rules[..j]
                .iter()
                .find(|e| e.action.decides() && covers(e, rule));
            if let Some(e) = shadow {
                let what = if rule.action.decides() {
                    "never decides"
                } else {
                    "never logs"
                };
                out.push(at(
                    Severity::Error,
                    format!(
                        "shadowed: {what}: policy '{}' (order {}{}) comes first and matches \
                         every packet this one matches",
                        shown(&e.name),
                        e.order,
                        e.line.map_or(String::new(), |l| format!(", line {l}"))
                    ),
                ));
                continue;
            }
        }
        if let Action::Deny { .. } = rule.action {
            if covers_port(rule, &[Protocol::Udp, Protocol::Tcp], DNS)
                && !allowed_before(&policy.rules[..j], rule)
            {
                out.push(at(
                    Severity::Warning,
                    format!(
                        "denies DNS (udp/tcp {DNS}) from {} to {}: pods there that resolve \
                         names through a resolver on the other side will fail; allow udp and \
                         tcp {DNS} in a rule before it if they do",
                        describe(written.from.as_ref()),
                        describe(written.to.as_ref())
                    ),
                ));
            }
            out.extend(
                exemption_notes(rule, control_port)
                    .into_iter()
                    .map(|m| at(Severity::Note, m)),
            );
        }
    }
    if spec.default_action == DefaultAction::Deny {
        let dns_allowed = policy
            .rules
            .iter()
            .any(|r| r.action == Action::Allow && covers_port(r, &[Protocol::Udp], DNS));
        let general = |severity, message| Lint {
            severity,
            policy: None,
            line: None,
            message,
        };
        if !dns_allowed {
            out.push(general(
                Severity::Warning,
                format!(
                    "default-action = \"deny\" blocks DNS (udp/tcp {DNS}) between nodes, and no \
                     rule allows udp {DNS}: a pod resolving names through a resolver on another \
                     node fails (as Calico's default-deny egress does silently)"
                ),
            ));
        }
        out.push(general(
            Severity::Note,
            format!(
                "default-action = \"deny\" does not block the mesh's own traffic: in-tunnel \
                 control messages (MTU probes, liveness probes, key announcements on udp \
                 {control_port}) are exempt from policy, handshakes are not inner packets, and \
                 ICMP errors of allowed flows (fragmentation needed, packet too big) pass"
            ),
        ));
    }
    out.extend(unused_sets(spec));
    if spec.mode == Mode::Audit {
        out.push(Lint {
            severity: Severity::Note,
            policy: None,
            line: None,
            message: "policy-mode = \"audit\": nothing is dropped; what would be denied is \
                      counted (would_deny) and passes"
                .into(),
        });
    }
    out
}

/// Whether `e` matches every packet `r` matches.
fn covers(e: &CompiledRule, r: &CompiledRule) -> bool {
    let protocol = e.protocol.is_none() || e.protocol == r.protocol;
    protocol && ports_cover(&e.ports, &r.ports) && e.src.covers(&r.src) && e.dst.covers(&r.dst)
}

/// Whether ranges `outer` (empty: every port) hold every port of `inner` (empty: every port).
fn ports_cover(outer: &[PortRange], inner: &[PortRange]) -> bool {
    if outer.is_empty() {
        return true;
    }
    let inner = if inner.is_empty() {
        &[PortRange {
            first: 0,
            last: u16::MAX,
        }][..]
    } else {
        inner
    };
    // merged ranges: each inner range must lie inside one outer range
    inner
        .iter()
        .all(|i| outer.iter().any(|o| o.first <= i.first && i.last <= o.last))
}

/// Whether `r` matches `port` of one of `protocols`.
fn covers_port(r: &CompiledRule, protocols: &[Protocol], port: u16) -> bool {
    let protocol = r.protocol.is_none_or(|p| protocols.contains(&p));
    protocol && (r.ports.is_empty() || r.ports.iter().any(|x| x.contains(port)))
}

/// Whether an earlier allow lets DNS (udp 53) through for all of `r`'s addresses.
fn allowed_before(earlier: &[CompiledRule], r: &CompiledRule) -> bool {
    earlier.iter().any(|e| {
        e.action == Action::Allow
            && covers_port(e, &[Protocol::Udp], DNS)
            && e.protocol != Some(Protocol::Tcp)
            && e.src.covers(&r.src)
            && e.dst.covers(&r.dst)
    })
}

/// What a deny over ICMP or the control port does not do.
fn exemption_notes(r: &CompiledRule, control_port: u16) -> Vec<String> {
    let mut notes = Vec::new();
    if r.protocol.is_none_or(|p| p == Protocol::Icmp) {
        notes.push(
            "denies ICMP (ping) but not path-MTU discovery: in-tunnel MTU probes are control \
             messages, exempt from policy, and ICMP errors of allowed flows (fragmentation \
             needed, packet too big) pass as related"
                .to_string(),
        );
    }
    if covers_port(r, &[Protocol::Udp], control_port) {
        notes.push(format!(
            "covers udp {control_port}, wiremesh's control port: control messages (MTU probes, \
             key announcements) are consumed by the engine before policy and are not affected"
        ));
    }
    notes
}

fn unused_sets(spec: &MeshPolicy) -> Vec<Lint> {
    let used: BTreeSet<&str> = spec
        .rules
        .iter()
        .flat_map(|r| [&r.from, &r.to])
        .flatten()
        .flat_map(|s| s.sets.iter().map(String::as_str))
        .collect();
    spec.cidr_sets
        .keys()
        .filter(|k| !used.contains(k.as_str()))
        .map(|k| Lint {
            severity: Severity::Warning,
            policy: None,
            line: None,
            message: format!("[cidr-set.{}] is named by no policy", shown(k)),
        })
        .collect()
}

/// A selector in words, for messages.
pub fn describe(sel: Option<&Selector>) -> String {
    let Some(sel) = sel else {
        return "any address".into();
    };
    let mut parts = Vec::new();
    if let Some(m) = &sel.nodes {
        let mut attrs: Vec<String> = [
            ("name", &m.name),
            ("cloud", &m.cloud),
            ("region", &m.region),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} '{}'", shown(v))))
        .collect();
        attrs.extend(
            m.labels
                .iter()
                .map(|(k, v)| format!("{}={}", shown(k), shown(v))),
        );
        parts.push(format!("nodes with {}", attrs.join(", ")));
    }
    if !sel.cidrs.is_empty() {
        let cidrs: Vec<String> = sel.cidrs.iter().map(|c| c.to_string()).collect();
        parts.push(cidrs.join(", "));
    }
    for s in &sel.sets {
        parts.push(format!("cidr-set '{}'", shown(s)));
    }
    parts.join(" or ")
}
