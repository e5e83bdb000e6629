//! Redundant hubs in memory: every pair reaches every other with several hubs per region, and
//! traffic leaves a hub that stops answering within seconds of simulated time, then returns.

use super::memory_tests::{ipv4, Net};
use std::time::Duration;

const TICK: Duration = Duration::from_millis(250);

/// A hub mesh of `regions` regions, each with `hubs` hubs and `spokes` spokes, as the
/// (name, region, hub) triples `Net::new` takes.
fn layout(regions: usize, hubs: usize, spokes: usize) -> Vec<(String, String, bool)> {
    let mut nodes = Vec::new();
    for r in 0..regions {
        for h in 0..hubs {
            nodes.push((format!("r{r}-hub{h}"), format!("r{r}"), true));
        }
        for s in 0..spokes {
            nodes.push((format!("r{r}-spoke{s}"), format!("r{r}"), false));
        }
    }
    nodes
}

fn net_of(nodes: &[(String, String, bool)]) -> Net {
    let borrowed: Vec<(&str, &str, bool)> = nodes
        .iter()
        .map(|(n, r, h)| (n.as_str(), r.as_str(), *h))
        .collect();
    Net::new("hub", &borrowed)
}

/// Node `i`'s overlay address, as `Net::new` numbers them.
fn overlay(i: usize) -> [u8; 4] {
    [10, 244, (i + 1) as u8, 1]
}

/// Whether `to` received a packet carrying exactly `payload`.
fn got(net: &Net, to: &str, payload: &[u8]) -> bool {
    net.delivered
        .get(to)
        .is_some_and(|pkts| pkts.iter().any(|p| p.get(20..) == Some(payload)))
}

#[test]
fn every_pair_reaches_every_other_with_one_to_three_hubs_per_region() {
    for (regions, hubs) in [(2, 2), (2, 3), (3, 1), (3, 3), (4, 2), (5, 1), (5, 2)] {
        let nodes = layout(regions, hubs, 2);
        let mut net = net_of(&nodes);
        let mut missing = Vec::new();
        for i in 0..nodes.len() {
            for j in (0..nodes.len()).filter(|&j| j != i) {
                let payload = format!("{i}->{j}");
                net.send(
                    &nodes[i].0,
                    &ipv4(overlay(i), overlay(j), payload.as_bytes()),
                );
                if !got(&net, &nodes[j].0, payload.as_bytes()) {
                    missing.push(format!("{} → {}", nodes[i].0, nodes[j].0));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{regions} regions × {hubs} hubs: {} of {} pairs failed: {missing:?}",
            missing.len(),
            nodes.len() * (nodes.len() - 1)
        );
    }
}

/// The hub of `candidates` that forwarded anything so far.
fn forwarding_hub(net: &Net, candidates: &[&str]) -> String {
    let forwarded = |h: &str| net.devices[h].forwarded();
    let busy: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|h| forwarded(h) > 0)
        .collect();
    assert_eq!(busy.len(), 1, "one hub carries the flow: {busy:?}");
    busy[0].to_string()
}

/// Sends a ping each way between node `a` and node `b` once per tick for `ticks` ticks;
/// returns the ticks at which `b` got a's request (by tick index).
fn ping_both_ways(
    net: &mut Net,
    nodes: &[(String, String, bool)],
    (a, b): (usize, usize),
    ticks: u32,
    seq: &mut u32,
) -> Vec<u32> {
    let mut arrived = Vec::new();
    for t in 0..ticks {
        net.run(TICK, 1);
        *seq += 1;
        let fwd = format!("ping {seq}");
        net.send(&nodes[a].0, &ipv4(overlay(a), overlay(b), fwd.as_bytes()));
        let back = format!("pong {seq}");
        net.send(&nodes[b].0, &ipv4(overlay(b), overlay(a), back.as_bytes()));
        if got(net, &nodes[b].0, fwd.as_bytes()) && got(net, &nodes[a].0, back.as_bytes()) {
            arrived.push(t);
        }
    }
    arrived
}

#[test]
fn traffic_leaves_a_silent_hub_within_three_seconds_and_returns_after_it_answers_again() {
    let nodes = layout(2, 2, 1);
    let names: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
    let (spoke0, spoke1) = (
        names.iter().position(|n| *n == "r0-spoke0").unwrap(),
        names.iter().position(|n| *n == "r1-spoke0").unwrap(),
    );
    let mut net = net_of(&nodes);
    let mut seq = 0;
    // steady state: hellos answered, every path up
    let ok = ping_both_ways(&mut net, &nodes, (spoke0, spoke1), 20, &mut seq);
    assert_eq!(ok.len(), 20, "all pings before the failure");
    let hub = forwarding_hub(&net, &["r0-hub0", "r0-hub1"]);
    let other = if hub == "r0-hub0" {
        "r0-hub1"
    } else {
        "r0-hub0"
    };
    let remote = forwarding_hub(&net, &["r1-hub0", "r1-hub1"]);

    // the hub in use stops (SIGSTOP, or its link drops everything)
    net.down.insert(hub.clone());
    let ok = ping_both_ways(&mut net, &nodes, (spoke0, spoke1), 40, &mut seq);
    let first = *ok.first().expect("traffic moved to the other hub");
    let gap = TICK * (first + 1);
    assert!(gap <= Duration::from_secs(3), "failover took {gap:?}");
    assert_eq!(ok.len() as u32, 40 - first, "no loss once moved: {ok:?}");
    let before = net.devices[other].forwarded();
    assert!(before > 0, "{other} carries the flow now");
    let health_of = |net: &Net, at: &str, peer: &str| {
        let t = net.devices[at].peers();
        let p = t.iter().find(|p| p.name() == peer).unwrap().clone();
        p.liveness.health()
    };
    use crate::core::liveness::Health;
    assert_eq!(health_of(&net, "r0-spoke0", &hub), Health::Down);
    assert_eq!(health_of(&net, &remote, &hub), Health::Down);

    // the hub continues (SIGCONT): it is watched for the return hold, then used again
    net.down.remove(&hub);
    let ok = ping_both_ways(&mut net, &nodes, (spoke0, spoke1), 40, &mut seq);
    assert_eq!(ok.len(), 40, "no loss while traffic returns");
    assert_eq!(health_of(&net, "r0-spoke0", &hub), Health::Up);
    let moved_back = net.devices[other].forwarded();
    let settled = ping_both_ways(&mut net, &nodes, (spoke0, spoke1), 8, &mut seq);
    assert_eq!(settled.len(), 8);
    assert_eq!(
        net.devices[other].forwarded(),
        moved_back,
        "back on the preferred hub: the standby forwards nothing more"
    );
    let downs = {
        let t = net.devices["r0-spoke0"].peers();
        let p = t.iter().find(|p| p.name() == hub).unwrap().clone();
        p.liveness.downs()
    };
    assert_eq!(downs, 1, "one failover, no flapping");
}
