//! Join convergence on etcd (issue 17): a 64-node full mesh (`topologies/full-64.toml`, 2,016
//! tunnels) runs on a real etcd; a 65th node joins with `lab join`. Measured from the call:
//! until every one of the 64 daemons has the new peer configured (its UAPI, polled in-process),
//! and until every pair with the new node answered a ping both ways. Goals: ≤ 1 s and ≤ 2 s.
//! Each round removes the node again (`lab leave --remove`). Prints every round and the median
//! (min–max), with the host. Root only; `cargo bench --bench registry_join`. Environment:
//! `ROUNDS` (default 5).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/root.rs"]
mod root;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wiremesh::lab::JoinOptions;

/// Polls every socket until each lists `key`; the time each first did, from `t0`.
fn poll_configured(
    socks: Vec<PathBuf>,
    key: wiremesh::core::key::PublicKey,
    t0: Instant,
) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut seen: Vec<Option<Duration>> = vec![None; socks.len()];
    let deadline = t0 + Duration::from_secs(30);
    while seen.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, sock) in socks.iter().enumerate() {
            if seen[i].is_some() {
                continue;
            }
            if let Ok(dev) = rt.block_on(wiremesh::io::uapi::client::query(sock)) {
                if dev.peers.iter().any(|p| p.public_key == key) {
                    seen[i] = Some(t0.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    seen.into_iter()
        .map(|s| s.unwrap_or(Duration::MAX))
        .collect()
}

fn stats(label: &str, v: &mut [Duration]) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: median {:.0} ms ({:.0}–{:.0} ms)",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1])
    );
}

fn main() {
    if !root::may_run("registry-join") {
        return;
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!(
        "registry join convergence, 64 nodes on etcd, {rounds} rounds, host: {}",
        root::host()
    );
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/full-64.toml");
    let mut lab = common::registry_lab_of(&topology, 1, Duration::from_secs(60));
    // let the 2,016 first handshakes settle before timing anything
    std::thread::sleep(Duration::from_secs(5));
    let socks: Vec<PathBuf> = lab
        .nodes()
        .iter()
        .map(|n| {
            PathBuf::from(format!(
                "/var/run/wireguard/{}.sock",
                lab.ifname(n).unwrap()
            ))
        })
        .collect();
    let (mut configured, mut pinged) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let name = format!("join{round}");
        let key = wiremesh::io::keyfile::generate();
        let public = key.public_key();
        let t0 = Instant::now();
        let poll = {
            let socks = socks.clone();
            std::thread::spawn(move || poll_configured(socks, public, t0))
        };
        let join = JoinOptions {
            region: "europe-west1".into(),
            private_key: Some(key),
            ..JoinOptions::default()
        };
        lab.join(&name, &join).unwrap();
        let joined = t0.elapsed();
        let seen = poll.join().unwrap();
        let all = *seen.iter().max().unwrap();
        // every pair with the new node, both ways: the whole matrix, then its row and column
        let reach_start = t0.elapsed();
        let matrix = lab
            .reach_all(Duration::from_secs(10), Duration::from_millis(50))
            .unwrap();
        let endpoints = lab.endpoints().unwrap();
        let new = endpoints.iter().position(|(n, ..)| *n == name).unwrap();
        let mut last = Duration::ZERO;
        for (i, row) in matrix.iter().enumerate() {
            for (j, r) in row.iter().enumerate() {
                // row i leaves out the diagonal: target index j maps to j or j + 1
                let target = if j < i { j } else { j + 1 };
                if i == new || target == new {
                    let at = r.as_ref().map_or(Duration::MAX, |r| r.at);
                    last = last.max(at);
                }
            }
        }
        let pairs_ok = reach_start.saturating_add(last);
        println!(
            "  round {}: daemon up after {:.0} ms; all 64 configured {:.0} ms; all 128 pairs answered {:.0} ms",
            round + 1,
            joined.as_secs_f64() * 1000.0,
            all.as_secs_f64() * 1000.0,
            pairs_ok.as_secs_f64() * 1000.0
        );
        configured.push(all);
        pinged.push(pairs_ok);
        lab.leave(&name, true).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    stats(
        "join → all 64 daemons configured (goal ≤ 1 s)",
        &mut configured,
    );
    stats(
        "join → every pair with the new node answered (goal ≤ 2 s)",
        &mut pinged,
    );
}
