//! Engines wired to each other in memory: real handshakes and real encryption, no sockets.

use super::{Batch, Device, DropReason, Scratch};
use crate::core::key::PrivateKey;
use crate::core::plan::Plan;
use crate::core::topology::Topology;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

struct Net {
    devices: HashMap<String, Device>,
    addr: HashMap<String, SocketAddr>,
    /// What each node's tun device received.
    delivered: HashMap<String, Vec<Vec<u8>>>,
}

impl Net {
    /// `nodes`: (name, region, hub). Node i gets 10.244.(i+1).0/24 and underlay 192.0.2.(i+1).
    fn new(mode: &str, nodes: &[(&str, &str, bool)]) -> Net {
        let keys: Vec<PrivateKey> = nodes.iter().map(|_| PrivateKey::generate()).collect();
        let mut text = format!("mode = \"{mode}\"\ncluster-cidr = \"10.244.0.0/16\"\n");
        for (i, (name, region, hub)) in nodes.iter().enumerate() {
            text.push_str(&format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"{region}\"\nendpoint = \"192.0.2.{}:51820\"\npublic-key = \"{}\"\npod-cidr = \"10.244.{}.0/24\"\nhub = {hub}\n",
                i + 1,
                keys[i].public_key(),
                i + 1
            ));
        }
        let topo = Topology::parse(&text, Path::new("mem.toml")).unwrap();
        let mut net = Net {
            devices: HashMap::new(),
            addr: HashMap::new(),
            delivered: HashMap::new(),
        };
        for (i, (name, _, _)) in nodes.iter().enumerate() {
            let plan = Plan::compute(&topo, name).unwrap();
            net.devices
                .insert(name.to_string(), Device::new(keys[i].clone(), &plan));
            net.addr.insert(
                name.to_string(),
                format!("192.0.2.{}:51820", i + 1).parse().unwrap(),
            );
        }
        net
    }

    fn name_of(&self, addr: SocketAddr) -> String {
        self.addr
            .iter()
            .find(|(_, a)| **a == addr)
            .map(|(n, _)| n.clone())
            .unwrap()
    }

    /// Injects a packet into `from`'s tun device and runs the network until it is quiet.
    fn send(&mut self, from: &str, pkt: &[u8]) {
        let mut scratch = Scratch::new();
        let mut batch = Batch::new();
        self.devices[from].handle_tun_packet(pkt, &mut scratch, &mut batch);
        let mut pending: Vec<(String, SocketAddr, Vec<u8>)> = Vec::new();
        let me = self.addr[from];
        pending.extend(
            batch
                .datagrams()
                .map(|(to, d)| (self.name_of(to), me, d.to_vec())),
        );
        let mut rounds = 0;
        while let Some((to, src, dgram)) = pending.pop() {
            rounds += 1;
            assert!(rounds < 100, "the network never went quiet");
            let mut out = Batch::new();
            self.devices[&to].handle_datagram(src, &dgram, &mut scratch, &mut out);
            let here = self.addr[&to];
            for (dst, d) in out.datagrams() {
                pending.insert(0, (self.name_of(dst), here, d.to_vec()));
            }
            for p in out.tun_packets() {
                self.delivered
                    .entry(to.clone())
                    .or_default()
                    .push(p.to_vec());
            }
        }
    }
}

fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

#[test]
fn two_engines_handshake_and_deliver_the_first_packet() {
    let mut net = Net::new("full", &[("a", "r", false), ("b", "r", false)]);
    let pkt = ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"hello over wireguard");
    net.send("a", &pkt);
    assert_eq!(net.delivered["b"], vec![pkt.clone()]);
    // the session is up now: the next packet is one datagram, delivered directly
    net.send("a", &pkt);
    assert_eq!(net.delivered["b"].len(), 2);
    let b_peer = net.devices["b"].peers().iter().next().unwrap().snapshot();
    assert!(b_peer.last_handshake.is_some());
    assert_eq!(b_peer.rx_packets, 2);
}

#[test]
fn a_spoofed_inner_source_is_dropped_and_counted() {
    let mut net = Net::new(
        "full",
        &[("a", "r", false), ("b", "r", false), ("c", "r", false)],
    );
    // a claims to be c
    let pkt = ipv4([10, 244, 3, 1], [10, 244, 2, 1], b"spoof");
    net.send("a", &pkt);
    assert!(!net.delivered.contains_key("b"));
    assert_eq!(net.devices["b"].drops(DropReason::SourceNotAllowed), 1);
}

