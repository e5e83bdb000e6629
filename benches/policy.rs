//! Per-packet policy cost (docs/policy.md, section 10): the rules' decision at 10 and 1,000
//! rules, for a packet the last rule decides (hit) and one no rule matches (miss), beside a
//! scan of the same rules in order; then the whole check of a packet (parse, connection table,
//! rules) for a new flow and for a packet of a tracked flow.
//!
//! The rules resemble a real policy: each denies one /28 of a node's pod CIDR a TCP port on
//! another node; the last allows `n1` to reach `n8` on 443.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;
use wiremesh::core::key::PrivateKey;
use wiremesh::core::policy::compile::CompiledRule;
use wiremesh::core::policy::matcher::{ProtoClass, Query};
use wiremesh::core::policy::{compile, ConnTrack, Policy, Protocol};
use wiremesh::core::topology::Topology;

const NODES: u32 = 64;

/// A mesh of 64 nodes (`n1`..`n64`, pod CIDR 10.244.i.0/24) and `rules` rules, default deny.
fn policy(rules: u32) -> Policy {
    let mut text = String::from(
        "mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\ndefault-action = \"deny\"\n",
    );
    for i in 1..=NODES {
        let key = PrivateKey::from_bytes([i as u8; 32]).public_key();
        text.push_str(&format!(
            "[[node]]\nname = \"n{i}\"\ncloud = \"c{}\"\nregion = \"r{}\"\npublic-key = \"{key}\"\n\
             pod-cidr = \"10.244.{i}.0/24\"\nlabels = {{ app = \"a{}\" }}\n",
            i % 3,
            i % 4,
            i % 5
        ));
    }
    for r in 0..rules - 1 {
        let from = 1 + (r * 7) % NODES;
        let to = 1 + r % NODES;
        let sub = (r / NODES) % 16 * 16;
        text.push_str(&format!(
            "[[policy]]\nname = \"deny-{r}\"\norder = {r}\naction = \"deny\"\n\
             from = {{ cidrs = [\"10.244.{from}.{sub}/28\"] }}\nto = {{ name = \"n{to}\" }}\n\
             protocol = \"tcp\"\nports = [{}]\n",
            1000 + r
        ));
    }
    text.push_str(&format!(
        "[[policy]]\nname = \"web-to-api\"\norder = {rules}\naction = \"allow\"\n\
         from = {{ name = \"n1\" }}\nto = {{ name = \"n8\" }}\nprotocol = \"tcp\"\nports = [443]\n"
    ));
    let doc = Topology::parse_with_policy(&text, Path::new("bench.toml")).unwrap();
    let p = compile(&doc, None).unwrap();
    assert_eq!(p.rules.len(), rules as usize);
    p
}

fn query(port: u16) -> Query {
    Query {
        src: "10.244.1.5".parse().unwrap(),
        dst: "10.244.8.5".parse().unwrap(),
        proto: ProtoClass::Tcp,
        port: Some(port),
    }
}

/// The first deciding rule by a scan in order: what the index replaces.
fn scan(rules: &[CompiledRule], q: &Query) -> Option<usize> {
    rules.iter().position(|r| {
        r.action.decides()
            && r.protocol.is_none_or(|p| p == Protocol::Tcp)
            && (r.ports.is_empty()
                || q.port
                    .is_some_and(|p| r.ports.iter().any(|x| x.contains(p))))
            && r.src.contains(q.src)
            && r.dst.contains(q.dst)
    })
}

/// An IPv4 TCP segment.
fn segment(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, flags: u8) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        unreachable!()
    };
    let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

fn decision(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy decision");
    for rules in [10u32, 1000] {
        let p = policy(rules);
        let (hit, miss) = (query(443), query(444));
        assert_eq!(p.matcher.decide(&hit).rule, Some(rules - 1));
        assert_eq!(p.matcher.decide(&miss).rule, None);
        assert_eq!(scan(&p.rules, &hit), Some(rules as usize - 1));
        g.bench_function(format!("index, {rules} rules, hit (last rule)"), |b| {
            b.iter(|| black_box(p.matcher.decide(black_box(&hit)).rule))
        });
        g.bench_function(format!("index, {rules} rules, miss (default)"), |b| {
            b.iter(|| black_box(p.matcher.decide(black_box(&miss)).rule))
        });
        g.bench_function(format!("scan, {rules} rules, miss (default)"), |b| {
            b.iter(|| black_box(scan(&p.rules, black_box(&miss))))
        });
    }
    g.finish();
}

fn check(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy check_packet");
    let p = policy(1000);
    let now = Instant::now();
    let mut ct = ConnTrack::new(65_536, [0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344], now);
    let (web, api) = (query(0).src, query(0).dst);
    let syn = segment(web, 40000, api, 443, 0x02);
    assert!(p.check_packet(&mut ct, &syn, now).verdict == wiremesh::core::policy::Verdict::Pass);
    let ack = segment(web, 40000, api, 443, 0x10);
    let reply = segment(api, 443, web, 40000, 0x10);
    let denied = segment(web, 40001, api, 444, 0x02);
    g.bench_function("1000 rules, conntrack hit (tracked flow)", |b| {
        b.iter(|| black_box(p.check_packet(&mut ct, black_box(&ack), now).reason))
    });
    g.bench_function("1000 rules, conntrack hit (reply)", |b| {
        b.iter(|| black_box(p.check_packet(&mut ct, black_box(&reply), now).reason))
    });
    g.bench_function(
        "1000 rules, new flow denied (parse, table miss, rules)",
        |b| b.iter(|| black_box(p.check_packet(&mut ct, black_box(&denied), now).reason)),
    );
    g.finish();
}

criterion_group!(benches, decision, check);
criterion_main!(benches);
