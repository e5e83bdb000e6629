//! A pair in one VPC, in memory: two engines with real sessions, each reachable at a private
//! address in the shared scope and at a public one. The VPC path is preferred, left within
//! seconds when cut, and taken again once it carries traffic; a stray packet over the public
//! path does not move a pinned endpoint; each path keeps its own MTU.

use super::memory_tests::{ipv4, WALL_START};
use super::{Batch, Device, Scratch};
use crate::core::plan::Plan;
use crate::core::topology::Topology;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const TICK: Duration = Duration::from_millis(250);
const NAMES: [&str; 2] = ["a", "b"];

fn private(i: usize) -> SocketAddr {
    format!("10.0.1.{}:51820", i + 1).parse().unwrap()
}

fn public(i: usize) -> SocketAddr {
    format!("203.0.113.{}:51820", i + 1).parse().unwrap()
}

fn overlay(i: usize) -> [u8; 4] {
    [10, 244, (i + 1) as u8, 1]
}

struct Vpc {
    devices: Vec<Device>,
    /// The VPC path drops everything (its link is cut).
    cut: bool,
    /// Largest outer packet (datagram + 28) each path carries.
    private_limit: usize,
    public_limit: usize,
    /// Datagrams that crossed each path.
    over_private: u64,
    over_public: u64,
    delivered: Vec<Vec<Vec<u8>>>,
    now: Instant,
    wall: SystemTime,
}

impl Vpc {
    fn new() -> Vpc {
        let keys: Vec<_> = NAMES
            .iter()
            .map(|_| crate::io::keyfile::generate())
            .collect();
        let mut text = String::from("mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n");
        for (i, name) in NAMES.iter().enumerate() {
            text.push_str(&format!(
                "[[node]]\nname = \"{name}\"\ncloud = \"aws\"\nregion = \"r\"\npublic-key = \"{}\"\n\
                 pod-cidr = \"10.244.{}.0/24\"\n\
                 endpoints = [{{ address = \"{}\", scope = \"aws:vpc-1\" }}, {{ address = \"{}\" }}]\n",
                keys[i].public_key(),
                i + 1,
                private(i),
                public(i),
            ));
        }
        let topo = Topology::parse(&text, Path::new("vpc.toml")).unwrap();
        let now = Instant::now();
        let devices = NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| Device::new(keys[i].clone(), &Plan::compute(&topo, n).unwrap(), now))
            .collect();
        Vpc {
            devices,
            cut: false,
            private_limit: usize::MAX,
            public_limit: usize::MAX,
            over_private: 0,
            over_public: 0,
            delivered: vec![Vec::new(), Vec::new()],
            now,
            wall: SystemTime::UNIX_EPOCH + WALL_START,
        }
    }

    /// Which node a datagram to `to` reaches, and over which path; the sender's source address
    /// is its own on that path (the kernel's source selection).
    fn route(&self, from: usize, to: SocketAddr) -> Option<(usize, SocketAddr, bool)> {
        (0..2).find_map(|i| {
            if to == private(i) {
                Some((i, private(from), true))
            } else if to == public(i) {
                Some((i, public(from), false))
            } else {
                None
            }
        })
    }

    fn flush(
        &mut self,
        from: usize,
        batch: &Batch,
        pending: &mut Vec<(usize, SocketAddr, Vec<u8>)>,
    ) {
        for (to, d) in batch.datagrams() {
            let Some((at, src, vpc)) = self.route(from, to) else {
                continue;
            };
            let limit = if vpc {
                self.private_limit
            } else {
                self.public_limit
            };
            if (vpc && self.cut) || d.len() + 28 > limit {
                continue;
            }
            if vpc {
                self.over_private += 1;
            } else {
                self.over_public += 1;
            }
            pending.push((at, src, d.to_vec()));
        }
        for p in batch.tun_packets() {
            self.delivered[from].push(p.to_vec());
        }
    }

    fn pump(&mut self, mut pending: Vec<(usize, SocketAddr, Vec<u8>)>) {
        let mut scratch = Scratch::new();
        let mut rounds = 0;
        while !pending.is_empty() {
            rounds += 1;
            assert!(rounds < 1000, "the network never went quiet");
            let (at, src, d) = pending.remove(0);
            let mut out = Batch::new();
            self.devices[at].handle_datagram(self.now, src, &d, &mut scratch, &mut out);
            self.flush(at, &out, &mut pending);
        }
    }

    fn send(&mut self, from: usize, pkt: &[u8]) {
        let mut scratch = Scratch::new();
        let mut out = Batch::new();
        self.devices[from].handle_tun_packet(self.now, pkt, &mut scratch, &mut out);
        let mut pending = Vec::new();
        self.flush(from, &out, &mut pending);
        self.pump(pending);
    }

    fn tick(&mut self) {
        self.now += TICK;
        self.wall += TICK;
        let mut scratch = Scratch::new();
        let mut pending = Vec::new();
        for i in 0..2 {
            let mut out = Batch::new();
            self.devices[i].tick(self.now, self.wall, &mut scratch, &mut out);
            self.flush(i, &out, &mut pending);
        }
        self.pump(pending);
    }

    /// One tick with a ping each way; whether both arrived.
    fn ping_pong(&mut self, seq: &mut u32) -> bool {
        self.tick();
        *seq += 1;
        let (fwd, back) = (format!("ping {seq}"), format!("pong {seq}"));
        self.send(0, &ipv4(overlay(0), overlay(1), fwd.as_bytes()));
        self.send(1, &ipv4(overlay(1), overlay(0), back.as_bytes()));
        let got =
            |pkts: &Vec<Vec<u8>>, p: &str| pkts.iter().any(|x| x.get(20..) == Some(p.as_bytes()));
        got(&self.delivered[1], &fwd) && got(&self.delivered[0], &back)
    }

    /// Ticks with pings for `ticks`; the ticks (by index) at which both pings arrived.
    fn run(&mut self, ticks: u32, seq: &mut u32) -> Vec<u32> {
        (0..ticks).filter(|_| self.ping_pong(seq)).collect()
    }

    /// Node `at`'s view of the other one.
    fn peer(&self, at: usize) -> std::sync::Arc<super::Peer> {
        self.devices[at].peers().iter().next().unwrap().clone()
    }
}

