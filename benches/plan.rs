//! `Plan::compute` for one node of a 1,000-node topology, full mesh and hub mode.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use wiremesh::core::plan::Plan;

fn compute(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    g.sample_size(20);
    for mode in ["full", "hub"] {
        let (topo, _) = common::topology(mode, 1_000, 10);
        g.bench_function(format!("compute, 1,000 nodes, {mode}"), |b| {
            b.iter(|| black_box(Plan::compute(&topo, "n500").unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, compute);
criterion_main!(benches);
