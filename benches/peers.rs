//! What a node pays per handshake as its peer count grows: an initiation from a peer the node
//! has never heard from (an idle record) is matched to its peer by key, the peer wakes (its
//! `Tunn` is made) and the response is written. With 10, 1,000 and 10,000 configured peers the
//! figure should not move: the demultiplexing is one hash lookup; the DH work dominates.

mod common;

use boringtun::noise::{Tunn, TunnResult};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::net::SocketAddr;
use wiremesh::core::plan::Plan;
use wiremesh::engine::{Batch, Device, Scratch};

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers");
    g.sample_size(30);
    for n in [10usize, 1_000, 10_000] {
        let (topo, keys) = common::topology("full", n + 1, 1);
        let node = Device::new(keys[0].clone(), &Plan::compute(&topo, "n0").unwrap());
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
        g.bench_function(
            format!("initiation → response, {n} configured peers"),
            |b| {
                b.iter_batched(
                    || {
                        let k = next % initiators.len();
                        next += 1;
                        let (tunn, from) = &mut initiators[k];
                        let init = match tunn.format_handshake_initiation(&mut buf, true) {
                            TunnResult::WriteToNetwork(d) => d.to_vec(),
                            _ => unreachable!("a Tunn always formats an initiation"),
                        };
                        // the limiter counts initiations per second; the daemon resets it each second
                        node.reset_rate_limiter();
                        (init, *from, Batch::new())
                    },
                    |(init, from, mut out)| {
                        node.handle_datagram(from, &init, &mut scratch, &mut out);
                        assert_eq!(out.datagrams().count(), 1, "a response goes back");
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