#[test]
fn a_vpc_pair_talks_privately_moves_to_public_when_the_vpc_is_cut_and_returns_after() {
    let mut net = Vpc::new();
    let mut seq = 0;
    assert_eq!(net.run(20, &mut seq).len(), 20, "every ping before the cut");
    assert_eq!(net.over_public, 0, "nothing crossed the internet");
    assert_eq!(net.peer(0).endpoint(), Some(private(1)));
    assert_eq!(net.peer(1).endpoint(), Some(private(0)));

    net.cut = true;
    let ok = net.run(40, &mut seq);
    let first = *ok.first().expect("traffic moved to the public addresses");
    let gap = TICK * (first + 1);
    assert!(gap <= Duration::from_secs(5), "failover took {gap:?}");
    assert_eq!(ok.len() as u32, 40 - first, "no loss once moved: {ok:?}");
    assert_eq!(net.peer(0).endpoint(), Some(public(1)));
    assert_eq!(net.peer(1).endpoint(), Some(public(0)));

    net.cut = false;
    let public_before = net.over_public;
    let ok = net.run(60, &mut seq);
    assert_eq!(ok.len(), 60, "no loss while the pair moves back: {ok:?}");
    assert_eq!(net.peer(0).endpoint(), Some(private(1)), "back in the VPC");
    assert_eq!(net.peer(1).endpoint(), Some(private(0)));
    let public_after = net.over_public;
    net.run(8, &mut seq);
    assert!(public_after > public_before);
    assert_eq!(
        net.over_public, public_after,
        "the internet carries nothing more"
    );
}

#[test]
fn a_packet_over_the_public_path_does_not_move_a_pinned_private_endpoint() {
    let mut net = Vpc::new();
    let mut seq = 0;
    assert_eq!(net.run(8, &mut seq).len(), 8);
    // a datagram of a's arriving over the internet instead (a NAT, a second route):
    // authenticated, so WireGuard alone would follow it
    let (mut scratch, mut out, mut back) = (Scratch::new(), Batch::new(), Batch::new());
    let pkt = ipv4(overlay(0), overlay(1), b"another way");
    net.devices[0].handle_tun_packet(net.now, &pkt, &mut scratch, &mut out);
    let (to, d) = out.datagrams().next().unwrap();
    assert_eq!(to, private(1));
    net.devices[1].handle_datagram(net.now, public(0), d, &mut scratch, &mut back);
    assert!(
        back.tun_packets().any(|p| p == &pkt[..]),
        "the packet itself is delivered"
    );
    let b_of_a = net.peer(1);
    assert_eq!(b_of_a.endpoint(), Some(private(0)), "still the VPC address");
    assert_eq!(b_of_a.candidates.view().roam_refused, 1);
    // and the pair keeps talking privately
    let public_before = net.over_public;
    assert_eq!(net.run(8, &mut seq).len(), 8);
    assert_eq!(net.over_public, public_before);
}

#[test]
fn each_endpoint_keeps_its_own_path_mtu() {
    let mut net = Vpc::new();
    // the VPC carries the ceiling (1500); the internet path only 1400
    net.public_limit = 1400;
    let mut seq = 0;
    net.run(40, &mut seq);
    let private_mtu = net.peer(0).path.mtu();
    assert_eq!(private_mtu, 1500 - 60, "the VPC path carries the ceiling");

    net.cut = true;
    net.run(80, &mut seq);
    assert_eq!(net.peer(0).endpoint(), Some(public(1)));
    let public_mtu = net.peer(0).path.mtu();
    assert!(
        public_mtu <= 1400 - 60,
        "the public path was measured on its own: {public_mtu}"
    );

    net.cut = false;
    net.run(60, &mut seq);
    assert_eq!(net.peer(0).endpoint(), Some(private(1)));
    assert_eq!(
        net.peer(0).path.mtu(),
        private_mtu,
        "back in the VPC, its MTU at once"
    );
}
