//! What a node pays per handshake as its peer count grows: an initiation from one of 64 peers
//! spread over the table is matched to its peer (by the endpoint it comes from, checked by the
//! session) and answered in full; the first from each peer also wakes it (its `Tunn` is made).
//! With 10, 1,000 and 10,000 configured peers the figure should not move: demultiplexing is one
//! hash lookup; the Diffie-Hellman work dominates.
//!
//! Admission answers with cookies past 1,000 initiations a second (`engine/admission.rs`), so
//! the initiations are given times 1/900 s apart (simulated: nothing sleeps): only the time
//! inside `handle_datagram` is measured, and every answer is checked to be a handshake
//! response.

mod common;

use boringtun::noise::{Tunn, TunnResult};
use criterion::{criterion_group, criterion_main, Criterion};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use wiremesh::core::plan::Plan;
use wiremesh::engine::{Batch, Device, Scratch};

/// Initiations per (simulated) second: below admission's 1,000.
const PER_SECOND: u32 = 900;

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(300));
    for n in [10usize, 1_000, 10_000] {
        let (topo, keys) = common::topology("full", n + 1, 1);
        let node = Device::new(
            keys[0].clone(),
            &Plan::compute(&topo, "n0").unwrap(),
            Instant::now(),
        );
        let node_pub = keys[0].public_key().to_x25519();
        // initiators spread over the table, each a stock `Tunn` holding the peer's key
        let mut initiators: Vec<(Tunn, SocketAddr)> = (1..=n)
            .step_by((n / 64).max(1))
            .map(|i| {
                let tunn = Tunn::new(
                    keys[i].secret().clone(),
                    node_pub,
                    None,
                    None,
                    i as u32,
                    None,
                );
                let from = format!("198.18.{}.{}:51820", i / 250, i % 250 + 1);
                (tunn, from.parse().unwrap())
            })
            .collect();
        let mut next = 0usize;
        let mut scratch = Scratch::new();
        let mut buf = vec![0u8; 256];
        let mut clock = Instant::now();
        g.bench_function(
            format!("initiation → response, {n} configured peers"),
            |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        clock += Duration::from_secs(1) / PER_SECOND;
                        let k = next % initiators.len();
                        next += 1;
                        let (tunn, from) = &mut initiators[k];
                        let init = match tunn.format_handshake_initiation(&mut buf, true) {
                            TunnResult::WriteToNetwork(d) => d.to_vec(),
                            _ => unreachable!("a Tunn always formats an initiation"),
                        };
                        let mut out = Batch::new();
                        let t = Instant::now();
                        node.handle_datagram(clock, *from, &init, &mut scratch, &mut out);
                        spent += t.elapsed();
                        let kinds: Vec<u8> = out.datagrams().map(|(_, d)| d[0]).collect();
                        assert_eq!(kinds, [2], "one handshake response, never a cookie");
                    }
                    spent
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
