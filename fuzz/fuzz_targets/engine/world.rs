//! The engine's surroundings: a hub `a` (the device under test) with two spokes `b` and `c` in
//! its region and a hub `d` in another, dual stack, path-MTU discovery on. `a`, `b` and `c` are
//! real devices wired together in memory; `d` is only a peer in `a`'s table (what `a` sends it
//! is dropped). Keys are fixed, so every run builds the same peers, slots and addresses; `a`
//! and `b` complete a handshake while the world is built, `c` stays idle until traffic wakes it.
//! The handshakes' ephemeral keys and boringtun's own clock reads are the only randomness.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use wiremesh::core::key::PrivateKey;
use wiremesh::core::packet;
use wiremesh::core::plan::Plan;
use wiremesh::core::topology::Topology;
use wiremesh::engine::{Device, Peer, Scratch, Sink};

pub const A: usize = 0;
pub const B: usize = 1;
pub const C: usize = 2;
/// Index of `d` in [`World::addrs`]: it has no device.
pub const D: usize = 3;
/// An underlay address no peer has.
pub const STRANGER: usize = 4;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// Deliveries per [`World::pump`]: enough for a handshake, a forward and its answers, bounded
/// so that two engines that answer each other forever show up as a finding, not a hang.
const MAX_DELIVERIES: usize = 256;

/// What an engine asked to send or write during one call. It checks the contract the I/O
/// loops rely on: a datagram committed from `datagram_space` fits the space asked for.
#[derive(Default)]
pub struct Out {
    pub datagrams: Vec<(SocketAddr, Vec<u8>)>,
    pub tun: Vec<Vec<u8>>,
    space: Vec<u8>,
}

impl Sink for Out {
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) {
        assert!(!datagram.is_empty(), "an empty datagram sent to {to}");
        self.datagrams.push((to, datagram.to_vec()));
    }

    fn write_tun(&mut self, packet: &[u8]) {
        assert!(
            packet::destination(packet).is_some(),
            "the tun device gets IP packets only: {packet:02x?}"
        );
        self.tun.push(packet.to_vec());
    }

    fn datagram_space(&mut self, len: usize) -> &mut [u8] {
        self.space.clear();
        self.space.resize(len, 0);
        &mut self.space
    }

    fn commit_datagram(&mut self, to: SocketAddr, len: usize) {
        assert!(
            0 < len && len <= self.space.len(),
            "committed {len} bytes of a {} byte space",
            self.space.len()
        );
        self.datagrams.push((to, self.space[..len].to_vec()));
    }
}

pub struct World {
    /// `a`, `b`, `c`.
    pub devices: Vec<Device>,
    /// Underlay addresses of `a`, `b`, `c`, `d` and a stranger.
    pub addrs: [SocketAddr; 5],
    /// Overlay (tun) addresses of `a`, `b`, `c`, `d`: IPv4 then IPv6.
    pub overlay: [[IpAddr; 2]; 4],
    pub now: Instant,
    /// The wall clock at `now` (PSK epochs would follow it).
    pub wall: SystemTime,
    pub scratch: Scratch,
    /// Datagrams delivered to `a` lately (newest last), for replays.
    pub recent: Vec<(usize, Vec<u8>)>,
    /// Every datagram `a` received from a pump, for seed files.
    pub log: Vec<(usize, Vec<u8>)>,
    /// Packets `a` wrote to its tun device and datagrams it sent, for `WIREMESH_FUZZ_STATS`.
    pub a_out: (usize, usize),
}

pub fn private_key(node: usize) -> PrivateKey {
    PrivateKey::from_bytes([node as u8 + 1; 32])
}

fn topology_text() -> String {
    let mut text = String::from(
        "mode = \"hub\"\ncluster-cidr = \"10.244.0.0/16\"\ncluster-cidr-v6 = \"fd10:244::/56\"\n\
         persistent-keepalive = 25\n[region.r1]\nunderlay-mtu = 1500\n[region.r2]\nunderlay-mtu = 1400\n",
    );
    let endpoints = [
        "192.0.2.1:51820",
        "192.0.2.2:51820",
        "[2001:db8::3]:51820",
        "198.51.100.4:51820",
    ];
    for (i, name) in NAMES.iter().enumerate() {
        let region = if i == D { "r2" } else { "r1" };
        let hub = i == A || i == D;
        text.push_str(&format!(
            "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"{region}\"\nendpoint = \"{}\"\n\
             public-key = \"{}\"\npod-cidr = \"10.244.{}.0/24\"\npod-cidr-v6 = \"fd10:244:0:{}::/64\"\nhub = {hub}\n",
            endpoints[i],
            private_key(i).public_key(),
            i + 1,
            i + 1,
        ));
    }
    text
}

