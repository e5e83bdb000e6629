//! Seed scripts for the engine target, written when `WIREMESH_FUZZ_SEEDS=DIR` is set: real
//! handshake initiations and data packets captured from the world's devices (valid for any
//! run, since the static keys are fixed), and short scripts that reach each operation.

use crate::world::{private_key, Out, World, A, B, C};
use crate::*;
use std::path::Path;
use wiremesh::engine::control_message::{self as control, Message};

fn op(op: u8, arg: u8, bytes: Option<&[u8]>) -> Vec<u8> {
    let mut rec = vec![op | (arg << 4)];
    if let Some(b) = bytes {
        rec.extend_from_slice(&(b.len() as u16).to_le_bytes());
        rec.extend_from_slice(b);
    }
    rec
}

/// `from`'s handshake initiation to `to`, captured before it is delivered.
fn initiation(world: &mut World, from: usize, to: usize) -> Vec<u8> {
    let peer = world.peer(from, to);
    let mut out = Out::default();
    world.devices[from].initiate(&peer, &mut world.scratch, &mut out);
    out.datagrams.remove(0).1
}

pub fn write(dir: &Path) {
    std::fs::create_dir_all(dir).expect("the seed directory");
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut world = World::new();
    let init_c = initiation(&mut world, C, A);
    seeds.push((String::from("init-from-c"), op(DATAGRAM, 1, Some(&init_c))));
    let init_b = initiation(&mut world, B, A);
    seeds.push((String::from("init-from-b"), op(DATAGRAM, 0, Some(&init_b))));
    seeds.push((
        String::from("init-burst"),
        op(BURST, 1 | 3 << 1, Some(&init_c)),
    ));
    seeds.push((
        String::from("init-from-stranger"),
        op(DATAGRAM, 3, Some(&init_c)),
    ));

    // a data packet and a handshake response as `a` received them
    let [a4, a6] = world.overlay[A];
    let [b4, _] = world.overlay[B];
    let [_, c6] = world.overlay[C];
    let udp = crate::packet(b4, a4, 64, false, 9, b"hello over wireguard");
    world.tun(B, &udp);
    world.initiate(C, A);
    for (i, (from, d)) in world.log.clone().into_iter().enumerate() {
        let name = format!("captured-{i}-from-{}", if from == B { "b" } else { "c" });
        seeds.push((name, op(DATAGRAM, u8::from(from == C), Some(&d))));
    }

    let hello = control::build(b4, a4, &Message::Hello, 0);
    let probe = control::build(b4, a4, &Message::Probe { id: 1 }, 1400);
    let ack = control::build(b4, a4, &Message::ProbeAck { id: 1, size: 1380 }, 0);
    let announce = Message::KeyAnnounce {
        new_public: private_key(9).public_key(),
        effective_ms: 120_000,
    };
    let announce = control::build(b4, a4, &announce, 0);
    for (name, pkt) in [
        ("control-hello", hello),
        ("control-probe", probe),
        ("control-probe-ack", ack),
        ("control-key-announce", announce),
        ("udp-to-a", udp.clone()),
    ] {
        seeds.push((name.into(), op(PEER_TUN, 0, Some(&pkt))));
    }
    let mut tcp_opts = vec![2, 4, 0x05, 0xb4, 1, 1, 4, 2];
    tcp_opts.splice(0..0, [0, 1, 64, 1]);
    seeds.push((
        String::from("syn-forwarded"),
        op(PEER_UDP, 4, Some(&tcp_opts)),
    ));
    seeds.push((
        String::from("udp-control-v6"),
        op(PEER_UDP, 2, Some(b"\x00\x00\x40\x00WMC\x01\x01")),
    ));
    let to_c6 = crate::packet(a6, c6, 64, false, 9, &[0; 32]);
    seeds.push((String::from("tun-to-c-v6"), op(TUN, 0, Some(&to_c6))));
    let big = crate::packet(a4, b4, 64, false, 9, &[0; 1500]);
    seeds.push((String::from("tun-too-big"), op(TUN, 0, Some(&big))));

    let mut script = op(TUN, 0, Some(&to_c6));
    script.extend(op(TICK, 2, None));
    script.extend(op(REPLAY, 0, Some(&[0, 0, 0])));
    script.extend(op(REPLAY, 1, Some(&[20, 0, 1])));
    script.extend(op(TICK, 5, None));
    script.extend(op(INITIATE, 2, None));
    script.extend(op(NEXT_SECOND, 0, None));
    seeds.push((String::from("timers-and-replays"), script));
    let mut script = op(ROTATE, 0, None);
    script.extend(op(TICK, 3, None));
    script.extend(op(TICK, 6, None));
    seeds.push((String::from("rotation"), script));

    for (name, seed) in seeds {
        std::fs::write(dir.join(name), seed).expect("a seed file");
    }
}
