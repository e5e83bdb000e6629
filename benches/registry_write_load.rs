//! Write load on etcd in steady state (issue 17): a 64-node mesh on a real etcd sits idle;
//! etcd's own counters are read before and after (`/metrics` on its client URL): puts,
//! transactions, deletes, raft proposals committed, and LeaseKeepAlive messages received,
//! each per node per minute. Expected: no writes at all, keep-alives only (one per node every
//! 10 s). Root only; `cargo bench --bench registry_write_load`. Environment: `MINUTES`
//! (default 3).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/root.rs"]
mod root;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use wiremesh::lab::Lab;

const COUNTERS: [&str; 5] = [
    "etcd_mvcc_put_total",
    "etcd_mvcc_txn_total",
    "etcd_mvcc_delete_total",
    "etcd_server_proposals_committed_total",
    "grpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\"",
];

/// etcd's counters of interest, read from its `/metrics` inside the lab's core namespace.
fn counters(lab: &Lab) -> BTreeMap<&'static str, f64> {
    let url = lab.registry_url().unwrap();
    let addr = url.trim_start_matches("etcd://").split(',').next().unwrap();
    let text = common::scrape_metrics(&lab.layout().core_ns, addr);
    COUNTERS
        .iter()
        .map(|name| {
            let sum = text
                .lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            (*name, sum)
        })
        .collect()
}

fn main() {
    if !root::may_run("registry-write-load") {
        return;
    }
    let minutes: u64 = std::env::var("MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!(
        "etcd write load, 64 idle nodes, {minutes} min, host: {}",
        root::host()
    );
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/full-64.toml");
    let lab = common::registry_lab_of(&topology, 1, Duration::from_secs(60));
    // past the joins' writes and the first keep-alives
    std::thread::sleep(Duration::from_secs(15));
    let before = counters(&lab);
    std::thread::sleep(Duration::from_secs(60 * minutes));
    let after = counters(&lab);
    let nodes = lab.nodes().len() as f64;
    for name in COUNTERS {
        let delta = after[name] - before[name];
        println!(
            "  {name}: {delta:.0} in {minutes} min = {:.2} per node per minute",
            delta / nodes / minutes as f64
        );
    }
}
