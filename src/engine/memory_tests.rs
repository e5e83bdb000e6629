//! Engines wired to each other in memory: real handshakes and real encryption, no sockets.

use super::{Batch, Device, DropReason, Scratch};
use crate::core::key::PrivateKey;
use crate::core::plan::Plan;
use crate::core::topology::Topology;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// Where simulated wall-clock time starts: half an hour past an hour's start, so hour-long
/// PSK epochs do not turn under a short test.
pub(super) const WALL_START: Duration = Duration::from_secs(1_800_001_800);

pub(super) struct Net {
    pub devices: HashMap<String, Device>,
    pub addr: HashMap<String, SocketAddr>,
    /// What each node's tun device received.
    pub delivered: HashMap<String, Vec<Vec<u8>>>,
    /// Largest outer IPv4 packet (datagram + 28) the path between two nodes carries; larger
    /// ones vanish, as in a black hole without ICMP.
    limits: HashMap<(String, String), usize>,
    pub now: Instant,
    /// The wall clock at `now`, which PSK epochs follow.
    pub wall: SystemTime,
    /// How far a node's wall clock runs ahead of `wall` (clock skew between machines).
    pub ahead: HashMap<String, Duration>,
    /// Nodes that are down: they send, receive and tick nothing (a stopped process), and keep
    /// their state for when they are taken out again (a continued one).
    pub down: std::collections::HashSet<String>,
}

impl Net {
    /// `nodes`: (name, region, hub). Node i gets 10.244.(i+1).0/24 and underlay 192.0.2.(i+1).
    pub fn new(mode: &str, nodes: &[(&str, &str, bool)]) -> Net {
        Net::new_with(mode, nodes, |_, key, plan, now, _| {
            Device::new(key, plan, now)
        })
    }

    /// Two regions, each a hub with one spoke: h1, s1 in r1; h2, s2 in r2 (pod CIDRs
    /// 10.244.1–4.0/24 in that order).
    pub fn two_hub_regions() -> Net {
        Net::new(
            "hub",
            &[
                ("h1", "r1", true),
                ("s1", "r1", false),
                ("h2", "r2", true),
                ("s2", "r2", false),
            ],
        )
    }

    /// Like [`new`](Self::new), but the topology gives the nodes named in `natted` no
    /// endpoint (they sit behind NAT: nobody can address them until they are heard from).
    pub fn natted(mode: &str, nodes: &[(&str, &str, bool)], natted: &[&str]) -> Net {
        Net::build(mode, nodes, natted, |_, key, plan, now, _| {
            Device::new(key, plan, now)
        })
    }

    /// Like [`new`](Self::new), each device made by `make(index, key, plan, now, wall)`.
    pub fn new_with(
        mode: &str,
        nodes: &[(&str, &str, bool)],
        make: impl Fn(usize, PrivateKey, &Plan, Instant, SystemTime) -> Device,
    ) -> Net {
        Net::build(mode, nodes, &[], make)
    }

