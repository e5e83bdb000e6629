//! Longest-prefix match over 10,000 prefixes of mixed lengths, as a big mesh's route table.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::IpNet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use wiremesh::core::routing::PrefixTable;

fn lookup(c: &mut Criterion) {
    let mut t = PrefixTable::new();
    // 10,000 prefixes: /24s from 10.0.0.0/8, a few /16 aggregates and host routes
    for i in 0..9_800u32 {
        let net = IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i << 8))), 24).unwrap();
        t.insert(net, i);
    }
    for i in 0..100u32 {
        t.insert(
            IpNet::new(IpAddr::V4(Ipv4Addr::from(0xac10_0000 | (i << 16))), 16).unwrap(),
            i,
        );
        t.insert(
            IpNet::new(IpAddr::V4(Ipv4Addr::from(0xc0a8_0001 + i)), 32).unwrap(),
            i,
        );
    }
    let addrs: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | ((i * 37) % 12_000) << 8 | 7)))
        .collect();
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(addrs.len() as u64));
    g.bench_function("lookup 1024 addresses in 10,000 prefixes", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            for a in &addrs {
                hits += t.lookup(*a).is_some() as u32;
            }
            black_box(hits)
        })
    });
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
