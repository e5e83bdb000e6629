//! The engine's ingress, given a datagram and the engine's state. The input is a script of
//! operations on a small in-memory mesh (see `engine/world.rs`): raw datagrams to the hub `a`
//! from a peer's address or a stranger's, raw packets on `a`'s tun device, packets a peer
//! encrypts for `a` (so the fuzzer reaches what `a` does after decryption: source checks,
//! control messages, forwarding, ICMP too-big), timer ticks, replays of captured datagrams with
//! a byte changed, handshakes, key rotations and bursts of handshakes. No input may panic, and
//! what the engine emits must keep the sink's contract (see `Out`).
//!
//! Script format, repeated: one byte `op | arg << 4`; ops that carry bytes then have a
//! little-endian `u16` length and that many bytes (fewer if the input ends).
//!
//! The world is built once and reused for [`REBUILD_EVERY`] inputs, since a handshake costs
//! more than most inputs; set `WIREMESH_FUZZ_REBUILD_EVERY=1` to give each input a fresh world
//! (when reproducing a finding that depends on an earlier input).
#![no_main]

#[path = "engine/seeds.rs"]
mod seeds;
#[path = "engine/world.rs"]
mod world;

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::IpAddr;
use std::time::Duration;
use wiremesh::engine::control_message::CONTROL_PORT;
use world::{World, A, B, C, D, STRANGER};

/// Inputs served by one world before it is rebuilt (a few milliseconds of handshakes).
const REBUILD_EVERY: u32 = 500;
/// Operations run per input; the rest of a longer script is ignored.
const MAX_OPS: usize = 24;

pub const DATAGRAM: u8 = 0;
pub const TUN: u8 = 1;
pub const PEER_TUN: u8 = 2;
pub const PEER_UDP: u8 = 3;
pub const TICK: u8 = 4;
pub const REPLAY: u8 = 5;
pub const INITIATE: u8 = 6;
pub const ROTATE: u8 = 7;
/// A second passes: the handshake admission bucket refills (it is timed by the receive calls).
pub const NEXT_SECOND: u8 = 8;
pub const BURST: u8 = 9;

/// Ops that carry bytes.
fn has_bytes(op: u8) -> bool {
    matches!(op, DATAGRAM | TUN | PEER_TUN | PEER_UDP | REPLAY | BURST)
}

fn spoke(arg: u8) -> usize {
    [B, C][usize::from(arg & 1)]
}