    fn build(
        mode: &str,
        nodes: &[(&str, &str, bool)],
        natted: &[&str],
        make: impl Fn(usize, PrivateKey, &Plan, Instant, SystemTime) -> Device,
    ) -> Net {
        let keys: Vec<PrivateKey> = nodes
            .iter()
            .map(|_| crate::io::keyfile::generate())
            .collect();
        let mut text = format!("mode = \"{mode}\"\ncluster-cidr = \"10.244.0.0/16\"\n");
        for (i, (name, region, hub)) in nodes.iter().enumerate() {
            let endpoint = if natted.contains(name) {
                String::new()
            } else {
                format!("endpoint = \"192.0.2.{}:51820\"\n", i + 1)
            };
            text.push_str(&format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"{region}\"\n{endpoint}public-key = \"{}\"\npod-cidr = \"10.244.{}.0/24\"\nhub = {hub}\n",
                keys[i].public_key(),
                i + 1
            ));
        }
        let topo = Topology::parse(&text, Path::new("mem.toml")).unwrap();
        let mut net = Net {
            devices: HashMap::new(),
            addr: HashMap::new(),
            delivered: HashMap::new(),
            limits: HashMap::new(),
            now: Instant::now(),
            wall: SystemTime::UNIX_EPOCH + WALL_START,
            ahead: HashMap::new(),
            down: Default::default(),
        };
        for (i, (name, _, _)) in nodes.iter().enumerate() {
            let plan = Plan::compute(&topo, name).unwrap();
            net.devices.insert(
                name.to_string(),
                make(i, keys[i].clone(), &plan, net.now, net.wall),
            );
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
    pub fn send(&mut self, from: &str, pkt: &[u8]) {
        let mut scratch = Scratch::new();
        let mut batch = Batch::new();
        self.devices[from].handle_tun_packet(self.now, pkt, &mut scratch, &mut batch);
        let mut pending: Vec<(String, SocketAddr, Vec<u8>)> = Vec::new();
        let me = self.addr[from];
        pending.extend(
            batch
                .datagrams()
                .map(|(to, d)| (self.name_of(to), me, d.to_vec())),
        );
        // answers the engine wrote back into the sender's own tun (too big, rejected)
        for p in batch.tun_packets() {
            self.delivered
                .entry(from.to_string())
                .or_default()
                .push(p.to_vec());
        }
        self.pump(pending);
    }

    /// Drops every datagram between `a` and `b`, both ways (two NATs that filter each other),
    /// or carries them again.
    pub fn set_blocked(&mut self, a: &str, b: &str, blocked: bool) {
        let key = if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        };
        if blocked {
            self.limits.insert(key, 0);
        } else {
            self.limits.remove(&key);
        }
    }

    fn carries(&self, a: &str, b: &str, datagram_len: usize) -> bool {
        let key = if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        };
        self.limits
            .get(&key)
            .is_none_or(|&l| datagram_len + 28 <= l)
    }

    /// Delivers datagrams (and everything they cause) until the network is quiet.
    pub fn pump(&mut self, mut pending: Vec<(String, SocketAddr, Vec<u8>)>) {
        let mut scratch = Scratch::new();
        let mut rounds = 0;
        while let Some((to, src, dgram)) = pending.pop() {
            rounds += 1;
            assert!(rounds < 1000, "the network never went quiet");
            let from = self.name_of(src);
            if !self.carries(&from, &to, dgram.len())
                || self.down.contains(&to)
                || self.down.contains(&from)
            {
                continue;
            }
            let mut out = Batch::new();
            self.devices[&to].handle_datagram(self.now, src, &dgram, &mut scratch, &mut out);
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

impl Net {
    /// Advances simulated time by `step`, `steps` times, ticking every device each time.
    pub fn run(&mut self, step: Duration, steps: u32) {
        let mut scratch = Scratch::new();
        for _ in 0..steps {
            self.now += step;
            self.wall += step;
            let mut pending = Vec::new();
            let names: Vec<String> = self
                .devices
                .keys()
                .filter(|n| !self.down.contains(*n))
                .cloned()
                .collect();
            for name in names {
                let mut out = Batch::new();
                let wall = self.wall_of(&name);
                self.devices[&name].tick(self.now, wall, &mut scratch, &mut out);
                let me = self.addr[&name];
                pending.extend(
                    out.datagrams()
                        .map(|(to, d)| (self.name_of(to), me, d.to_vec())),
                );
            }
            self.pump(pending);
        }
    }

    /// `node`'s wall clock now.
    pub fn wall_of(&self, node: &str) -> SystemTime {
        self.wall + self.ahead.get(node).copied().unwrap_or_default()
    }

    /// `node`'s view now of its only peer (in a two-node mesh).
    pub fn only_peer(&self, node: &str) -> crate::engine::PeerSnapshot {
        let table = self.devices[node].peers();
        let p = table.iter().next().expect("a peer").clone();
        p.snapshot(self.now, self.wall)
    }

    fn peer_mtu(&self, node: &str, peer: &str) -> u16 {
        let table = self.devices[node].peers();
        let p = table.iter().find(|p| p.name() == peer).unwrap().clone();
        p.path.mtu()
    }
}

pub(super) use crate::testing::ipv4;

#[test]
fn two_engines_handshake_and_deliver_the_first_packet() {
    let mut net = Net::new("full", &[("a", "r", false), ("b", "r", false)]);
    let pkt = ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"hello over wireguard");
    net.send("a", &pkt);
    assert_eq!(net.delivered["b"], vec![pkt.clone()]);
    // the session is up now: the next packet is one datagram, delivered directly
    net.send("a", &pkt);
    assert_eq!(net.delivered["b"].len(), 2);
    let b_peer = net.only_peer("b");
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
    let mut net = Net::two_hub_regions();
    let pkt = ipv4([10, 244, 2, 1], [10, 244, 4, 1], b"across regions");
    net.send("s1", &pkt);
    let got = &net.delivered["s2"];
    assert_eq!(got.len(), 1);
    assert_eq!(got[0][8], 62, "two hubs each took one off the TTL");
    assert_eq!(&got[0][20..], b"across regions");
    assert!(!net.delivered.contains_key("h1") && !net.delivered.contains_key("h2"));
    assert_eq!(net.devices["h1"].forwarded(), 1);
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
        net.devices["a"].handle_datagram(net.now, from, j, &mut scratch, &mut out);
    }
    assert!(out.is_empty());
    let dropped: u64 = DropReason::ALL
        .iter()
        .map(|r| net.devices["a"].drops(*r))
        .sum();
    assert_eq!(dropped, junk.len() as u64);
    // junk initiations from a peer's own address wake nothing either
    let mut init = vec![1u8, 0, 0, 0];
    init.resize(148, 9);
    net.devices["a"].handle_datagram(net.now, net.addr["b"], &init, &mut scratch, &mut out);
    assert!(out.is_empty());
    assert_eq!(net.devices["a"].awake_count(), 0, "the junk woke b");
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
        net.devices["b"].handle_datagram(net.now, from, &datagram, &mut scratch, &mut out);
    }
    let a_on_b = net.only_peer("b");
    assert_eq!(a_on_b.handshake_failures, 1);
    assert_eq!(net.devices["b"].drops(DropReason::Decrypt), 1);
}

