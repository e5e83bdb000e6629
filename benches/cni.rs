//! The CNI plugin chain on a lab node, run as a runtime runs it (see `wiremesh::lab::containers`):
//!
//! - ADD latency: `ADDS` (default 100) sequential ADDs of the conflist (wiremesh-cni, which
//!   delegates to bridge and host-local, then portmap) on one node, each for a fresh container
//!   namespace; median and p99 (goal: median < 50 ms, p99 < 200 ms). The namespace's creation
//!   is not counted. Then DEL of each, timed with the namespace's deletion.
//! - Scale: `SCALE` (default 200) containers on one node, every one pinged from the other node
//!   over the mesh; then DEL of all of them, after which host-local's store must be empty.
//!
//! Two nodes in two regions (`tests/topologies/cni-two-regions.toml`). Prints the host (CPU
//! model, kernel). Root only; `cargo bench --bench cni`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/root.rs"]
mod root;

use std::time::{Duration, Instant};
use wiremesh::lab::Lab;

const TOPOLOGY: &str = "cni-two-regions.toml";
const REACH_TIMEOUT: Duration = Duration::from_secs(30);
const RESEND: Duration = Duration::from_millis(200);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `q` quantile (0..=1) of sorted durations, in milliseconds.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(label: &str, mut took: Vec<Duration>) -> (f64, f64) {
    took.sort();
    let (median, p99) = (quantile_ms(&took, 0.5), quantile_ms(&took, 0.99));
    println!(
        "  {label}: {} runs, min {:.1} ms, median {median:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        took.len(),
        took[0].as_secs_f64() * 1000.0,
        took[took.len() - 1].as_secs_f64() * 1000.0
    );
    (median, p99)
}

/// Removes every container, timing each DEL (with its namespace's deletion).
fn remove_all(lab: &mut Lab) -> Vec<Duration> {
    let all: Vec<String> = lab.containers().iter().map(|c| c.ns.clone()).collect();
    all.iter()
        .rev()
        .map(|ns| {
            let started = Instant::now();
            lab.remove_container(ns).unwrap();
            started.elapsed()
        })
        .collect()
}

fn add_latency(lab: &mut Lab, adds: usize) -> bool {
    println!("ADD latency, {adds} sequential ADDs on node a:");
    let took: Vec<Duration> = (0..adds)
        .map(|_| lab.add_container("a").unwrap().add_took)
        .collect();
    let (median, p99) = summary("ADD", took);
    summary("DEL", remove_all(lab));
    assert!(lab.cni_reservations("a").unwrap().is_empty());
    let met = median < 50.0 && p99 < 200.0;
    println!(
        "  goal median < 50 ms, p99 < 200 ms: {}",
        if met { "met" } else { "NOT met" }
    );
    met
}

fn scale(lab: &mut Lab, n: usize) -> bool {
    println!("scale, {n} containers on node a, pinged from node b:");
    let started = Instant::now();
    for _ in 0..n {
        lab.add_container("a").unwrap();
    }
    println!("  {n} ADDs in {:.1} s", started.elapsed().as_secs_f64());
    let targets: Vec<std::net::IpAddr> = lab.containers().iter().map(|c| c.addrs[0]).collect();
    let b_ns = lab.node_ns("b").unwrap().to_string();
    let reached = wiremesh::lab::probe_all(&[(b_ns, targets.clone())], REACH_TIMEOUT, RESEND)
        .unwrap()
        .remove(0);
    let answered: Vec<Duration> = reached.iter().flatten().map(|r| r.at).collect();
    let last = answered.iter().max().copied().unwrap_or_default();
    println!(
        "  reachable from node b: {} of {n} (the last after {:.2} s)",
        answered.len(),
        last.as_secs_f64()
    );
    for (t, r) in targets.iter().zip(&reached) {
        if r.is_none() {
            println!("    no reply from {t}");
        }
    }
    let started = Instant::now();
    remove_all(lab);
    let left = lab.cni_reservations("a").unwrap();
    println!(
        "  {n} DELs in {:.1} s; host-local reservations left: {}",
        started.elapsed().as_secs_f64(),
        left.len()
    );
    answered.len() == n && left.is_empty()
}

fn main() {
    if !root::may_run("cni") {
        return;
    }
    println!("CNI plugin chain on a lab node, host: {}", root::host());
    let mut lab = common::running_lab(TOPOLOGY);
    let latency_ok = add_latency(&mut lab, env_or("ADDS", 100));
    let scale_ok = scale(&mut lab, env_or("SCALE", 200));
    lab.down().unwrap();
    assert!(latency_ok && scale_ok, "a goal was missed (see above)");
}
