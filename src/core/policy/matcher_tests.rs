//! The index answers exactly what a scan of the rules in order answers, for random policies
//! (short lists scanned, long ones indexed, IPv4 and IPv6, ports, protocols, log rules), and
//! gives up past its budget instead of growing without bound.

use super::addrs::{normalise, Addrs};
use super::compile::{compile_with_budget, CompiledRule};
use super::index::build;
use super::matcher::{ProtoClass, Query};
use super::spec::{merge_ports, Action, PortRange, Protocol, RuleId};
use super::testing::document;
use ipnet::IpNet;
use std::net::IpAddr;

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PREFIXES: &[&str] = &[
    "10.0.0.0/8",
    "10.244.0.0/16",
    "10.244.1.0/24",
    "10.244.2.0/24",
    "10.244.1.128/25",
    "10.244.1.7/32",
    "192.0.2.0/24",
    "fd00::/8",
    "fd00:1::/64",
    "fd00:1::7/128",
];

fn addrs(rng: &mut XorShift) -> Addrs {
    if rng.below(4) == 0 {
        return Addrs::Any;
    }
    let n = 1 + rng.below(3);
    let nets: Vec<IpNet> = (0..n)
        .map(|_| {
            PREFIXES[rng.below(PREFIXES.len() as u64) as usize]
                .parse()
                .unwrap()
        })
        .collect();
    Addrs::Prefixes(normalise(nets))
}

fn rule(rng: &mut XorShift, i: usize) -> CompiledRule {
    let protocol = match rng.below(4) {
        0 => Some(Protocol::Tcp),
        1 => Some(Protocol::Udp),
        2 => Some(Protocol::Icmp),
        _ => None,
    };
    let ports = match protocol {
        Some(Protocol::Tcp | Protocol::Udp) if rng.below(3) != 0 => {
            let ranges = (0..1 + rng.below(3))
                .map(|_| {
                    let first = 1 + rng.below(100) as u16;
                    PortRange {
                        first,
                        last: first + rng.below(20) as u16,
                    }
                })
                .collect();
            merge_ports(ranges)
        }
        _ => Vec::new(),
    };
    CompiledRule {
        name: format!("r{i}"),
        order: i as u32,
        action: match rng.below(5) {
            0 => Action::Log,
            1 | 2 => Action::Allow,
            _ => Action::Deny { reject: false },
        },
        protocol,
        ports,
        src: addrs(rng),
        dst: addrs(rng),
        line: None,
    }
}

fn address(rng: &mut XorShift) -> IpAddr {
    let pool = [
        "10.244.1.7",
        "10.244.1.200",
        "10.244.1.9",
        "10.244.2.3",
        "10.244.9.9",
        "10.9.9.9",
        "192.0.2.77",
        "203.0.113.1",
        "fd00:1::7",
        "fd00:1::8",
        "fd00:2::1",
        "2001:db8::1",
    ];
    pool[rng.below(pool.len() as u64) as usize].parse().unwrap()
}

/// What a scan in order answers: the first deciding rule, and the log rules before it.
fn scan(rules: &[CompiledRule], q: &Query) -> (Option<RuleId>, Vec<RuleId>) {
    let mut logs = Vec::new();
    for (id, r) in rules.iter().enumerate() {
        let proto = matches!(
            (r.protocol, q.proto),
            (None, _)
                | (Some(Protocol::Tcp), ProtoClass::Tcp)
                | (Some(Protocol::Udp), ProtoClass::Udp)
                | (Some(Protocol::Icmp), ProtoClass::Icmp)
        );
        let port = r.ports.is_empty()
            || q.port
                .is_some_and(|p| r.ports.iter().any(|x| x.contains(p)));
        if proto && port && r.src.contains(q.src) && r.dst.contains(q.dst) {
            if r.action.decides() {
                return (Some(id as RuleId), logs);
            }
            logs.push(id as RuleId);
        }
    }
    (None, logs)
}

#[test]
fn the_index_answers_what_a_scan_in_order_answers_for_random_policies() {
    let mut rng = XorShift(0x005e_ed0f_9011_c1e5);
    let mut queries = 0;
    for round in 0..120 {
        let count = [1, 5, 9, 30, 80][round % 5];
        let rules: Vec<CompiledRule> = (0..count).map(|i| rule(&mut rng, i)).collect();
        let m = build(&rules, usize::MAX).expect("no budget");
        for _ in 0..400 {
            let (src, dst) = loop {
                let (s, d) = (address(&mut rng), address(&mut rng));
                if s.is_ipv4() == d.is_ipv4() {
                    break (s, d);
                }
            };
            let proto = [
                ProtoClass::Tcp,
                ProtoClass::Udp,
                ProtoClass::Icmp,
                ProtoClass::Other,
            ][rng.below(4) as usize];
            let port = matches!(proto, ProtoClass::Tcp | ProtoClass::Udp)
                .then(|| rng.below(130) as u16)
                .filter(|_| rng.below(10) != 0);
            let q = Query {
                src,
                dst,
                proto,
                port,
            };
            let got = m.decide(&q);
            let want = scan(&rules, &q);
            assert_eq!(
                (got.rule, got.logs().to_vec()),
                want,
                "round {round}, {q:?}\n{rules:#?}"
            );
            queries += 1;
        }
    }
    assert_eq!(queries, 120 * 400);
}

#[test]
fn a_policy_past_the_index_budget_is_refused_not_built() {
    let doc = document(
        "",
        r#"
[[policy]]
name = "a"
order = 1
action = "deny"
to = { region = "us-east-1" }
protocol = "tcp"
ports = ["1-100", "200-300"]
"#,
    );
    assert!(compile_with_budget(&doc, None, 2).is_err());
    let p = compile_with_budget(&doc, None, 10_000).unwrap();
    assert!(p.matcher.references() > 0);
}