#[test]
fn an_initiation_from_another_peers_endpoint_is_matched_by_its_keys() {
    let net = Net::new(
        "full",
        &[("a", "r", false), ("b", "r", false), ("c", "r", false)],
    );
    let mut scratch = Scratch::new();
    let mut init = Batch::new();
    let peer_on = |node: &str, name: &str| {
        net.devices[node]
            .peers()
            .iter()
            .find(|p| p.name() == name)
            .unwrap()
            .clone()
    };
    net.devices["b"].initiate(&peer_on("b", "a"), &mut scratch, &mut init);
    let (_, datagram) = init.datagrams().next().unwrap();
    // b's initiation arrives from the address configured for c (b moved behind c's NAT)
    let mut out = Batch::new();
    net.devices["a"].handle_datagram(net.now, net.addr["c"], datagram, &mut scratch, &mut out);
    let (to, response) = out.datagrams().next().expect("a answered");
    assert_eq!((to, response[0]), (net.addr["c"], 2), "a response to b");
    assert!(peer_on("a", "b").is_awake());
    assert_eq!(
        peer_on("a", "c")
            .snapshot(net.now, net.wall)
            .handshake_failures,
        0
    );
    assert!(
        !peer_on("a", "c").is_awake(),
        "the wrong guess left c awake"
    );
    assert_eq!(net.devices["a"].awake_count(), 1);
    assert_eq!(net.devices["a"].drops(DropReason::Decrypt), 0);
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
        net.devices["a"].handle_tun_packet(net.now, p, &mut scratch, &mut burst);
    }
    let runs: Vec<_> = burst.datagram_runs(64).collect();
    assert_eq!(runs.len(), 1, "equal packets to one peer make one run");
    assert_eq!(runs[0].contents.len(), 40 * runs[0].segment);
    let mut out = Batch::new();
    for d in runs[0].contents.chunks(runs[0].segment) {
        net.devices["b"].handle_datagram(net.now, net.addr["a"], d, &mut scratch, &mut out);
    }
    let got: Vec<&[u8]> = out.tun_packets().collect();
    let want: Vec<&[u8]> = pkts.iter().map(|p| &p[..]).collect();
    assert_eq!(got, want);
}

