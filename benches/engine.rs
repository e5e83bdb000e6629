//! Seal and open a burst of packets through two in-memory devices: the engine's per-packet
//! cost without any system call (route lookup, `Tunn` lock, ChaCha20-Poly1305, batch arena).

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;
use wiremesh::core::plan::Plan;
use wiremesh::engine::{Batch, Device, Scratch};
use wiremesh::testing;

/// A packet from 10.0.0.1 to 10.0.1.1 with `payload` bytes.
fn ipv4(payload: usize) -> Vec<u8> {
    testing::ipv4([10, 0, 0, 1], [10, 0, 1, 1], &vec![0xab; payload])
}

/// Two devices with an established session: a handshake crossed in memory.
fn pair() -> (Device, Device, SocketAddr, SocketAddr) {
    let (topo, keys) = common::topology("full", 2, 1);
    let now = Instant::now();
    let a = Device::new(keys[0].clone(), &Plan::compute(&topo, "n0").unwrap(), now);
    let b = Device::new(keys[1].clone(), &Plan::compute(&topo, "n1").unwrap(), now);
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
        "198.18.0.1:51820".parse().unwrap(),
        "198.18.0.2:51820".parse().unwrap(),
    );
    testing::cross_handshake((&a, a_addr), (&b, b_addr), &ipv4(20), 4);
    (a, b, a_addr, b_addr)
}

fn seal_and_open(c: &mut Criterion) {
    let (a, b, a_addr, _) = pair();
    // one reading per batch, as the daemon's loops take it
    let now = Instant::now();
    let mut scratch = Scratch::new();
    let mut sealed = Batch::new();
    let mut opened = Batch::new();
    let mut g = c.benchmark_group("engine");
    for (burst, size) in [(64usize, 1400usize), (64, 100)] {
        let pkts: Vec<Vec<u8>> = (0..burst).map(|_| ipv4(size - 20)).collect();
        g.throughput(Throughput::Bytes((burst * size) as u64));
        g.bench_function(format!("seal {burst}×{size} B"), |bench| {
            bench.iter(|| {
                sealed.clear();
                for p in &pkts {
                    a.handle_tun_packet(now, p, &mut scratch, &mut sealed);
                }
                black_box(sealed.datagram_runs(64).count())
            })
        });
        sealed.clear();
        g.bench_function(format!("seal+open {burst}×{size} B"), |bench| {
            bench.iter(|| {
                sealed.clear();
                opened.clear();
                for p in &pkts {
                    a.handle_tun_packet(now, p, &mut scratch, &mut sealed);
                }
                for (_, d) in sealed.datagrams() {
                    b.handle_datagram(now, a_addr, d, &mut scratch, &mut opened);
                }
                assert_eq!(opened.len(), burst);
                black_box(opened.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
