//! Pair PSKs from a mesh secret between engines wired in memory.

use super::memory_tests::{ipv4, Net};
use super::{Device, PskSettings};
use crate::core::psk::MeshSecret;
use crate::core::rotation::RotationTiming;
use std::time::Duration;

fn settings(secret: u8, epoch_len: Duration) -> PskSettings {
    PskSettings {
        secret: MeshSecret::new(vec![secret; 32]).unwrap(),
        epoch_len,
    }
}

/// Two nodes; node i uses `psk[i]`, and its wall clock runs `ahead[i]` ahead of the other's.
fn pair(psk: [Option<PskSettings>; 2], ahead: [Duration; 2]) -> Net {
    let mut net = Net::new_with(
        "full",
        &[("a", "r", false), ("b", "r", false)],
        |i, key, plan, now, wall| {
            let timing = RotationTiming::default();
            Device::with_options(key, plan, timing, psk[i].clone(), now, wall + ahead[i])
        },
    );
    for (name, ahead) in ["a", "b"].into_iter().zip(ahead) {
        net.ahead.insert(name.to_string(), ahead);
    }
    net
}

const SAME_TIME: [Duration; 2] = [Duration::ZERO; 2];

fn delivered(net: &Net, node: &str) -> usize {
    net.delivered.get(node).map_or(0, Vec::len)
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn nodes_with_the_same_mesh_secret_handshake_and_deliver() {
    let s = || Some(settings(7, HOUR));
    let mut net = pair([s(), s()], SAME_TIME);
    net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"with psk"));
    net.send("b", &ipv4([10, 244, 2, 1], [10, 244, 1, 1], b"back"));
    assert_eq!((delivered(&net, "a"), delivered(&net, "b")), (1, 1));
}

#[test]
fn a_node_with_the_wrong_mesh_secret_or_none_never_completes_a_handshake() {
    for other in [Some(settings(8, HOUR)), None] {
        let mut net = pair([Some(settings(7, HOUR)), other], SAME_TIME);
        for _ in 0..5 {
            net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"x"));
            net.send("b", &ipv4([10, 244, 2, 1], [10, 244, 1, 1], b"y"));
            net.run(Duration::from_millis(250), 4);
        }
        assert_eq!(delivered(&net, "a") + delivered(&net, "b"), 0);
        // a responder answers an initiation (it cannot know better), but no initiator accepts
        // the answer, so no session ever carries a packet
        let mut refused = 0;
        for n in ["a", "b"] {
            let snap = net.only_peer(n);
            assert_eq!(snap.rx_packets, 0, "{n} received through a session");
            refused += snap.handshake_failures;
        }
        assert!(refused > 0, "the initiators refused the responses");
    }
}

#[test]
fn a_clock_one_epoch_ahead_is_tolerated_in_both_directions() {
    let mut net = pair(
        [Some(settings(7, HOUR)), Some(settings(7, HOUR))],
        [HOUR, Duration::ZERO],
    );
    net.send(
        "a",
        &ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"from the future"),
    );
    assert_eq!(delivered(&net, "b"), 1);
    let mut net = pair(
        [Some(settings(7, HOUR)), Some(settings(7, HOUR))],
        [HOUR, Duration::ZERO],
    );
    net.send(
        "b",
        &ipv4([10, 244, 2, 1], [10, 244, 1, 1], b"from the past"),
    );
    assert_eq!(delivered(&net, "a"), 1);
}

#[test]
fn traffic_crosses_epoch_turns_without_loss() {
    // simulated time: 2.6 s of wall clock, so the epoch turns twice, in 50 ms ticks
    let s = || Some(settings(7, Duration::from_secs(1)));
    let mut net = pair([s(), s()], SAME_TIME);
    let first = net.devices["a"].psk_epoch();
    let mut sent = 0;
    for _ in 0..52 {
        net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"tick"));
        net.send("b", &ipv4([10, 244, 2, 1], [10, 244, 1, 1], b"tock"));
        sent += 1;
        net.run(Duration::from_millis(50), 1);
    }
    assert_eq!(
        net.devices["a"].psk_epoch(),
        first.map(|e| e + 2),
        "the epoch turned twice"
    );
    assert_eq!((delivered(&net, "a"), delivered(&net, "b")), (sent, sent));
    let peer = net.devices["a"].peers().iter().next().unwrap().clone();
    assert!(peer.session_keys().len() <= 2, "old epochs are dropped");
}
