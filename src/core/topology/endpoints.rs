//! A node's endpoints (docs/nat.md, section 1): the one-line `endpoint`, or an `endpoints` list
//! whose entries may carry a **scope**, a network in which only that address is reachable (a
//! VPC, a site's LAN). Peers that share a scope use the scoped address; every other peer uses
//! the unscoped one. Checked here, each problem naming the node, the line and the field.

use super::file::RawNode;
use super::shown::shown;
use super::validate::Collector;
use super::Endpoint;
use std::net::IpAddr;

/// At most this many entries in one node's `endpoints`.
pub const MAX_ENDPOINTS: usize = 8;

/// An address reachable only from inside `scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedEndpoint {
    pub scope: String,
    pub endpoint: Endpoint,
}

/// One address a peer may send to, with the scope it is reachable in (`None`: public). A
/// scoped candidate is **pinned**: roaming does not move a peer off it while it answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    #[serde(serialize_with = "as_text")]
    pub endpoint: Endpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

fn as_text<S: serde::Serializer>(e: &Endpoint, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

/// Whether a candidate list says no more than the one endpoint beside it (nothing scoped, no
/// fallback): plans then print as they did before scopes existed.
pub fn only_one_public(list: &[Candidate]) -> bool {
    list.len() <= 1 && list.iter().all(|c| c.scope.is_none())
}

/// Whether `s` is a scope name: 1-63 of `a-z`, `0-9`, `:`, `.`, `_`, `-` (`aws:vpc-1`).
pub(crate) fn valid_scope(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":._-".contains(&b))
}

/// Addresses that other networks cannot reach: RFC 1918, shared address space (RFC 6598),
/// link-local, unique local (RFC 4193). Given without a scope, such an address would be tried
/// from everywhere and answer from nowhere: a silent black hole.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private() || a.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s = a.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// The node's unscoped endpoint (what peers outside its scopes use) and its scoped ones.
pub(super) fn check_endpoints(
    n: &RawNode,
    name: &str,
    port: u16,
    c: &mut Collector,
) -> (Option<Endpoint>, Vec<ScopedEndpoint>) {
    let single = n.endpoint.as_ref().and_then(|e| {
        Endpoint::parse(e.get_ref(), port)
            .map_err(|err| {
                let line = c.lines.at(e);
                c.push(
                    line,
                    Some(name),
                    "endpoint",
                    format!("'{}': {err}", shown(e.get_ref())),
                );
            })
            .ok()
    });
    let Some(list) = &n.endpoints else {
        return (single, Vec::new());
    };
    let list_line = c.lines.at(list);
    if n.endpoint.is_some() {
        // `endpoint` is then the public address and the list adds scoped ones: a second
        // public address would leave it unclear which one peers outside the scopes use
        for e in list.get_ref().iter().filter(|e| e.scope.is_none()) {
            c.push(
                c.lines.at(&e.address),
                Some(name),
                "endpoints",
                format!(
                    "'{}' has no scope, and 'endpoint' already gives the public address: \
                     beside it, 'endpoints' lists scoped addresses only",
                    shown(e.address.get_ref())
                ),
            );
        }
    }
    let entries: Vec<EntryText> = list
        .get_ref()
        .iter()
        .map(|e| EntryText {
            address: e.address.get_ref(),
            scope: e.scope.as_ref().map(|s| s.get_ref().as_str()),
        })
        .collect();
    let checked = check_list(&entries, port);
    for p in checked.problems {
        let (line, field) = match p.part {
            Part::List => (list_line, "endpoints"),
            Part::Address(i) => (c.lines.at(&list.get_ref()[i].address), "endpoints.address"),
            Part::Scope(i) => match &list.get_ref()[i].scope {
                Some(scope) => (c.lines.at(scope), "endpoints.scope"),
                None => (c.lines.at(&list.get_ref()[i].address), "endpoints.scope"),
            },
        };
        let message = match p.first {
            Some(first) => {
                let first = c.lines.at(&list.get_ref()[first].address).unwrap_or(0);
                format!("{} (first at line {first})", p.message)
            }
            None => p.message,
        };
        c.push(line, Some(name), field, message);
    }
    (single.or(checked.endpoint), checked.scoped)
}

/// One entry of an endpoint list as written: the address and the scope (absent: public).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryText<'a> {
    pub address: &'a str,
    pub scope: Option<&'a str>,
}

/// Where in an endpoint list a problem is: the list itself, or an entry's address or scope (by
/// index), so that each reader names it in its own terms (a file's line, a record's field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    List,
    Address(usize),
    Scope(usize),
}

/// One problem of an endpoint list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListProblem {
    pub part: Part,
    pub message: String,
    /// For an address listed twice, the index of its first listing.
    pub first: Option<usize>,
}

/// An endpoint list, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedList {
    /// The first unscoped entry: what peers outside the node's scopes use.
    pub endpoint: Option<Endpoint>,
    pub scoped: Vec<ScopedEndpoint>,
    /// Every problem, in the list's order; the entries they concern are left out.
    pub problems: Vec<ListProblem>,
}

