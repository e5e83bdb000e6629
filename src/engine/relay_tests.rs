//! Relays in a full mesh, in memory (docs/nat.md, section 4): two nodes that cannot address
//! each other (both behind NAT) reach each other through a public node, which forwards inside
//! its engine; traffic moves to the second relay when the first stops answering.

use super::memory_tests::{ipv4, Net};
use std::time::Duration;

const TICK: Duration = Duration::from_millis(250);

/// A full mesh: two public nodes (`pub1`, `pub2`) and two NATed ones (`nat1`, `nat2`), pod
/// CIDRs 10.244.1–4.0/24 in that order. The NATed pair cannot reach each other directly.
fn mesh() -> Net {
    let mut net = Net::natted(
        "full",
        &[
            ("pub1", "r", false),
            ("pub2", "r", false),
            ("nat1", "r", false),
            ("nat2", "r", false),
        ],
        &["nat1", "nat2"],
    );
    net.set_blocked("nat1", "nat2", true);
    // the NATed nodes dial out first, as they would: the public ones learn where they are
    for from in ["nat1", "nat2"] {
        let me = if from == "nat1" { 3 } else { 4 };
        for to in [1, 2] {
            net.send(from, &ipv4([10, 244, me, 1], [10, 244, to, 1], b"hello"));
        }
    }
    // a few ticks: the sessions exchange hellos (who answers probes) and keepalives
    net.run(TICK, 8);
    net
}

fn got(net: &Net, to: &str, payload: &[u8]) -> bool {
    net.delivered
        .get(to)
        .is_some_and(|pkts| pkts.iter().any(|p| p.get(20..) == Some(payload)))
}

/// The peer `node` sends packets for `dst` to now.
fn carrier(net: &Net, node: &str, dst: [u8; 4]) -> String {
    let table = net.devices[node].peers();
    table
        .route(std::net::IpAddr::from(dst))
        .expect("a carrier")
        .name()
}

#[test]
fn a_natted_pair_reaches_each_other_through_a_relay_both_ways() {
    let mut net = mesh();
    let relay = carrier(&net, "nat1", [10, 244, 4, 1]);
    assert!(relay.starts_with("pub"), "relayed, not direct: {relay}");
    assert_eq!(
        carrier(&net, "nat2", [10, 244, 3, 1]),
        relay,
        "both sides pick the same relay"
    );
    net.send("nat1", &ipv4([10, 244, 3, 1], [10, 244, 4, 1], b"there"));
    assert!(got(&net, "nat2", b"there"), "delivered through {relay}");
    net.send("nat2", &ipv4([10, 244, 4, 1], [10, 244, 3, 1], b"back"));
    assert!(got(&net, "nat1", b"back"), "and answered");
    assert_eq!(net.devices[&relay].forwarded(), 2, "{relay} forwarded both");
    // a relay carries only for pairs that need it: a public node's range is its own
    assert_eq!(carrier(&net, "nat1", [10, 244, 2, 1]), "pub2");
    // and the relay's standing does not let it speak for a range it does not relay
    let nat1 = net.devices["nat1"].peers();
    let pub_peer = nat1.iter().find(|p| p.name() == relay).unwrap().clone();
    let other_public = if relay == "pub1" {
        "10.244.2.9"
    } else {
        "10.244.1.9"
    };
    assert!(!nat1.allows(&pub_peer, other_public.parse().unwrap()));
    assert!(nat1.allows(&pub_peer, "10.244.4.9".parse().unwrap()));
}

#[test]
fn traffic_moves_to_the_second_relay_when_the_first_stops_answering() {
    let mut net = mesh();
    let first = carrier(&net, "nat1", [10, 244, 4, 1]);
    let second = if first == "pub1" { "pub2" } else { "pub1" };
    net.down.insert(first.clone());
    // a flow that goes unanswered: liveness finds the relay down within seconds
    let mut t = Duration::ZERO;
    while carrier(&net, "nat1", [10, 244, 4, 1]) == first {
        net.send("nat1", &ipv4([10, 244, 3, 1], [10, 244, 4, 1], b"x"));
        net.run(TICK, 1);
        t += TICK;
        let health: Vec<String> = net.devices["nat1"]
            .peers()
            .iter()
            .map(|p| format!("{} {:?}", p.name(), p.liveness.health()))
            .collect();
        assert!(
            t < Duration::from_secs(10),
            "never left {first}: {health:?}"
        );
    }
    assert_eq!(carrier(&net, "nat1", [10, 244, 4, 1]), second);
    // nat2 must be reached by the second relay too: it keeps nat2's session by its keepalives
    // in life; here nat2 dialled both public nodes at the start
    net.send(
        "nat1",
        &ipv4([10, 244, 3, 1], [10, 244, 4, 1], b"via second"),
    );
    assert!(got(&net, "nat2", b"via second"));
    assert!(net.devices[second].forwarded() >= 1);
    println!("relay {first} down: traffic on {second} after {t:?} (simulated)");
}