/// A UDP or TCP-SYN packet from `src` to `dst` with correct lengths and IPv4 header checksum:
/// the fuzzer picks which addresses and ports, and the payload (TCP options for a SYN).
fn packet(src: IpAddr, dst: IpAddr, ttl: u8, syn: bool, dport: u16, body: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::new();
    if syn {
        let opts = &body[..body.len().min(40) / 4 * 4];
        l4.extend_from_slice(&40000u16.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
        l4.push((((20 + opts.len()) / 4) << 4) as u8);
        l4.extend_from_slice(&[0x02, 0xff, 0xff, 0, 0, 0, 0]);
        l4.extend_from_slice(opts);
    } else {
        l4.extend_from_slice(&40000u16.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.extend_from_slice(body);
    }
    let proto = if syn { 6 } else { 17 };
    let mut pkt = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pkt.extend_from_slice(&[0x45, 0]);
            pkt.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            pkt.extend_from_slice(&[0, 0, 0x40, 0, ttl, proto, 0, 0]);
            pkt.extend_from_slice(&s.octets());
            pkt.extend_from_slice(&d.octets());
            let c = wiremesh::core::packet::checksum(&pkt);
            pkt[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pkt.extend_from_slice(&[0x60, 0, 0, 0]);
            pkt.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            pkt.extend_from_slice(&[proto, ttl]);
            pkt.extend_from_slice(&s.octets());
            pkt.extend_from_slice(&d.octets());
        }
        _ => unreachable!("one family"),
    }
    pkt.extend_from_slice(&l4);
    pkt
}

/// `PEER_UDP`: a spoke sends `a` (or through `a`) a well-formed packet. `bytes`: source and
/// destination choices, TTL, port choice, then the payload.
fn peer_packet(world: &mut World, arg: u8, bytes: &[u8]) {
    let node = spoke(arg);
    let other = if node == B { C } else { B };
    let family = usize::from((arg >> 1) & 1);
    let [src_sel, dst_sel, ttl, port_sel] =
        [0, 1, 2, 3].map(|i| bytes.get(i).copied().unwrap_or(0));
    let body = bytes.get(4..).unwrap_or(&[]);
    let host_in = |addr: IpAddr, host: u8| match addr {
        IpAddr::V4(a) => {
            let mut o = a.octets();
            o[3] = host;
            IpAddr::from(o)
        }
        IpAddr::V6(a) => {
            let mut o = a.octets();
            o[15] = host;
            IpAddr::from(o)
        }
    };
    let outside: IpAddr = if family == 0 {
        [192, 0, 2, 200].into()
    } else {
        "2001:db8:ff::1".parse().unwrap()
    };
    let src = match src_sel % 4 {
        0 => world.overlay[node][family],
        1 => host_in(world.overlay[node][family], src_sel),
        2 => world.overlay[other][family],
        _ => world.overlay[A][family],
    };
    let dst = match dst_sel % 5 {
        0 => world.overlay[A][family],
        1 => world.overlay[other][family],
        2 => world.overlay[D][family],
        3 => host_in(world.overlay[A][family], dst_sel),
        _ => outside,
    };
    let dport = if port_sel & 1 == 0 { CONTROL_PORT } else { 9 };
    let pkt = packet(src, dst, ttl, arg & 4 != 0, dport, body);
    world.tun(node, &pkt);
}

/// `REPLAY`: `a` receives one of the last datagrams it got, with one byte changed (or none).
fn replay(world: &mut World, arg: u8, bytes: &[u8]) {
    let Some(i) = world.recent.len().checked_sub(1 + usize::from(arg & 7)) else {
        return;
    };
    let (from, mut d) = world.recent[i].clone();
    if let [lo, hi, xor, ..] = *bytes {
        let at = usize::from(u16::from_le_bytes([lo, hi])) % d.len();
        d[at] ^= xor;
    }
    let from = if arg & 8 != 0 { STRANGER } else { from };
    world.receive(from, &d);
}

fn run(world: &mut World, mut input: &[u8]) {
    for _ in 0..MAX_OPS {
        let Some((&head, rest)) = input.split_first() else {
            return;
        };
        input = rest;
        let (op, arg) = (head & 0x0f, head >> 4);
        let bytes = if has_bytes(op) {
            let len = match *input {
                [lo, hi, ..] => usize::from(u16::from_le_bytes([lo, hi])),
                _ => 0,
            };
            input = input.get(2..).unwrap_or(&[]);
            let (bytes, rest) = input.split_at(len.min(input.len()));
            input = rest;
            bytes
        } else {
            &[]
        };
        match op {
            DATAGRAM => world.receive([B, C, D, STRANGER, A][usize::from(arg % 5)], bytes),
            TUN => world.tun(A, bytes),
            PEER_TUN => world.tun(spoke(arg), bytes),
            PEER_UDP => peer_packet(world, arg, bytes),
            TICK => {
                let ms = [10, 100, 1_000, 5_000, 25_000, 120_000, 200_000, 600_000];
                world.tick(Duration::from_millis(ms[usize::from(arg & 7)]));
            }
            REPLAY => replay(world, arg, bytes),
            INITIATE => {
                let pairs = [(A, B), (A, C), (A, D), (B, A), (C, A)];
                let (from, to) = pairs[usize::from(arg % 5)];
                world.initiate(from, to);
            }
            ROTATE => {
                let node = [A, B, C][usize::from(arg % 3)];
                let key = wiremesh::core::key::PrivateKey::from_bytes([0x40 + arg; 32]);
                let now = world.now;
                let _ = world.devices[node].rotate(key, now);
            }
            NEXT_SECOND => world.tick(Duration::from_secs(1)),
            BURST => {
                let from = spoke(arg);
                for _ in 0..(usize::from(arg >> 1) + 1) * 8 {
                    world.receive(from, bytes);
                }
            }
            _ => {}
        }
    }
}

/// What `a` did so far, to see which paths a corpus reaches (`-runs=0` over it).
fn print_stats(world: &World) {
    let a = &world.devices[A];
    let drops: std::collections::BTreeMap<_, _> = a
        .drop_counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.label(), n))
        .collect();
    eprintln!(
        "a: tun writes {}, datagrams sent {}, forwarded {}, rotations {}, drops {drops:?}",
        world.a_out.0,
        world.a_out.1,
        a.forwarded(),
        a.rotations(),
    );
}

thread_local! {
    static WORLD: RefCell<Option<(World, u32)>> = const { RefCell::new(None) };
}

fn rebuild_every() -> u32 {
    std::env::var("WIREMESH_FUZZ_REBUILD_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(REBUILD_EVERY)
        .max(1)
}

fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("WIREMESH_FUZZ_SEEDS") {
            seeds::write(std::path::Path::new(&dir));
        }
    },
    |data: &[u8]| {
        WORLD.with_borrow_mut(|slot| {
            let every = rebuild_every();
            if slot.as_ref().is_none_or(|(_, served)| *served >= every) {
                *slot = Some((World::new(), 0));
            }
            let (world, served) = slot.as_mut().expect("built above");
            *served += 1;
            world.recent.clear();
            world.log.clear();
            run(world, data);
            if std::env::var_os("WIREMESH_FUZZ_STATS").is_some() {
                print_stats(world);
            }
        });
    }
);