/// Checks an `endpoints` list by the rules of docs/nat.md, section 1 (at most
/// [`MAX_ENDPOINTS`], no address twice, scopes by their rule, no private address without a
/// scope). The one rule for the topology file and the registry's records, so both refuse the
/// same list in the same words.
pub fn check_list(entries: &[EntryText], port: u16) -> CheckedList {
    let mut out = CheckedList::default();
    let mut problem = |part, message, first| {
        out.problems.push(ListProblem {
            part,
            message,
            first,
        })
    };
    if entries.len() > MAX_ENDPOINTS {
        let msg = format!("{} entries; at most {MAX_ENDPOINTS}", entries.len());
        problem(Part::List, msg, None);
    }
    let mut unscoped = None;
    let mut scoped = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let text = entry.address;
        let endpoint = match Endpoint::parse(text, port) {
            Ok(e) => e,
            Err(err) => {
                problem(Part::Address(i), format!("'{}': {err}", shown(text)), None);
                continue;
            }
        };
        let key = endpoint.to_string();
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            let msg = format!("'{}' is listed twice", shown(text));
            problem(Part::Address(i), msg, Some(*first));
            continue;
        }
        seen.push((key, i));
        match entry.scope {
            Some(s) => {
                if !valid_scope(s) {
                    let msg = if s.is_empty() {
                        "empty scope: name the network this address is reachable in, or leave \
                         the scope out for a public address"
                            .to_string()
                    } else {
                        format!(
                            "'{}': a scope is 1-63 of a-z, 0-9, ':', '.', '_', '-'",
                            shown(s)
                        )
                    };
                    problem(Part::Scope(i), msg, None);
                    continue;
                }
                scoped.push(ScopedEndpoint {
                    scope: s.to_string(),
                    endpoint,
                });
            }
            None => {
                if let Endpoint::Addr(a) = &endpoint {
                    if is_private(a.ip()) {
                        let msg = format!(
                            "'{}' is a private address: give it the scope it is reachable in \
                             (aws:vpc-1, say), or it is tried from networks that cannot reach it",
                            shown(text)
                        );
                        problem(Part::Scope(i), msg, None);
                        continue;
                    }
                }
                // the first unscoped entry is the one peers outside the node's scopes use
                unscoped.get_or_insert(endpoint);
            }
        }
    }
    out.endpoint = unscoped;
    out.scoped = scoped;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_public_addresses_are_told_apart() {
        for (ip, private) in [
            ("10.0.1.5", true),
            ("172.16.0.1", true),
            ("172.32.0.1", false),
            ("192.168.1.1", true),
            ("100.64.0.1", true),
            ("100.128.0.1", false),
            ("169.254.1.1", true),
            ("203.0.113.5", false),
            ("fd00::1", true),
            ("fe80::1", true),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_private(ip.parse().unwrap()), private, "{ip}");
        }
    }

    #[test]
    fn scope_names_follow_their_rule() {
        for (s, ok) in [
            ("aws:vpc-1", true),
            ("onprem.fra_dc1", true),
            ("", false),
            ("AWS", false),
            ("vpc 1", false),
            (&"a".repeat(64), false),
        ] {
            assert_eq!(valid_scope(s), ok, "{s:?}");
        }
    }

    #[test]
    fn a_list_gives_its_first_unscoped_entry_and_every_scoped_one() {
        let entries = [
            EntryText {
                address: "10.0.1.5",
                scope: Some("aws:vpc-1"),
            },
            EntryText {
                address: "203.0.113.5:5000",
                scope: None,
            },
            EntryText {
                address: "gw.example.net",
                scope: None,
            },
        ];
        let c = check_list(&entries, 51820);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.endpoint.unwrap().to_string(), "203.0.113.5:5000");
        assert_eq!(c.scoped.len(), 1);
        assert_eq!(c.scoped[0].scope, "aws:vpc-1");
        assert_eq!(c.scoped[0].endpoint.to_string(), "10.0.1.5:51820");
    }

    #[test]
    fn a_bad_list_names_each_entry_and_its_part() {
        let e = |address, scope| EntryText { address, scope };
        let mut entries = vec![
            e("203.0.113.5", None),
            e("203.0.113.5:51820", Some("x")),
            e("10.0.0.1", Some("")),
            e("10.0.0.2", Some("VPC")),
            e("192.168.1.1", None),
            e("[fd00::1", Some("lan")),
        ];
        let c = check_list(&entries, 51820);
        let got: Vec<(Part, Option<usize>)> =
            c.problems.iter().map(|p| (p.part, p.first)).collect();
        assert_eq!(
            got,
            [
                (Part::Address(1), Some(0)),
                (Part::Scope(2), None),
                (Part::Scope(3), None),
                (Part::Scope(4), None),
                (Part::Address(5), None),
            ]
        );
        assert!(
            c.problems[0].message.contains("listed twice"),
            "{:?}",
            c.problems
        );
        assert!(
            c.problems[1].message.starts_with("empty scope"),
            "{:?}",
            c.problems
        );
        assert!(
            c.problems[3].message.contains("private address"),
            "{:?}",
            c.problems
        );
        assert_eq!(c.endpoint.unwrap().to_string(), "203.0.113.5:51820");
        assert!(c.scoped.is_empty());
        entries.extend((0..3).map(|_| e("198.51.100.1", None)));
        let c = check_list(&entries, 51820);
        assert_eq!(c.problems[0].part, Part::List);
        assert_eq!(c.problems[0].message, "9 entries; at most 8");
    }
}