#[test]
fn spoke_to_spoke_crosses_both_hubs_without_the_kernel() {
    let mut net = Net::new(
        "hub",
        &[
            ("h1", "r1", true),
            ("s1", "r1", false),
            ("h2", "r2", true),
            ("s2", "r2", false),
        ],
    );
    let pkt = ipv4([10, 244, 2, 1], [10, 244, 4, 1], b"across regions");
    net.send("s1", &pkt);
    let got = &net.delivered["s2"];
    assert_eq!(got.len(), 1);
    assert_eq!(got[0][8], 62, "two hubs each took one off the TTL");
    assert_eq!(&got[0][20..], b"across regions");
    assert!(!net.delivered.contains_key("h1") && !net.delivered.contains_key("h2"));
    assert_eq!(
        net.devices["h1"]
            .forwarded
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_packet_for_an_unknown_destination_is_dropped_as_no_route() {
    let mut net = Net::new("full", &[("a", "r", false), ("b", "r", false)]);
    net.send("a", &ipv4([10, 244, 1, 1], [192, 0, 2, 200], b"x"));
    assert_eq!(net.devices["a"].drops(DropReason::NoRoute), 1);
}

#[test]
fn garbage_datagrams_are_counted_never_panic() {
    let net = Net::new("full", &[("a", "r", false), ("b", "r", false)]);
    let mut scratch = Scratch::new();
    let mut out = Batch::new();
    let from: SocketAddr = "192.0.2.9:1".parse().unwrap();
    let mut junk = vec![
        vec![],
        vec![1, 0, 0, 0],
        vec![4, 0, 0, 0, 1, 1, 0, 0],
        vec![0xff; 200],
    ];
    let mut data = vec![4u8, 0, 0, 0];
    data.extend_from_slice(&(1u32 << 8).to_le_bytes());
    data.extend_from_slice(&[0; 40]);
    junk.push(data);
    let mut init = vec![1u8, 0, 0, 0];
    init.resize(148, 7);
    junk.push(init);
    for j in &junk {
        net.devices["a"].handle_datagram(from, j, &mut scratch, &mut out);
    }
    assert!(out.is_empty());
    let dropped: u64 = DropReason::ALL
        .iter()
        .map(|r| net.devices["a"].drops(*r))
        .sum();
    assert_eq!(dropped, junk.len() as u64);
}

#[test]
fn a_replayed_handshake_initiation_counts_as_a_handshake_failure_of_that_peer() {
    let net = Net::new("full", &[("a", "r", false), ("b", "r", false)]);
    let mut scratch = Scratch::new();
    let mut init = Batch::new();
    let b_on_a = net.devices["a"].peers().iter().next().unwrap().clone();
    net.devices["a"].initiate(&b_on_a, &mut scratch, &mut init);
    let (_, datagram) = init.datagrams().next().unwrap();
    let datagram = datagram.to_vec();
    let from = net.addr["a"];
    for _ in 0..2 {
        let mut out = Batch::new();
        net.devices["b"].handle_datagram(from, &datagram, &mut scratch, &mut out);
    }
    let a_on_b = net.devices["b"].peers().iter().next().unwrap().snapshot();
    assert_eq!(a_on_b.handshake_failures, 1);
    assert_eq!(net.devices["b"].drops(DropReason::Decrypt), 1);
}

#[test]
fn a_burst_to_one_peer_is_encrypted_in_place_leaves_as_one_gso_run_and_arrives_in_order() {
    let mut net = Net::new("full", &[("a", "r", false), ("b", "r", false)]);
    net.send(
        "a",
        &ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"warm up the session"),
    );
    let mut scratch = Scratch::new();
    let mut burst = Batch::new();
    let pkts: Vec<Vec<u8>> = (0..40u8)
        .map(|i| ipv4([10, 244, 1, 1], [10, 244, 2, 1], &[i; 1000]))
        .collect();
    for p in &pkts {
        net.devices["a"].handle_tun_packet(p, &mut scratch, &mut burst);
    }
    let runs: Vec<_> = burst.datagram_runs(64).collect();
    assert_eq!(runs.len(), 1, "equal packets to one peer make one run");
    assert_eq!(runs[0].contents.len(), 40 * runs[0].segment);
    let mut out = Batch::new();
    for d in runs[0].contents.chunks(runs[0].segment) {
        net.devices["b"].handle_datagram(net.addr["a"], d, &mut scratch, &mut out);
    }
    let got: Vec<&[u8]> = out.tun_packets().collect();
    let want: Vec<&[u8]> = pkts.iter().map(|p| &p[..]).collect();
    assert_eq!(got, want);
}
