//! Lazy peer state between engines wired in memory: who holds a session, when it is given
//! back, and that the next packet finds its way without loss.

use super::memory_tests::{ipv4, Net};
use super::DropReason;
use std::time::Duration;

const STEP: Duration = Duration::from_millis(250);

fn three() -> Net {
    Net::new(
        "full",
        &[("a", "r", false), ("b", "r", false), ("c", "r", false)],
    )
}

fn addr(i: u8) -> [u8; 4] {
    [10, 244, i, 1]
}

fn awake(net: &Net, node: &str) -> usize {
    net.devices[node].awake_count()
}

#[test]
fn configured_peers_hold_no_session_until_a_packet_needs_one() {
    let mut net = three();
    net.run(STEP, 8);
    for n in ["a", "b", "c"] {
        assert_eq!(awake(&net, n), 0, "{n} woke a peer without traffic");
    }
    let pkt = ipv4(addr(1), addr(2), b"first");
    net.send("a", &pkt);
    assert_eq!(
        net.delivered["b"],
        vec![pkt],
        "the first packet waits for the handshake"
    );
    assert_eq!(awake(&net, "a"), 1);
    assert_eq!(awake(&net, "b"), 1, "the responder woke for the handshake");
    assert_eq!(awake(&net, "c"), 0);
}

#[test]
fn an_idle_peer_is_released_and_the_next_packet_brings_it_back_without_loss() {
    let mut net = three();
    for d in net.devices.values() {
        d.set_release_after(Some(Duration::from_secs(5)));
    }
    let ping = ipv4(addr(1), addr(2), b"before");
    net.send("a", &ping);
    let reply = ipv4(addr(2), addr(1), b"reply");
    net.send("b", &reply);
    assert_eq!(net.delivered["a"], vec![reply]);
    // discovery settles, probes stop once the path is idle, then the quiet period runs out
    net.run(STEP, 4 * 40);
    assert_eq!(awake(&net, "a"), 0, "a kept its session state");
    assert_eq!(awake(&net, "b"), 0, "b kept its session state");
    assert!(net.devices["a"].releases() >= 1);
    // both directions, each starting from a released peer
    for (i, (from, to, f, t)) in [("a", "b", 1, 2), ("b", "a", 2, 1)].into_iter().enumerate() {
        let before = net.delivered.get(to).map_or(0, Vec::len);
        let pkt = ipv4(addr(f), addr(t), format!("after {i}").as_bytes());
        net.send(from, &pkt);
        assert_eq!(net.delivered[to].len(), before + 1, "{from}->{to} lost");
        assert_eq!(net.delivered[to].last(), Some(&pkt));
    }
    let snapshot = net.devices["a"]
        .peers()
        .by_key(&b_key(&net))
        .unwrap()
        .snapshot(net.now, net.wall);
    assert!(snapshot.last_handshake.is_some());
}

#[test]
fn data_for_a_session_released_early_starts_a_new_handshake() {
    let mut net = three();
    // only a releases early; b keeps its session and keeps sending on it
    net.devices["a"].set_release_after(Some(Duration::from_secs(5)));
    net.send("a", &ipv4(addr(1), addr(2), b"hello"));
    net.run(STEP, 4 * 40);
    assert_eq!(awake(&net, "a"), 0);
    assert_eq!(awake(&net, "b"), 1);
    let lost = ipv4(addr(2), addr(1), b"into the released session");
    net.send("b", &lost);
    assert_eq!(net.devices["a"].drops(DropReason::StaleSession), 1);
    let next = ipv4(addr(2), addr(1), b"on the new session");
    net.send("b", &next);
    assert_eq!(net.delivered["a"].last(), Some(&next));
}

fn b_key(net: &Net) -> crate::core::key::PublicKey {
    net.devices["b"].public_key()
}
