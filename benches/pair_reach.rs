//! Time from every daemon of a lab full mesh being ready to every ordered pair reached once (an
//! echo from the other node's overlay address came back), for 16 and 64 nodes, wiremesh next to
//! boringtun-cli daemons given the same keys, addresses and routes (from `wiremesh plan --format
//! wg`), alternating on one lab per size (regions of four nodes, as `topologies/full-64.toml`). Root only; `cargo bench --bench pair_reach`.
//!
//! "Ready" is when the last wiremesh daemon created its UAPI socket (it does so after its tun
//! device, routes and peers are set up), or when the last boringtun-cli was configured. The
//! prober runs one thread per node ([`wiremesh::lab::Lab::reach_all`]), re-sending to silent
//! peers every `RESEND_MS` (default 50) ms. Also prints how long the lab took to build, start,
//! probe and remove at each size.
//!
//! Environment: `ROUNDS` (default 3), `SIZES` (default "16 64"), `RESEND_MS`, `BORINGTUN`,
//! `WIREMESH` (another `wiremesh` executable to measure, e.g. an older build for an A/B run).

#[path = "common/root.rs"]
mod root;
#[path = "scale/mod.rs"]
mod scale;

use scale::{fmt_stats, WgDaemon, WgImpl};
use std::path::Path;
use std::time::{Duration, Instant};
use wiremesh::lab::{Lab, LabOptions};

/// Nodes per region: small regions, so the kernel's ARP table (shared by every namespace,
/// 1,024 entries) holds a 64-node lab; see `topologies/full-64.toml`.
const PER_REGION: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(30);
const WIREMESH: &str = env!("CARGO_BIN_EXE_wiremesh");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds from `ready` to the last pair's first reply, and how many pairs never answered.
/// Prints when half, 90 % and 99 % of the pairs had been reached.
fn reach(lab: &Lab, ready: Instant, resend: Duration) -> (f64, usize) {
    let called = ready.elapsed();
    let rows = lab.reach_all(TIMEOUT, resend).expect("probe");
    let mut at: Vec<Duration> = rows
        .iter()
        .flatten()
        .flatten()
        .map(|r| called + r.at)
        .collect();
    let failed = rows.iter().flatten().filter(|r| r.is_none()).count();
    at.sort();
    let q = |f: f64| at.get(((at.len() as f64 * f) as usize).min(at.len().saturating_sub(1)));
    let s = |d: Option<&Duration>| d.map_or(f64::NAN, Duration::as_secs_f64);
    println!(
        "  pairs reached: half after {:.3} s, 90 % after {:.3} s, 99 % after {:.3} s",
        s(q(0.5)),
        s(q(0.9)),
        s(q(0.99))
    );
    (s(at.last()), failed)
}

/// One round of boringtun-cli on the lab: start, configure (two threads), probe, stop.
fn boringtun_round(lab: &Lab, dir: &Path, resend: Duration) -> (f64, usize) {
    let nodes = lab.nodes();
    let daemons: Vec<WgDaemon> = nodes
        .iter()
        .map(|n| {
            WgDaemon::start(
                WgImpl::Boringtun,
                lab.node_ns(n).unwrap(),
                lab.ifname(n).unwrap(),
                &dir.join(format!("{n}.boringtun.log")),
            )
        })
        .collect();
    std::thread::scope(|s| {
        for half in nodes.chunks(nodes.len().div_ceil(2)) {
            s.spawn(move || {
                half.iter()
                    .for_each(|n| scale::configure(lab, n, dir, WIREMESH))
            });
        }
    });
    let ready = Instant::now();
    let out = reach(lab, ready, resend);
    scale::stop_all(daemons);
    out
}

fn main() {
    if !root::may_run("pair-reach") {
        return;
    }
    let rounds: usize = env_or("ROUNDS", 3);
    let sizes: Vec<usize> = std::env::var("SIZES")
        .unwrap_or_else(|_| "16 64".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let resend = Duration::from_millis(env_or("RESEND_MS", 50));
    let with_boringtun = WgImpl::Boringtun.available();
    if !with_boringtun {
        eprintln!(
            "{} not found: measuring wiremesh only",
            WgImpl::Boringtun.exe().display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut table = Vec::new();
    for &n in &sizes {
        let topo = dir.path().join(format!("mesh{n}.toml"));
        std::fs::write(&topo, scale::full_mesh(n, n.div_ceil(PER_REGION))).unwrap();
        let prefix = format!("pr{}", std::process::id() % 100_000);
        let t = Instant::now();
        let exe = std::env::var("WIREMESH").unwrap_or_else(|_| WIREMESH.into());
        let mut lab = Lab::build(&topo, LabOptions::new(prefix, exe)).unwrap();
        let built = t.elapsed();
        let (mut wm, mut bt, mut wm_failed, mut bt_failed) = (vec![], vec![], 0, 0);
        let (mut starts, mut stops) = (vec![], vec![]);
        for round in 1..=rounds {
            let t = Instant::now();
            lab.start_daemons().unwrap();
            let ready = Instant::now();
            starts.push((ready - t).as_secs_f64());
            let (secs, failed) = reach(&lab, ready, resend);
            println!("{n} nodes, round {round}: wiremesh every pair reached after {secs:.3} s ({failed} pairs failed)");
            wm.push(secs);
            wm_failed += failed;
            let t = Instant::now();
            lab.stop_daemons().unwrap();
            stops.push(t.elapsed().as_secs_f64());
            if with_boringtun {
                let (secs, failed) = boringtun_round(&lab, dir.path(), resend);
                println!("{n} nodes, round {round}: boringtun-cli every pair reached after {secs:.3} s ({failed} pairs failed)");
                bt.push(secs);
                bt_failed += failed;
            }
        }
        let t = Instant::now();
        lab.down().unwrap();
        let down = t.elapsed();
        println!(
            "lab of {n} nodes: built in {:.2} s, daemons started and ready in {} s, stopped in {} s, removed in {:.2} s",
            built.as_secs_f64(),
            fmt_stats(&starts, 2),
            fmt_stats(&stops, 2),
            down.as_secs_f64()
        );
        table.push((n, "wiremesh", fmt_stats(&wm, 3), wm_failed));
        if with_boringtun {
            table.push((n, "boringtun-cli", fmt_stats(&bt, 3), bt_failed));
        }
    }
    println!("\n| nodes | implementation | every pair reached, s: median (min–max) | pairs failed (all rounds) |");
    println!("|---|---|---|---|");
    for (n, name, s, failed) in table {
        println!("| {n} | {name} | {s} | {failed} |");
    }
}
