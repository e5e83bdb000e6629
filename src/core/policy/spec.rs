//! The checked policy: what a topology's `[[policy]]` rules, `[cidr-set]`s, node `labels`,
//! `default-action` and `policy-mode` say once every value is known to be valid
//! (`core/topology/policies.rs` makes it). Nothing here is resolved to addresses yet: that
//! needs the nodes, and is `compile.rs`'s job.

use ipnet::IpNet;
use std::collections::BTreeMap;

/// A rule's position in a compiled policy: rules are numbered in order (lowest `order` first),
/// so a smaller id always decides before a larger one.
pub type RuleId = u32;

/// A node's labels, key → value.
pub type Labels = BTreeMap<String, String>;

/// What a packet no `allow` or `deny` rule matches gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultAction {
    #[default]
    Allow,
    Deny,
}

/// Whether denials drop packets or are only counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Enforce,
    /// Everything is judged and counted, nothing is dropped: a trial of a policy.
    Audit,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// `reject`: answer with ICMP administratively prohibited instead of dropping silently.
    Deny {
        reject: bool,
    },
    /// Count (and log) the packet, then go on to the next rule: never decides.
    Log,
}

impl Action {
    /// Whether the rule ends the search (allow or deny).
    pub fn decides(self) -> bool {
        !matches!(self, Action::Log)
    }

    /// The word the file uses.
    pub fn word(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny { .. } => "deny",
            Action::Log => "log",
        }
    }
}

/// The protocols a rule can name. `Icmp` covers ICMP and ICMPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    pub fn word(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// Destination ports `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// The node half of a selector: every attribute given must hold for a node to be picked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMatch {
    pub name: Option<String>,
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub labels: Labels,
}

impl NodeMatch {
    /// Whether a node with these attributes is picked.
    pub fn picks(&self, name: &str, cloud: &str, region: &str, labels: Option<&Labels>) -> bool {
        let same = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        same(&self.name, name)
            && same(&self.cloud, cloud)
            && same(&self.region, region)
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }
}

/// The addresses a `from` or `to` stands for: the picked nodes' pod CIDRs, plus `cidrs`, plus
/// the named sets' CIDRs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// `None` when the selector names no node attribute (only CIDRs and sets).
    pub nodes: Option<NodeMatch>,
    pub cidrs: Vec<IpNet>,
    pub sets: Vec<String>,
}

/// One checked `[[policy]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub order: u32,
    pub action: Action,
    /// `None`: any source.
    pub from: Option<Selector>,
    /// `None`: any destination.
    pub to: Option<Selector>,
    /// `None`: every protocol.
    pub protocol: Option<Protocol>,
    /// Empty: every port. Sorted, overlapping and adjacent ranges merged.
    pub ports: Vec<PortRange>,
    /// The line of the rule's `name`, for messages.
    pub line: Option<usize>,
}

/// A topology's whole policy, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshPolicy {
    pub default_action: DefaultAction,
    pub mode: Mode,
    /// `[cidr-set.NAME]` → its CIDRs.
    pub cidr_sets: BTreeMap<String, Vec<IpNet>>,
    /// Node name → its labels (nodes without labels are absent).
    pub labels: BTreeMap<String, Labels>,
    /// Sorted by `order`.
    pub rules: Vec<Rule>,
}

impl MeshPolicy {
    /// Whether nothing is ever denied: no rule and a default of allow. Such a policy is not
    /// enforced at all (no check, no connection tracking).
    pub fn is_permissive(&self) -> bool {
        self.rules.is_empty() && self.default_action == DefaultAction::Allow
    }
}

/// Sorts `ranges` and merges overlapping and adjacent ones, so containment checks and the
/// port index see each port once.
pub fn merge_ports(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort();
    let mut out: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if u32::from(r.first) <= u32::from(last.last) + 1 => {
                last.last = last.last.max(r.last);
            }
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    #[test]
    fn overlapping_and_adjacent_port_ranges_merge_into_one() {
        let merged = merge_ports(vec![
            r(8000, 8100),
            r(443, 443),
            r(8101, 8200),
            r(8050, 8060),
        ]);
        assert_eq!(merged, vec![r(443, 443), r(8000, 8200)]);
        assert_eq!(
            merge_ports(vec![r(1, 65535), r(65535, 65535)]),
            vec![r(1, 65535)]
        );
    }

    #[test]
    fn a_node_match_needs_every_attribute_and_label() {
        let m = NodeMatch {
            region: Some("us-east-1".into()),
            labels: [("app".to_string(), "db".to_string())].into(),
            ..NodeMatch::default()
        };
        let db: Labels = [("app".to_string(), "db".to_string())].into();
        let web: Labels = [("app".to_string(), "web".to_string())].into();
        assert!(m.picks("n1", "aws", "us-east-1", Some(&db)));
        assert!(!m.picks("n1", "aws", "us-east-1", Some(&web)));
        assert!(!m.picks("n1", "aws", "us-east-1", None));
        assert!(!m.picks("n1", "aws", "eu-west-1", Some(&db)));
        assert!(NodeMatch::default().picks("any", "c", "r", None));
    }
}
