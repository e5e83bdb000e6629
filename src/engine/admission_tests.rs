//! Handshake admission between engines wired in memory: a flood past the bucket is answered
//! with cookies and wakes nothing, the bucket refills with the time given, forged MACs are not
//! even counted, and a real peer that takes the cookie completes its handshake with its next
//! initiation.

use super::memory_tests::{ipv4, Net};
use super::{Batch, DropReason, Scratch};
use crate::constants::{HANDSHAKE_BURST, HANDSHAKE_PER_SOURCE_BURST};
use crate::core::key::PublicKey;
use boringtun::noise::{Tunn, TunnResult};
use std::net::SocketAddr;

/// An initiation to `to` from a key no node knows: its MAC1 is valid (MAC1 is keyed by the
/// responder's public key), so before admission it cost the responder a Diffie-Hellman.
fn stranger_initiation(to: PublicKey) -> Vec<u8> {
    let key = crate::io::keyfile::generate();
    let mut tunn = Tunn::new(key.secret().clone(), to.to_x25519(), None, None, 7, None);
    let mut buf = [0u8; 256];
    match tunn.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        _ => panic!("no initiation"),
    }
}

fn stranger() -> SocketAddr {
    "192.0.2.99:4000".parse().unwrap()
}

/// Sends `datagram` to `node` `n` times from `from`; returns what the node sent back.
fn send_n(net: &Net, node: &str, from: SocketAddr, datagram: &[u8], n: u64) -> Vec<Vec<u8>> {
    let mut scratch = Scratch::new();
    let mut out = Batch::new();
    for _ in 0..n {
        net.devices[node].handle_datagram(net.now, from, datagram, &mut scratch, &mut out);
    }
    out.datagrams()
        .map(|(to, d)| {
            assert_eq!(to, from, "an answer went elsewhere than to the sender");
            d.to_vec()
        })
        .collect()
}

/// Puts `node` under load: a bucketful of valid-MAC1 initiations from a stranger, with no
/// time given (so nothing refills it).
fn overload(net: &Net, node: &str) {
    let init = stranger_initiation(net.devices[node].public_key());
    let answers = send_n(net, node, stranger(), &init, HANDSHAKE_BURST);
    assert!(
        answers.is_empty(),
        "a stranger was answered below the limit"
    );
}

fn pair() -> Net {
    Net::new("full", &[("a", "r", false), ("b", "r", false)])
}

#[test]
fn past_the_limit_valid_mac1_initiations_get_cookie_replies_and_wake_no_peer() {
    let net = pair();
    let b = &net.devices["b"];
    overload(&net, "b");
    // below the limit each was handled: a Diffie-Hellman revealed a key no peer has
    assert_eq!(b.drops(DropReason::UnknownPeer), HANDSHAKE_BURST);
    assert_eq!(b.cookie_replies(), 0);
    let init = stranger_initiation(b.public_key());
    // from anywhere, and from a's own endpoint, where a's session would have been tried first
    for from in [stranger(), net.addr["a"]] {
        let answers = send_n(&net, "b", from, &init, 10);
        assert_eq!(answers.len(), 10, "from {from}");
        for d in answers {
            assert_eq!((d.len(), d[0]), (64, 3), "a cookie reply");
            assert_eq!(
                &d[4..8],
                &init[4..8],
                "addressed to the initiation's sender index"
            );
        }
    }
    assert_eq!(b.cookie_replies(), 20);
    assert_eq!(b.drops(DropReason::RateLimited), 20);
    assert_eq!(
        b.drops(DropReason::UnknownPeer),
        HANDSHAKE_BURST,
        "a flood packet got past admission"
    );
    assert_eq!(b.awake_count(), 0, "the flood woke a peer");
}

#[test]
fn under_load_the_bucket_lets_one_initiation_through_per_millisecond_of_time_given() {
    let net = pair();
    let b = &net.devices["b"];
    overload(&net, "b");
    let init = stranger_initiation(b.public_key());
    let at = |t: std::time::Instant| {
        let mut out = Batch::new();
        b.handle_datagram(t, stranger(), &init, &mut Scratch::new(), &mut out);
        out.datagrams().count()
    };
    let t0 = net.now;
    // the first time given starts the clock: nothing earned yet
    assert_eq!(at(t0), 1, "a cookie reply");
    let later = t0 + std::time::Duration::from_micros(10_500);
    let answers: usize = (0..11).map(|_| at(later)).sum();
    assert_eq!(
        answers, 1,
        "10.5 ms earned 10 admissions, the 11th got a cookie"
    );
    assert_eq!(b.drops(DropReason::UnknownPeer), HANDSHAKE_BURST + 10);
    assert_eq!(b.cookie_replies(), 2);
}

