//! Hub failover time over repeated kills: a spoke pings a spoke of another region every 20 ms
//! through its preferred hub; the hub in use is SIGKILLed, the longest gap between replies is
//! recorded, the hub is restarted and the bench waits until it carries the flow again, then
//! kills again. Prints every gap, the median and the maximum (goal: max ≤ 5 s), with the host.
//! Root only; `cargo bench --bench hub_failover`. Environment: `KILLS` (default 10).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/root.rs"]
mod root;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremesh::lab::Signal;

const PING_EVERY: Duration = Duration::from_millis(20);

fn hub_in_use(lab: &wiremesh::lab::Lab) -> Option<String> {
    common::daemon_status(lab, "eu-s1")
        .peers
        .into_iter()
        .find(|p| !p.carries.is_empty())
        .map(|p| p.name)
}

fn main() {
    if !root::may_run("hub-failover") {
        return;
    }
    let kills: usize = std::env::var("KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    println!("hub failover, {kills} kills, host: {}", root::host());
    let mut lab = common::running_lab("hub-failover.toml");
    let to = lab.overlay_addrs("us-s1").unwrap()[0];
    assert!(lab
        .ping("eu-s1", to, Duration::from_secs(5))
        .unwrap()
        .is_some());
    let mut gaps = Vec::new();
    for round in 0..kills {
        let hub = hub_in_use(&lab).expect("a hub in use");
        let stop = Arc::new(AtomicBool::new(false));
        let stream = common::ping_stream(&lab, "eu-s1", to, PING_EVERY, stop.clone());
        std::thread::sleep(Duration::from_secs(1));
        lab.kill_daemon(&hub, Signal::Kill).unwrap();
        std::thread::sleep(Duration::from_secs(7));
        stop.store(true, Ordering::Relaxed);
        let s = stream.join().unwrap().unwrap();
        println!(
            "  kill {}: {hub}: longest gap {:.2} s ({} of {} pings lost)",
            round + 1,
            s.longest_gap.as_secs_f64(),
            s.lost,
            s.sent
        );
        gaps.push(s.longest_gap);
        lab.restart_daemon(&hub).unwrap();
        let back = Instant::now();
        while hub_in_use(&lab).as_deref() != Some(hub.as_str()) {
            assert!(
                back.elapsed() < Duration::from_secs(30),
                "{hub} never returned"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        println!(
            "    {hub} carries the flow again {:.1} s after its restart",
            back.elapsed().as_secs_f64()
        );
    }
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    let max = *gaps.last().unwrap();
    println!(
        "failover gap over {kills} kills: median {:.2} s, max {:.2} s (goal max ≤ 5 s)",
        median.as_secs_f64(),
        max.as_secs_f64()
    );
    if max > Duration::from_secs(5) {
        eprintln!("FAIL: the longest failover exceeded 5 s");
        std::process::exit(1);
    }
}
