//! The responder's wait for confirmation, between engines wired in memory: what it sends
//! before the initiator confirms, and how many handshakes a pair needs.

use super::memory_tests::{ipv4, Net};
use super::{Batch, Scratch};
use std::net::SocketAddr;

const INITIATION: u8 = 1;
const DATA: u8 = 4;

fn pair() -> Net {
    Net::new("full", &[("a", "r", false), ("b", "r", false)])
}

fn a_to_b() -> Vec<u8> {
    ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"from a")
}

fn b_to_a() -> Vec<u8> {
    ipv4([10, 244, 2, 1], [10, 244, 1, 1], b"from b")
}

/// Datagrams in flight: (to, from, bytes).
type Wire = Vec<(String, SocketAddr, Vec<u8>)>;

fn from_tun(net: &Net, node: &str, pkt: &[u8]) -> Wire {
    let mut out = Batch::new();
    net.devices[node].handle_tun_packet(net.now, pkt, &mut Scratch::new(), &mut out);
    collect(net, node, &out)
}

/// Hands each datagram to its node; returns what they sent back and what reached their tun.
fn deliver(net: &Net, wire: Wire) -> (Wire, Vec<(String, Vec<u8>)>) {
    let mut sent = Vec::new();
    let mut tun = Vec::new();
    for (to, from, d) in wire {
        let mut out = Batch::new();
        net.devices[&to].handle_datagram(net.now, from, &d, &mut Scratch::new(), &mut out);
        sent.extend(collect(net, &to, &out));
        tun.extend(out.tun_packets().map(|p| (to.clone(), p.to_vec())));
    }
    (sent, tun)
}

fn collect(net: &Net, node: &str, out: &Batch) -> Wire {
    let other = if node == "a" { "b" } else { "a" };
    out.datagrams()
        .map(|(to, d)| {
            assert_eq!(to, net.addr[other]);
            (other.to_string(), net.addr[node], d.to_vec())
        })
        .collect()
}

fn kinds(wire: &Wire) -> Vec<u8> {
    wire.iter().map(|(_, _, d)| d[0]).collect()
}

#[test]
fn a_responder_holds_its_packets_until_confirmed_and_starts_no_handshake() {
    let net = pair();
    let a_init = from_tun(&net, "a", &a_to_b());
    assert_eq!(kinds(&a_init), [INITIATION]);
    let (response, _) = deliver(&net, a_init);
    // b answered; before a's confirmation, b has something to send
    let held = from_tun(&net, "b", &b_to_a());
    assert!(
        held.is_empty(),
        "b sent {:?} before the initiator confirmed",
        kinds(&held)
    );
    // a completes: a keepalive confirms the session, then a's queued packet follows
    let (confirm, _) = deliver(&net, response);
    assert_eq!(kinds(&confirm), [DATA, DATA]);
    // b gets a's packet, and sends what it held
    let (released, tun_b) = deliver(&net, confirm);
    assert_eq!(tun_b, [("b".to_string(), a_to_b())]);
    assert_eq!(kinds(&released), [DATA]);
    let (_, tun_a) = deliver(&net, released);
    assert_eq!(tun_a, [("a".to_string(), b_to_a())]);
}

#[test]
fn crossing_initiations_make_two_handshakes_not_a_cascade() {
    let net = pair();
    // both send at once: each queues its packet behind an initiation
    let mut wire = from_tun(&net, "a", &a_to_b());
    wire.extend(from_tun(&net, "b", &b_to_a()));
    assert_eq!(kinds(&wire), [INITIATION, INITIATION]);
    let mut delivered = Vec::new();
    let mut initiations = 2;
    for _ in 0..6 {
        let (next, tun) = deliver(&net, wire);
        initiations += kinds(&next).iter().filter(|&&k| k == INITIATION).count();
        delivered.extend(tun);
        wire = next;
    }
    assert_eq!(initiations, 2, "a third handshake was started");
    delivered.sort();
    assert_eq!(
        delivered,
        [("a".to_string(), b_to_a()), ("b".to_string(), a_to_b())]
    );
}

#[test]
fn held_packets_go_out_with_a_new_handshake_when_no_confirmation_comes() {
    let mut net = pair();
    let a_init = from_tun(&net, "a", &a_to_b());
    let (_lost_response, _) = deliver(&net, a_init);
    assert!(from_tun(&net, "b", &b_to_a()).is_empty());
    // the response never arrives; b's wait runs out and it starts its own handshake
    net.run(std::time::Duration::from_millis(250), 22);
    assert_eq!(
        net.delivered.get("a").map(Vec::as_slice),
        Some(&[b_to_a()][..]),
        "b's held packet arrived after b's own handshake"
    );
}
