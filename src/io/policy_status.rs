//! The network policy as `wiremesh status` shows it: what the daemon sends over its control
//! socket (JSON), and its lines in the human output. Prometheus reads the same counters
//! (`io/metrics/policy.rs`).

use serde::{Deserialize, Serialize};

/// The policy in force on one node, with its counters and its connection table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// `enforce` or `audit`.
    pub mode: String,
    /// `allow` or `deny`.
    pub default_action: String,
    /// 0 before any policy; one more at each reload that changed it.
    pub generation: u32,
    /// False for a mesh without rules and with default allow: nothing is judged.
    pub enforced: bool,
    pub rules: Vec<RuleHits>,
    /// New flows the default action decided.
    pub default_allowed: u64,
    pub default_denied: u64,
    /// Audit mode: packets passed that enforcement would have denied.
    pub would_deny: u64,
    /// ICMP errors passed because their flow is tracked (path MTU discovery among them).
    pub related: u64,
    /// New flows denied for want of room in the connection table (failed closed).
    pub overflow: u64,
    /// Packets of flows a reload revoked.
    pub revoked: u64,
    pub unreadable: u64,
    pub conntrack_entries: usize,
    pub conntrack_capacity: usize,
    pub conntrack_evicted: u64,
}

/// One rule and the packets it decided (or logged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleHits {
    pub name: String,
    pub action: String,
    pub hits: u64,
}

impl PolicyStatus {
    /// Lines for `wiremesh status`: a summary, then one line per rule with its hits.
    pub fn render(&self) -> String {
        if !self.enforced {
            return "policy none (everything passes)\n".to_string();
        }
        let mut out = format!(
            "policy {}  default {}  generation {}  conntrack {}/{}  overflow {}  revoked {}{}\n",
            self.mode,
            self.default_action,
            self.generation,
            self.conntrack_entries,
            self.conntrack_capacity,
            self.overflow,
            self.revoked,
            if self.mode == "audit" {
                format!("  would deny {}", self.would_deny)
            } else {
                String::new()
            }
        );
        let width = self.rules.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in &self.rules {
            out.push_str(&format!(
                "  {:<width$}  {:<6}  {} hits\n",
                r.name, r.action, r.hits
            ));
        }
        out.push_str(&format!(
            "  {:<width$}  {:<6}  {} hits\n",
            "(default)",
            self.default_action,
            self.default_allowed + self.default_denied
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enforced_policy_shows_each_rule_with_its_hits_and_the_default_last() {
        let s = PolicyStatus {
            mode: "enforce".into(),
            default_action: "deny".into(),
            generation: 2,
            enforced: true,
            rules: vec![
                RuleHits {
                    name: "api".into(),
                    action: "allow".into(),
                    hits: 7,
                },
                RuleHits {
                    name: "no-db-from-eu".into(),
                    action: "deny".into(),
                    hits: 3,
                },
            ],
            default_denied: 4,
            conntrack_entries: 5,
            conntrack_capacity: 65_536,
            ..Default::default()
        };
        let text = s.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("policy enforce  default deny  generation 2  conntrack 5/65536")
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["api", "allow", "7", "hits"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["no-db-from-eu", "deny", "3", "hits"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["(default)", "deny", "4", "hits"]
        );
    }

    #[test]
    fn a_mesh_without_policy_says_everything_passes() {
        assert_eq!(
            PolicyStatus::default().render(),
            "policy none (everything passes)\n"
        );
    }
}
