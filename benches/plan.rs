//! Topology planning at scale: loading and checking the file a daemon reads (TOML text, with and
//! without IPAM), `Plan::compute` for one node and for every node, and the diff a reload
//! computes, at 1,000 and 10,000 nodes in full-mesh and hub mode.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;
use wiremesh::core::diff::PlanDiff;
use wiremesh::core::plan::Plan;
use wiremesh::core::topology::Topology;

const SIZES: [usize; 2] = [1_000, 10_000];

fn load(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan/load");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in SIZES {
        for (what, pinned) in [("pinned", true), ("ipam", false)] {
            let (text, _) = common::topology_text("full", n, 10, pinned);
            g.bench_with_input(BenchmarkId::new(what, n), &text, |b, text| {
                b.iter(|| black_box(Topology::parse(text, Path::new("bench.toml")).unwrap()))
            });
        }
    }
    g.finish();
}

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
    let mut g = c.benchmark_group("plan/compute one node");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for mode in ["full", "hub"] {
        for n in SIZES {
            let (topo, _) = common::topology(mode, n, 10);
            // a spoke in hub mode (hubs are n0..n9), a plain node in full mode
            let node = format!("n{}", n / 2);
            g.bench_with_input(BenchmarkId::new(mode, n), &topo, |b, topo| {
                b.iter(|| black_box(Plan::compute(topo, &node).unwrap()))
            });
            if mode == "hub" {
                g.bench_with_input(BenchmarkId::new("hub, a hub", n), &topo, |b, topo| {
                    b.iter(|| black_box(Plan::compute(topo, "n1").unwrap()))
                });
            }
        }
    }
    g.finish();
}

fn all_nodes(c: &mut Criterion) {
    // n plans of n routes each: quadratic output by nature, so only at 1,000 nodes
    let mut g = c.benchmark_group("plan/compute every node");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for mode in ["full", "hub"] {
        let (topo, _) = common::topology(mode, 1_000, 10);
        g.bench_with_input(BenchmarkId::new(mode, 1_000), &topo, |b, topo| {
            b.iter(|| {
                for n in &topo.nodes {
                    black_box(Plan::compute(topo, &n.name).unwrap());
                }
            })
        });
    }
    g.finish();
}

fn diff(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan/diff after one node moved");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let (text, _) = common::topology_text("full", n, 10, true);
        let old = Topology::parse(&text, Path::new("bench.toml")).unwrap();
        let new = Topology::parse(
            &text.replace("\"198.18.0.8:51820\"", "\"198.18.0.99:51820\""),
            Path::new("bench.toml"),
        )
        .unwrap();
        let node = format!("n{}", n / 2);
        let (a, b) = (
            Plan::compute(&old, &node).unwrap(),
            Plan::compute(&new, &node).unwrap(),
        );
        assert_eq!(PlanDiff::between(&a, &b).changed.len(), 1);
        g.bench_function(BenchmarkId::from_parameter(n), |bench| {
            bench.iter(|| black_box(PlanDiff::between(&a, &b)))
        });
    }
    g.finish();
}

criterion_group!(benches, load, compute, all_nodes, diff);
criterion_main!(benches);