impl World {
    pub fn new() -> World {
        let topo = Topology::parse(&topology_text(), Path::new("fuzz-world.toml"))
            .expect("the fuzz world's topology is valid");
        let plans: Vec<Plan> = NAMES
            .iter()
            .map(|n| Plan::compute(&topo, n).expect("a plan for each node"))
            .collect();
        let now = Instant::now();
        let devices = (A..=C)
            .map(|i| Device::new(private_key(i), &plans[i], now))
            .collect();
        let overlay = [0, 1, 2, 3].map(|i| [plans[i].addresses[0], plans[i].addresses[1]]);
        let mut world = World {
            devices,
            addrs: [
                "192.0.2.1:51820".parse().unwrap(),
                "192.0.2.2:51820".parse().unwrap(),
                "[2001:db8::3]:51820".parse().unwrap(),
                "198.51.100.4:51820".parse().unwrap(),
                "203.0.113.9:4444".parse().unwrap(),
            ],
            overlay,
            now,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_001_800),
            scratch: Scratch::new(),
            recent: Vec::new(),
            log: Vec::new(),
            a_out: (0, 0),
        };
        world.initiate(B, A);
        assert!(
            world
                .peer(A, B)
                .snapshot(world.now, world.wall)
                .last_handshake
                .is_some(),
            "a and b completed their handshake"
        );
        world.recent.clear();
        world.log.clear();
        world
    }

    /// `on`'s record of peer `of`.
    pub fn peer(&self, on: usize, of: usize) -> Arc<Peer> {
        self.devices[on]
            .peers()
            .iter()
            .find(|p| p.name() == NAMES[of])
            .expect("the peer is in the table")
            .clone()
    }

    pub fn node_at(&self, addr: SocketAddr) -> Option<usize> {
        self.addrs[..D].iter().position(|a| *a == addr)
    }

    /// `from` sends `to` a handshake initiation now.
    pub fn initiate(&mut self, from: usize, to: usize) {
        let peer = self.peer(from, to);
        let mut out = Out::default();
        self.devices[from].initiate(&peer, &mut self.scratch, &mut out);
        self.pump(from, out);
    }

    /// `node` reads `pkt` from its tun device.
    pub fn tun(&mut self, node: usize, pkt: &[u8]) {
        let mut out = Out::default();
        let now = self.now;
        self.devices[node].handle_tun_packet(now, pkt, &mut self.scratch, &mut out);
        self.pump(node, out);
    }

    /// `a` receives `datagram` from the underlay address `from`.
    pub fn receive(&mut self, from: usize, datagram: &[u8]) {
        self.deliver(A, self.addrs[from], datagram);
    }

    /// Advances the clock by `by` and runs every device's timers.
    pub fn tick(&mut self, by: Duration) {
        self.now += by;
        self.wall += by;
        for node in A..=C {
            let mut out = Out::default();
            let (now, wall) = (self.now, self.wall);
            self.devices[node].tick(now, wall, &mut self.scratch, &mut out);
            self.pump(node, out);
        }
    }

    fn deliver(&mut self, to: usize, from: SocketAddr, datagram: &[u8]) {
        let mut out = Out::default();
        let now = self.now;
        self.devices[to].handle_datagram(now, from, datagram, &mut self.scratch, &mut out);
        self.pump(to, out);
    }

    /// Queues `out`'s datagrams for the devices they are addressed to (others are lost).
    fn route(&self, from: usize, out: Out, queue: &mut Vec<(usize, usize, Vec<u8>)>) {
        for (to, d) in out.datagrams {
            if let Some(to) = self.node_at(to) {
                queue.insert(0, (from, to, d));
            }
        }
    }

    /// Carries what `from` produced, and everything it causes, until the network is quiet.
    fn pump(&mut self, from: usize, out: Out) {
        if from == A {
            self.a_out.0 += out.tun.len();
            self.a_out.1 += out.datagrams.len();
        }
        let mut queue = Vec::new();
        self.route(from, out, &mut queue);
        let mut deliveries = 0;
        while let Some((from, to, d)) = queue.pop() {
            deliveries += 1;
            assert!(
                deliveries <= MAX_DELIVERIES,
                "the engines kept answering each other"
            );
            if to == A {
                self.recent.push((from, d.clone()));
                if self.recent.len() > 8 {
                    self.recent.remove(0);
                }
                self.log.push((from, d.clone()));
            }
            let mut out = Out::default();
            let now = self.now;
            let src = self.addrs[from];
            self.devices[to].handle_datagram(now, src, &d, &mut self.scratch, &mut out);
            if to == A {
                self.a_out.0 += out.tun.len();
                self.a_out.1 += out.datagrams.len();
            }
            self.route(to, out, &mut queue);
        }
    }
}