#[test]
fn initiations_with_a_forged_mac1_are_dropped_uncounted_and_never_answered() {
    let mut net = pair();
    let mut forged = stranger_initiation(net.devices["b"].public_key());
    forged[120] ^= 1; // inside MAC1 (bytes 116..132)
    for from in [stranger(), net.addr["a"]] {
        let answers = send_n(&net, "b", from, &forged, HANDSHAKE_BURST);
        assert!(answers.is_empty());
    }
    let b = &net.devices["b"];
    assert_eq!(
        b.drops(DropReason::Decrypt),
        2 * HANDSHAKE_BURST,
        "each forged MAC1 is a decrypt failure"
    );
    assert_eq!(
        b.drops(DropReason::UnknownPeer),
        0,
        "a forged MAC1 got a DH"
    );
    assert_eq!(b.awake_count(), 0);
    // two bucketfuls of forgeries took no token: a real handshake needs no cookie
    let pkt = ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"after the forgeries");
    net.send("a", &pkt);
    assert_eq!(net.delivered["b"], vec![pkt]);
    assert_eq!(net.devices["b"].cookie_replies(), 0);
}

#[test]
fn under_a_flood_a_peer_takes_the_cookie_and_its_retry_with_mac2_completes_the_handshake() {
    let mut net = pair();
    overload(&net, "b");
    let pkt = ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"through the flood");
    // a initiates; b answers with a cookie, which a's session takes
    net.send("a", &pkt);
    assert!(!net.delivered.contains_key("b"));
    assert_eq!(net.devices["b"].cookie_replies(), 1);
    assert_eq!(net.devices["b"].awake_count(), 0);
    // a's retransmit timer resends after 5 s of real time (boringtun's own clock): resend now
    let a_to_b = net.devices["a"].peers().iter().next().unwrap().clone();
    let retry = {
        let mut session = a_to_b.active().expect("a's session");
        let mut buf = [0u8; 256];
        match session.format_handshake_initiation(&mut buf, true) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            _ => panic!("no retry"),
        }
    };
    assert_ne!(&retry[132..148], &[0u8; 16], "the retry carries MAC2");
    net.pump(vec![("b".into(), net.addr["a"], retry)]);
    assert_eq!(
        net.devices["b"].cookie_replies(),
        1,
        "the retry was refused"
    );
    assert_eq!(net.delivered["b"], vec![pkt], "the queued packet arrived");
    let a_on_b = net.only_peer("b");
    assert!(a_on_b.last_handshake.is_some());
}

#[test]
fn under_load_an_address_that_answers_its_cookie_still_gets_only_its_own_few_handshakes() {
    let mut net = pair();
    overload(&net, "b");
    net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"x"));
    assert_eq!(net.devices["b"].cookie_replies(), 1, "a took a cookie");
    let a_to_b = net.devices["a"].peers().iter().next().unwrap().clone();
    let mut answered = 0;
    for _ in 0..HANDSHAKE_PER_SOURCE_BURST + 3 {
        let retry = {
            let mut session = a_to_b.active().expect("a's session");
            let mut buf = [0u8; 256];
            match session.format_handshake_initiation(&mut buf, true) {
                TunnResult::WriteToNetwork(d) => d.to_vec(),
                _ => panic!("no retry"),
            }
        };
        answered += send_n(&net, "b", net.addr["a"], &retry, 1).len();
    }
    let b = &net.devices["b"];
    assert_eq!(
        answered as u64, HANDSHAKE_PER_SOURCE_BURST,
        "one response each"
    );
    assert_eq!(
        b.drops(DropReason::RateLimited),
        1 + 3,
        "the cookied one and the three past a's own bucket"
    );
    assert_eq!(b.cookie_replies(), 1, "a holds a valid cookie: no new one");
}
