//! Relays and hole punching in a full mesh, in memory (docs/nat.md, sections 3 and 4): two
//! nodes that cannot address each other (both behind NAT) reach each other through a public
//! node, which forwards inside its engine; traffic moves to the second relay when the first
//! stops answering; an introduction lets the pair go direct where their NATs allow it, and
//! keeps them relayed where they do not.

use super::memory_tests::{ipv4, Net};
use std::time::Duration;

const TICK: Duration = Duration::from_millis(250);

/// A full mesh: two public nodes (`pub1`, `pub2`) and two NATed ones (`nat1`, `nat2`), pod
/// CIDRs 10.244.1–4.0/24 in that order. The NATed pair cannot reach each other directly.
fn mesh() -> Net {
    let mut net = mesh_with(true);
    // a few ticks: the sessions exchange hellos (who answers probes) and keepalives
    net.run(TICK, 8);
    net
}

/// As [`mesh`]; `filtered` says whether the two NATs drop each other's datagrams whatever is
/// sent (endpoint-dependent mappings), or let a pair that punches through (independent ones).
fn mesh_with(filtered: bool) -> Net {
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
    net.set_blocked("nat1", "nat2", filtered);
    // the NATed nodes dial out first, as they would: the public ones learn where they are
    for from in ["nat1", "nat2"] {
        let me = if from == "nat1" { 3 } else { 4 };
        for to in [1, 2] {
            net.send(from, &ipv4([10, 244, me, 1], [10, 244, to, 1], b"hello"));
        }
    }
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

/// The peer `node` knows as `name`.
fn peer_of(net: &Net, node: &str, name: &str) -> std::sync::Arc<super::Peer> {
    let table = net.devices[node].peers();
    let found = table.iter().find(|p| p.name() == name).expect("peer");
    found.clone()
}

#[test]
fn an_introduction_takes_a_pair_whose_nats_allow_it_direct_and_the_relay_stops_forwarding() {
    let mut net = mesh_with(false);
    let relay = carrier(&net, "nat1", [10, 244, 4, 1]);
    let mut t = Duration::ZERO;
    // a flow both ways while the introduction and the punch happen, each packet numbered:
    // none may be lost while the pair moves from the relay to the direct path
    let mut n = 0u16;
    let tagged = |tag: u8, n: u16| [tag, (n >> 8) as u8, n as u8];
    let moving = |net: &mut Net, n: u16| {
        net.send(
            "nat1",
            &ipv4([10, 244, 3, 1], [10, 244, 4, 1], &tagged(b'i', n)),
        );
        net.send(
            "nat2",
            &ipv4([10, 244, 4, 1], [10, 244, 3, 1], &tagged(b'o', n)),
        );
        net.run(TICK, 1);
    };
    while carrier(&net, "nat1", [10, 244, 4, 1]) != "nat2"
        || carrier(&net, "nat2", [10, 244, 3, 1]) != "nat1"
    {
        moving(&mut net, n);
        n += 1;
        t += TICK;
        assert!(t < Duration::from_secs(10), "never went direct");
    }
    // and a few more on the direct path
    for _ in 0..8 {
        moving(&mut net, n);
        n += 1;
    }
    let lost: Vec<u16> = (0..n)
        .filter(|&i| !got(&net, "nat2", &tagged(b'i', i)) || !got(&net, "nat1", &tagged(b'o', i)))
        .collect();
    assert!(lost.is_empty(), "lost while moving off the relay: {lost:?}");
    println!("direct after {t:?} (simulated, from the NATed nodes' first packets)");
    assert!(
        t <= Duration::from_secs(3),
        "goal: direct within 3 s, took {t:?}"
    );
    let view = net.devices["nat1"].punch_view(&peer_of(&net, "nat1", "nat2"));
    assert!(view.successes >= 1, "{view:?}");
    assert_eq!(view.punched, Some(net.addr["nat2"]));
    // from now on the relay carries none of the pair's traffic
    let before = net.devices[&relay].forwarded();
    for i in 0..20u8 {
        net.send("nat1", &ipv4([10, 244, 3, 1], [10, 244, 4, 1], &[b'd', i]));
        net.send("nat2", &ipv4([10, 244, 4, 1], [10, 244, 3, 1], &[b'e', i]));
        assert!(got(&net, "nat2", &[b'd', i]), "packet {i} there");
        assert!(got(&net, "nat1", &[b'e', i]), "packet {i} back");
    }
    assert_eq!(
        net.devices[&relay].forwarded(),
        before,
        "{relay} forwarded none"
    );
}

#[test]
fn a_pair_whose_nats_filter_each_other_stays_relayed_and_keeps_asking_with_backoff() {
    let mut net = mesh_with(true);
    for _ in 0..(30 * 4) {
        net.send("nat1", &ipv4([10, 244, 3, 1], [10, 244, 4, 1], b"ping"));
        net.run(TICK, 1);
    }
    let relay = carrier(&net, "nat1", [10, 244, 4, 1]);
    assert!(relay.starts_with("pub"), "still relayed: {relay}");
    assert!(got(&net, "nat2", b"ping"));
    let view = net.devices["nat1"].punch_view(&peer_of(&net, "nat1", "nat2"));
    assert_eq!(view.successes, 0);
    // asks after 0, 1, 3, 7, 15 s (then 31 s): five in 30 s, each answered with a punch
    // (nat2's asks start punches on this side too)
    assert!(
        (5..=10).contains(&view.attempts),
        "backoff: {} punches in 30 s",
        view.attempts
    );
}

#[test]
fn a_punched_path_that_stops_carrying_hands_the_pair_back_to_the_relay_and_returns() {
    let mut net = mesh_with(false);
    let flow = |net: &mut Net, tag: u8| {
        net.send(
            "nat1",
            &ipv4([10, 244, 3, 1], [10, 244, 4, 1], &[b'p', tag]),
        );
        net.send(
            "nat2",
            &ipv4([10, 244, 4, 1], [10, 244, 3, 1], &[b'q', tag]),
        );
        net.run(TICK, 1);
    };
    let direct = |net: &Net| carrier(net, "nat1", [10, 244, 4, 1]) == "nat2";
    for i in 0..16 {
        flow(&mut net, i);
    }
    assert!(direct(&net), "direct after 4 s");
    // the NATs start dropping the pair's datagrams (a mapping gone, a firewall change): the
    // handshake is still fresh, but nothing is answered
    net.set_blocked("nat1", "nat2", true);
    let mut t = Duration::ZERO;
    while direct(&net) {
        flow(&mut net, 100);
        t += TICK;
        assert!(
            t < Duration::from_secs(10),
            "never left the dead direct path"
        );
    }
    println!("dead direct path left after {t:?} (simulated)");
    assert!(t <= Duration::from_secs(4), "within seconds: {t:?}");
    flow(&mut net, 200);
    assert!(got(&net, "nat2", &[b'p', 200]), "through the relay again");
    // the NATs let the pair through again: the next asks punch it direct once more
    net.set_blocked("nat1", "nat2", false);
    let mut back = Duration::ZERO;
    while !direct(&net) {
        flow(&mut net, 150);
        back += TICK;
        assert!(back < Duration::from_secs(70), "never went direct again");
    }
    println!("direct again after {back:?} (simulated)");
}
