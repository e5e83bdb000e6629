//! Static-key rotation between engines wired in memory: real handshakes, simulated timers.

use super::control_message::{self as control, Message};
use super::memory_tests::{ipv4, Net};
use super::{Batch, DropReason, Scratch};
use crate::core::key::{PrivateKey, PublicKey};
use crate::core::rotation::NodeState;
use boringtun::noise::{Tunn, TunnResult};
use std::time::Duration;

const STEP: Duration = Duration::from_millis(100);

fn four() -> Net {
    Net::new(
        "full",
        &[
            ("a", "r", false),
            ("b", "r", false),
            ("c", "r", false),
            ("d", "r", false),
        ],
    )
}

fn addr(i: u8) -> [u8; 4] {
    [10, 244, i, 1]
}

/// Sends one packet between every ordered pair; returns how many did not arrive.
fn all_pairs_lost(net: &mut Net, round: u32) -> usize {
    let mut lost = 0;
    for from in 1..=4u8 {
        for to in 1..=4u8 {
            if from == to {
                continue;
            }
            let name = ((b'a' + to - 1) as char).to_string();
            let payload = format!("round {round} {from}->{to}");
            let pkt = ipv4(addr(from), addr(to), payload.as_bytes());
            let before = net.delivered.get(&name).map_or(0, Vec::len);
            net.send(&((b'a' + from - 1) as char).to_string(), &pkt);
            let got = net.delivered.get(&name).map_or(0, Vec::len);
            if got != before + 1 || net.delivered[&name].last() != Some(&pkt) {
                lost += 1;
            }
        }
    }
    lost
}

/// Feeds a handshake initiation from a `Tunn` (`private` → `to_key`), sent from node `from`'s
/// address, to node `to`; returns whether `to` answered.
fn handshake_answered(
    net: &mut Net,
    (from, private): (&str, &PrivateKey),
    to: &str,
    to_key: PublicKey,
) -> bool {
    let mut tunn = Tunn::new(
        private.secret().clone(),
        to_key.to_x25519(),
        None,
        None,
        0x0f_0000,
        None,
    );
    let mut buf = vec![0u8; 2048];
    let TunnResult::WriteToNetwork(init) = tunn.format_handshake_initiation(&mut buf, false) else {
        panic!("no initiation")
    };
    let init = init.to_vec();
    let mut out = Batch::new();
    let from = net.addr[from];
    net.devices[to].handle_datagram(net.now, from, &init, &mut Scratch::new(), &mut out);
    let answered = out.datagrams().count() > 0;
    answered
}

#[test]
fn a_rotating_node_loses_no_packet_and_its_old_key_is_refused_after_the_grace_window() {
    let mut net = four();
    assert_eq!(all_pairs_lost(&mut net, 0), 0, "mesh forms");
    let old_a = net.devices["a"].private_key();
    let b_key = net.devices["b"].private_key();
    let new_a = crate::io::keyfile::generate();
    net.devices["a"].rotate(new_a.clone(), net.now).unwrap();
    let mut lost = 0;
    for round in 1..=1300 {
        net.run(STEP, 1);
        lost += all_pairs_lost(&mut net, round);
    }
    assert_eq!(lost, 0, "no packet lost during the rotation");
    assert_eq!(
        net.devices["a"].rotation_state(),
        NodeState::Stable {
            key: new_a.public_key()
        }
    );
    for peer in ["b", "c", "d"] {
        let table = net.devices[peer].peers();
        let a = table.iter().find(|p| p.name() == "a").unwrap();
        assert_eq!(a.keys().accepted(), vec![new_a.public_key()], "{peer}");
        assert_eq!(a.session_keys().len(), 1, "{peer} dropped the old session");
        assert_eq!(a.active().expect("awake").theirs, new_a.public_key());
    }
    // whoever holds only a's old key cannot get a handshake answered by b
    assert!(!handshake_answered(
        &mut net,
        ("a", &old_a),
        "b",
        b_key.public_key()
    ));
    assert!(net.devices["b"].drops(DropReason::UnknownPeer) >= 1);
    // and a no longer answers handshakes addressed to its old key
    assert!(!handshake_answered(
        &mut net,
        ("b", &b_key),
        "a",
        old_a.public_key()
    ));
    // the new key is answered
    assert!(handshake_answered(
        &mut net,
        ("b", &b_key),
        "a",
        new_a.public_key()
    ));
    assert_eq!(all_pairs_lost(&mut net, 9999), 0);
}

#[test]
fn every_node_rotating_at_once_converges_on_the_new_keys_without_loss() {
    let mut net = four();
    assert_eq!(all_pairs_lost(&mut net, 0), 0);
    let mut new = std::collections::HashMap::new();
    for n in ["a", "b", "c", "d"] {
        let k = crate::io::keyfile::generate();
        net.devices[n].rotate(k.clone(), net.now).unwrap();
        new.insert(n.to_string(), k.public_key());
    }
    let mut lost = 0;
    for round in 1..=1300 {
        net.run(STEP, 1);
        lost += all_pairs_lost(&mut net, round);
    }
    assert_eq!(lost, 0);
    for n in ["a", "b", "c", "d"] {
        assert_eq!(net.devices[n].public_key(), new[n]);
        for p in net.devices[n].peers().iter() {
            let (_, ours, theirs) = p.session_keys()[0];
            assert_eq!(
                (ours, theirs),
                (new[n], new[&p.name()]),
                "{n} → {}",
                p.name()
            );
            assert_eq!(p.session_keys().len(), 1);
        }
    }
}

#[test]
fn an_announcement_relayed_through_a_hub_is_ignored_and_counted() {
    let mut net = Net::two_hub_regions();
    net.send("s1", &ipv4(addr(2), addr(4), b"warm up"));
    let mallory = crate::io::keyfile::generate().public_key();
    let forged = Message::KeyAnnounce {
        new_public: mallory,
        effective_ms: 60_000,
    };
    // a pod behind s2 claims that s1's hub h1 has a new key... but the packet reaches s1
    // inside h1's session with a source address other than h1's (s2's own address would be
    // stopped before it left s2: see the firewall tests)
    let pkt = control::build([10, 244, 4, 7].into(), addr(2).into(), &forged, 0);
    net.send("s2", &pkt);
    assert_eq!(net.devices["s1"].drops(DropReason::ForgedAnnouncement), 1);
    for p in net.devices["s1"].peers().iter() {
        assert!(!p.keys().accepts(&mallory));
        assert_eq!(p.session_keys().len(), 1);
    }
}
