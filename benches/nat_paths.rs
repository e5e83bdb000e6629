//! The figures of NAT traversal (docs/nat.md, section 8), on `tests/topologies/full-nat.toml`
//! (a full mesh: two public nodes, two nodes behind endpoint-independent NATs, two behind
//! endpoint-dependent ones), with real daemons. Each round builds a fresh lab and measures:
//! - time to direct: from starting the daemons until the independent pair is punched both ways
//!   (goal ≤ 3 s);
//! - throughput of that punched pair and of the dependent pair, relayed by a public node,
//!   alternating in the same run (goal: relayed ≥ 0.5× direct);
//! - recovery: the longest gap of a 20 ms ping stream when both routers of the punched pair
//!   flush their mappings, and when one router gets a new public address (goal ≤ 5 s).
//!
//! Prints every figure with the host, the medians, and fails when a goal is missed.
//! Root only; `cargo bench --bench nat_paths`. Environment: `ROUNDS` (default 3), `MIB` per
//! transfer (default 64).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/root.rs"]
mod root;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremesh::lab::Lab;

const PING_EVERY: Duration = Duration::from_millis(20);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Mbit/s of a checksummed transfer of `bytes` from `from` to `to`; panics if it arrived damaged.
fn rate(lab: &Lab, from: &str, to: &str, bytes: u64) -> f64 {
    let addr = lab.overlay_addrs(to).unwrap()[0];
    let t = lab.transfer(from, to, addr, bytes).unwrap();
    assert!(t.intact(), "{from} → {to}: damaged");
    t.mbit_per_s()
}

/// The longest gap of a ping stream `from` → `to` while `disturb` runs (after 0.5 s), watched
/// for 8 s in all.
fn gap_during(lab: &Lab, from: &str, to: &str, disturb: impl FnOnce()) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = lab.overlay_addrs(to).unwrap()[0];
    let stream = common::ping_stream(lab, from, addr, PING_EVERY, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    disturb();
    std::thread::sleep(Duration::from_millis(7_500));
    stop.store(true, Ordering::Relaxed);
    stream.join().unwrap().unwrap().longest_gap
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if !root::may_run("nat-paths") {
        return;
    }
    let rounds = env_or("ROUNDS", 3) as usize;
    let bytes = env_or("MIB", 64) << 20;
    println!("NAT paths, {rounds} rounds, host: {}", root::host());
    let (mut direct_s, mut ratios, mut flush_s, mut renumber_s) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let mut lab = common::new_lab("full-nat.toml");
        let started = Instant::now();
        lab.start_daemons().unwrap();
        let direct = common::wait_for(
            Duration::from_secs(15),
            Duration::from_millis(20),
            "the independent pair punched",
            || {
                let both = common::peer_path(&lab, "ind-1", "ind-2") == "punched"
                    && common::peer_path(&lab, "ind-2", "ind-1") == "punched";
                if both {
                    Ok(started.elapsed())
                } else {
                    Err("not yet")
                }
            },
        );
        let relayed_path = common::peer_path(&lab, "dep-1", "dep-2");
        assert!(relayed_path.starts_with("relayed via"), "{relayed_path}");
        let (mut direct_rates, mut relayed_rates) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            direct_rates.push(rate(&lab, "ind-1", "ind-2", bytes));
            relayed_rates.push(rate(&lab, "dep-1", "dep-2", bytes));
        }
        let (d, r) = (median(&mut direct_rates), median(&mut relayed_rates));
        let flush = gap_during(&lab, "ind-2", "ind-1", || {
            lab.flush_nat("ind-1").unwrap();
            lab.flush_nat("ind-2").unwrap();
        });
        let renumber = gap_during(&lab, "ind-2", "ind-1", || {
            lab.renumber_nat("ind-1").unwrap();
        });
        println!(
            "  round {round}: direct after {:.2} s; punched {d:.0} Mbit/s, relayed ({relayed_path}) \
             {r:.0} Mbit/s = {:.2}×; gap after a flush {:.2} s, after a new address {:.2} s",
            direct.as_secs_f64(),
            r / d,
            flush.as_secs_f64(),
            renumber.as_secs_f64()
        );
        direct_s.push(direct.as_secs_f64());
        ratios.push(r / d);
        flush_s.push(flush.as_secs_f64());
        renumber_s.push(renumber.as_secs_f64());
        drop(lab);
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (d_max, f_max, n_max) = (max(&direct_s), max(&flush_s), max(&renumber_s));
    let ratio = median(&mut ratios);
    println!(
        "time to direct: median {:.2} s, max {d_max:.2} s (goal ≤ 3 s); relayed/direct \
         throughput: median {ratio:.2}× (goal ≥ 0.5×); recovery: flush max {f_max:.2} s, new \
         address max {n_max:.2} s (goal ≤ 5 s)",
        median(&mut direct_s)
    );
    let mut failed = Vec::new();
    if d_max > 3.0 {
        failed.push("time to direct over 3 s");
    }
    if ratio < 0.5 {
        failed.push("relayed throughput under 0.5× direct");
    }
    if f_max > 5.0 || n_max > 5.0 {
        failed.push("recovery over 5 s");
    }
    if !failed.is_empty() {
        eprintln!("FAIL: {}", failed.join("; "));
        std::process::exit(1);
    }
}
