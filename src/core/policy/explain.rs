//! What `wiremesh policy explain -t FILE SRC DST[:PORT[/PROTO]]` answers: the decision the
//! rules give one packet, the rule that made it, the log rules it passed, and what stateful
//! tracking then does for its replies. SRC and DST are addresses or node names; a node stands
//! for its overlay address (the first host of its pod CIDR, in the family the other end uses).

use super::decide::{query_of, Judgement, Policy};
use super::flow::{Tuple, ICMP, ICMPV6, TCP, UDP};
use super::spec::{Action, Mode};
use crate::core::topology::{shown, Topology};
use std::fmt;
use std::net::IpAddr;

/// Why an endpoint cannot be explained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("'{}' is neither an address nor a node of the topology", shown(.0))]
    Unknown(String),
    #[error("'{}': {}", shown(.0), .1)]
    Syntax(String, &'static str),
    #[error("{0} and {1} are of different address families")]
    Families(IpAddr, IpAddr),
    #[error("node '{}' has no IPv6 pod CIDR", shown(.0))]
    NoV6(String),
}

/// A destination as written: host, then optionally `:PORT` and `/PROTO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: Option<u16>,
    /// `tcp` or `udp`; only with a port.
    pub proto: Option<u8>,
}

/// Reads `DST[:PORT[/PROTO]]`; an IPv6 address with a port is written `[addr]:port`.
pub fn parse_target(text: &str) -> Result<Target, ExplainError> {
    let err = |why| ExplainError::Syntax(text.to_string(), why);
    let (host, rest) = if let Some(inner) = text.strip_prefix('[') {
        let (host, rest) = inner.split_once(']').ok_or(err("missing ']'"))?;
        (host, rest.strip_prefix(':'))
    } else if text.parse::<IpAddr>().is_ok() {
        (text, None)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let (port, proto) = match rest {
        None => (None, None),
        Some(rest) => {
            let (port, proto) = match rest.split_once('/') {
                Some((port, proto)) => (port, Some(proto)),
                None => (rest, None),
            };
            let port = match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(err("the port must be 1-65535")),
            };
            let proto = match proto {
                None | Some("tcp") => TCP,
                Some("udp") => UDP,
                Some(_) => return Err(err("the protocol after '/' must be tcp or udp")),
            };
            (Some(port), Some(proto))
        }
    };
    if host.is_empty() {
        return Err(err("no address or node name"));
    }
    Ok(Target {
        host: host.to_string(),
        port,
        proto,
    })
}

/// An address, or a node's overlay address in the family wanted (`v6`), with the node's name.
fn locate(
    host: &str,
    topology: &Topology,
    v6: bool,
) -> Result<(IpAddr, Option<String>), ExplainError> {
    if let Ok(addr) = host.parse::<IpAddr>() {
        let owner = topology
            .nodes
            .iter()
            .find(|n| n.pod_cidrs().iter().any(|c| c.contains(&addr)))
            .map(|n| n.name.clone());
        return Ok((addr, owner));
    }
    let node = topology
        .nodes
        .iter()
        .find(|n| n.name == host)
        .ok_or_else(|| ExplainError::Unknown(host.to_string()))?;
    let addrs = node.overlay_addrs();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv6() == v6)
        .copied()
        .ok_or_else(|| ExplainError::NoV6(host.to_string()))?;
    Ok((addr, Some(node.name.clone())))
}

/// The packet to explain: SRC, DST as written, resolved against the topology. Without a port
/// the packet is an ICMP echo request, as `ping` sends.
pub fn packet(src: &str, dst: &Target, topology: &Topology) -> Result<Packet, ExplainError> {
    // the family: of whichever end is an address (IPv4 when both are names)
    let v6 = [src, dst.host.as_str()]
        .iter()
        .find_map(|h| h.parse::<IpAddr>().ok())
        .is_some_and(|a| a.is_ipv6());
    let (s, s_node) = locate(src, topology, v6)?;
    let (d, d_node) = locate(&dst.host, topology, v6)?;
    if s.is_ipv6() != d.is_ipv6() {
        return Err(ExplainError::Families(s, d));
    }
    let icmp = if d.is_ipv6() { ICMPV6 } else { ICMP };
    Ok(Packet {
        tuple: Tuple {
            src: s,
            dst: d,
            proto: dst.proto.unwrap_or(icmp),
            src_port: 0,
            dst_port: dst.port.unwrap_or(0),
        },
        src_node: s_node,
        dst_node: d_node,
    })
}

/// A packet to explain, with the nodes its addresses belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub tuple: Tuple,
    pub src_node: Option<String>,
    pub dst_node: Option<String>,
}

/// The answer.
#[derive(Debug, Clone)]
pub struct Explanation<'p> {
    pub packet: Packet,
    pub judgement: Judgement,
    policy: &'p Policy,
}

/// What the rules say about `packet`.
pub fn explain(policy: &Policy, packet: Packet) -> Explanation<'_> {
    let judgement = if policy.is_permissive() {
        Judgement {
            action: Action::Allow,
            rule: None,
            logs: Vec::new(),
        }
    } else {
        policy.judge(&query_of(&packet.tuple, true))
    };
    Explanation {
        packet,
        judgement,
        policy,
    }
}

impl Explanation<'_> {
    pub fn allows(&self) -> bool {
        self.judgement.allows()
    }
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.packet.tuple;
        let node =
            |n: &Option<String>| n.as_ref().map_or(String::new(), |n| format!(" (node {n})"));
        let what = match t.proto {
            TCP => format!(":{}/tcp", t.dst_port),
            UDP => format!(":{}/udp", t.dst_port),
            _ => " (ICMP echo request)".to_string(),
        };
        writeln!(
            f,
            "packet:   {}{} → {}{what}{}",
            t.src,
            node(&self.packet.src_node),
            t.dst,
            node(&self.packet.dst_node)
        )?;
        let p = self.policy;
        let j = &self.judgement;
        let decision = match j.action {
            Action::Allow => "allow".to_string(),
            Action::Deny { reject: true } => {
                "deny, answered with ICMP administratively prohibited".to_string()
            }
            _ => "deny (dropped)".to_string(),
        };
        writeln!(f, "decision: {decision}")?;
        let describe = |id: u32| {
            let r = &p.rules[id as usize];
            format!(
                "'{}' (order {}{})",
                r.name,
                r.order,
                r.line.map_or(String::new(), |l| format!(", line {l}"))
            )
        };
        match j.rule {
            Some(id) => writeln!(f, "rule:     {}", describe(id))?,
            None if p.is_permissive() => writeln!(
                f,
                "rule:     none: the topology has no policy, everything passes"
            )?,
            None => writeln!(
                f,
                "rule:     none matched: default-action = \"{}\"",
                if j.allows() { "allow" } else { "deny" }
            )?,
        }
        for &id in &j.logs {
            writeln!(f, "logged:   {}", describe(id))?;
        }
        if j.allows() && !p.is_permissive() {
            writeln!(
                f,
                "replies:  pass: the flow is tracked, and its replies need no rule"
            )?;
        }
        if p.mode == Mode::Audit && !j.allows() {
            writeln!(
                f,
                "mode:     audit: would be denied; passes and is counted as would_deny"
            )?;
        }
        Ok(())
    }
}