#[test]
fn engines_discover_each_paths_exact_mtu_through_a_black_hole() {
    let mut net = Net::new(
        "full",
        &[("a", "r", false), ("b", "r", false), ("c", "r", false)],
    );
    net.limits.insert(("a".into(), "b".into()), 1400);
    net.limits.insert(("a".into(), "c".into()), 1361);
    // sessions first: one packet each way
    net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"hi"));
    net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 3, 1], b"hi"));
    net.send("b", &ipv4([10, 244, 2, 1], [10, 244, 3, 1], b"hi"));
    net.run(std::time::Duration::from_millis(100), 100);
    assert_eq!(net.peer_mtu("a", "b"), 1340, "1400 - 60");
    assert_eq!(net.peer_mtu("b", "a"), 1340);
    assert_eq!(net.peer_mtu("a", "c"), 1301, "1361 - 60");
    assert_eq!(
        net.peer_mtu("b", "c"),
        1440,
        "unlimited path: the 1500 ceiling"
    );

    let events = net.devices["a"].take_path_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e.cause == super::MtuCause::Discovered));
}

#[test]
fn a_path_that_carries_the_ceiling_settles_on_the_first_hello_without_probes() {
    let mut net = Net::new("full", &[("a", "r", false), ("b", "r", false)]);
    net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"hi"));
    // one tick sends the padded hellos (answered at once), the next applies the result
    net.run(std::time::Duration::from_millis(250), 2);
    for (node, peer) in [("a", "b"), ("b", "a")] {
        assert_eq!(net.peer_mtu(node, peer), 1440, "{node} to {peer}");
        let p = net.devices[node]
            .peers()
            .iter()
            .find(|p| p.name() == peer)
            .unwrap()
            .clone();
        assert_eq!(p.path.probes_sent(), 0, "{node} probed {peer}");
    }
}

#[test]
fn a_packet_too_big_for_its_path_gets_an_icmp_error_back_into_the_tun() {
    let mut net = Net::new("full", &[("a", "r", false), ("b", "r", false)]);
    net.limits.insert(("a".into(), "b".into()), 1400);
    net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"hi"));
    net.run(std::time::Duration::from_millis(100), 50);
    assert_eq!(net.peer_mtu("a", "b"), 1340);
    let mut big = ipv4([10, 244, 1, 1], [10, 244, 2, 1], &[7u8; 1321]);
    assert_eq!(big.len(), 1341);
    big[6] = 0x40; // DF
    let mut scratch = Scratch::new();
    let mut out = Batch::new();
    net.devices["a"].handle_tun_packet(net.now, &big, &mut scratch, &mut out);
    assert_eq!(out.datagrams().count(), 0, "nothing oversized goes out");
    let back: Vec<_> = out.tun_packets().collect();
    assert_eq!(back.len(), 1);
    assert_eq!((back[0][20], back[0][21]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([back[0][26], back[0][27]]), 1340);
    assert_eq!(net.devices["a"].drops(DropReason::TooBig), 1);
    // one byte less fits and arrives
    let fits = ipv4([10, 244, 1, 1], [10, 244, 2, 1], &[7u8; 1320]);
    net.send("a", &fits);
    assert!(net.delivered["b"].contains(&fits));
}

#[test]
fn control_messages_never_reach_the_tun_device() {
    let mut net = Net::new("full", &[("a", "r", false), ("b", "r", false)]);
    net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"hi"));
    net.run(std::time::Duration::from_millis(100), 30);
    for (node, pkts) in &net.delivered {
        for p in pkts {
            assert!(
                super::control_message::payload(p).is_none(),
                "{node} got a control message"
            );
        }
    }
    assert!(net.peer_mtu("a", "b") == 1440);
}
