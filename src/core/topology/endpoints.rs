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
        c.push(
            list_line,
            Some(name),
            "endpoints",
            "give either 'endpoint' or 'endpoints', not both".into(),
        );
    }
    if list.get_ref().len() > MAX_ENDPOINTS {
        c.push(
            list_line,
            Some(name),
            "endpoints",
            format!("{} entries; at most {MAX_ENDPOINTS}", list.get_ref().len()),
        );
    }
    let mut unscoped = None;
    let mut scoped = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for entry in list.get_ref() {
        let line = c.lines.at(&entry.address);
        let text = entry.address.get_ref();
        let endpoint = match Endpoint::parse(text, port) {
            Ok(e) => e,
            Err(err) => {
                let msg = format!("'{}': {err}", shown(text));
                c.push(line, Some(name), "endpoints.address", msg);
                continue;
            }
        };
        let key = endpoint.to_string();
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            let msg = format!("'{}' is listed twice (first at line {first})", shown(text));
            c.push(line, Some(name), "endpoints.address", msg);
            continue;
        }
        seen.push((key, line.unwrap_or(0)));
        match &entry.scope {
            Some(scope) => {
                let s = scope.get_ref();
                if !valid_scope(s) {
                    let msg = if s.is_empty() {
                        "empty scope: name the network this address is reachable in, or leave \
                         'scope' out for a public address"
                            .to_string()
                    } else {
                        format!(
                            "'{}': a scope is 1-63 of a-z, 0-9, ':', '.', '_', '-'",
                            shown(s)
                        )
                    };
                    c.push(c.lines.at(scope), Some(name), "endpoints.scope", msg);
                    continue;
                }
                scoped.push(ScopedEndpoint {
                    scope: s.clone(),
                    endpoint,
                });
            }
            None => {
                if let Endpoint::Addr(a) = &endpoint {
                    if is_private(a.ip()) {
                        let msg = format!(
                            "'{}' is a private address: give it the 'scope' it is reachable \
                             in (scope = \"aws:vpc-1\"), or it is tried from networks that \
                             cannot reach it",
                            shown(text)
                        );
                        c.push(line, Some(name), "endpoints.scope", msg);
                        continue;
                    }
                }
                // the first unscoped entry is the one peers outside the node's scopes use
                unscoped.get_or_insert(endpoint);
            }
        }
    }
    (single.or(unscoped), scoped)
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
}
