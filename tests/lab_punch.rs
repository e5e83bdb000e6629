//! NATed nodes in a full mesh with real daemons (docs/nat.md, sections 3 and 4): two nodes
//! behind endpoint-independent NATs punch through to each other (the relays forward none of
//! their traffic); two behind endpoint-dependent ones, and a mixed pair, are relayed by a public
//! node and say so in `status` and `check`; a flushed NAT mapping mid-transfer loses nothing.
//! Needs root.

mod common;

use common::{
    assert_all_pairs, assert_transfer, exe, new_lab, peer_path, ping_stream, run, wait_for,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremesh::lab::Lab;

/// Per-pair timeout of the matrix: the first packet of each pair waits for a handshake.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// The goals: a direct path within 3 s of the daemons starting, traffic flowing again
/// within 5 s of a lost mapping.
const DIRECT_GOAL: Duration = Duration::from_secs(3);
const RECOVERY_GOAL: Duration = Duration::from_secs(5);

/// Packets the two public nodes relayed inside their engines, together.
fn relayed_packets(lab: &Lab) -> u64 {
    ["pub-a", "pub-b"]
        .iter()
        .map(|n| common::daemon_status(lab, n).forwarded_packets)
        .sum()
}

/// Packets the public nodes relayed during an intact transfer of `bytes` from → to.
fn relayed_during(lab: &Lab, what: &str, (from, to): (&str, &str), bytes: u64) -> u64 {
    let before = relayed_packets(lab);
    let label = format!("{from} → {to} ({what})");
    assert_transfer(lab, &label, (from, to), overlay(lab, to), bytes);
    relayed_packets(lab) - before
}

fn overlay(lab: &Lab, node: &str) -> std::net::IpAddr {
    lab.overlay_addrs(node).unwrap()[0]
}

#[test]
fn nated_nodes_go_direct_where_their_nats_allow_and_are_relayed_where_they_do_not() {
    if !common::require_root() {
        return;
    }
    let mut lab = new_lab("full-nat.toml");
    let started = Instant::now();
    lab.start_daemons().unwrap();
    let ready = started.elapsed();

    // the endpoint-independent pair: introduced by a public node, punched, direct both ways
    let direct = wait_for(
        Duration::from_secs(15),
        Duration::from_millis(50),
        "ind-1 and ind-2 direct",
        || {
            let (a, b) = (
                peer_path(&lab, "ind-1", "ind-2"),
                peer_path(&lab, "ind-2", "ind-1"),
            );
            if a == "punched" && b == "punched" {
                Ok(started.elapsed())
            } else {
                Err(format!("ind-1 → ind-2 {a}, ind-2 → ind-1 {b}"))
            }
        },
    );
    println!(
        "time to direct: {direct:?} from starting the daemons ({ready:?} until all were ready)"
    );
    assert!(
        direct <= ready + DIRECT_GOAL,
        "goal: 3 s after the daemons are up"
    );

    assert_all_pairs(&lab, PING_TIMEOUT);

    // proven direct: during a transfer between them, the relays forward nothing
    let during = relayed_during(&lab, "punched", ("ind-1", "ind-2"), 4 << 20);
    assert_eq!(
        during, 0,
        "the relays forwarded {during} packets of the punched pair"
    );

    // both symmetric, and one of each: no direct path exists, a public node relays
    for (a, b) in [
        ("dep-1", "dep-2"),
        ("dep-2", "dep-1"),
        ("ind-1", "dep-1"),
        ("dep-1", "ind-1"),
    ] {
        let path = peer_path(&lab, a, b);
        assert!(path.starts_with("relayed via pub-"), "{a} → {b}: {path}");
    }
    let relayed = relayed_during(&lab, "relayed", ("dep-1", "dep-2"), 2 << 20);
    assert!(
        relayed > 1000,
        "the relay carried the transfer: {relayed} packets"
    );
    println!("dep-1 → dep-2: {relayed} packets forwarded by the relays");
    // every node reaches the public nodes directly
    for n in ["ind-1", "ind-2", "dep-1", "dep-2"] {
        assert_eq!(peer_path(&lab, n, "pub-a"), "public", "{n}");
        assert_eq!(peer_path(&lab, "pub-a", n), "learnt", "pub-a → {n}");
    }
    // the text status shows the path, and `check` passes, naming the relay
    let status = run(&[
        exe().to_str().unwrap(),
        "status",
        "-i",
        lab.ifname("dep-1").unwrap(),
    ]);
    assert!(status.contains("relayed via pub-"), "{status}");
    let check = std::process::Command::new("ip")
        .args(["netns", "exec", lab.node_ns("dep-1").unwrap()])
        .arg(exe())
        .args(["check", "-t"])
        .arg(lab.derived_topology_path())
        .args(["-n", "dep-1", "-i", lab.ifname("dep-1").unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "check failed: {err}");
    assert!(err.contains("NOTE peer dep-2: relayed via pub-"), "{err}");
}

#[test]
fn a_punched_pair_recovers_from_a_flushed_mapping_mid_transfer_and_from_a_new_address() {
    if !common::require_root() {
        return;
    }
    let mut lab = new_lab("full-nat.toml");
    lab.start_daemons_of(&["pub-a", "pub-b", "ind-1", "ind-2"])
        .unwrap();
    wait_for(
        Duration::from_secs(15),
        Duration::from_millis(100),
        "ind-1 and ind-2 direct",
        || match peer_path(&lab, "ind-1", "ind-2").as_str() {
            "punched" => Ok(()),
            other => Err(other.to_string()),
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let pings = ping_stream(
        &lab,
        "ind-2",
        overlay(&lab, "ind-1"),
        Duration::from_millis(20),
        stop.clone(),
    );
    let transfer = {
        let to = overlay(&lab, "ind-2");
        let (ns_from, ns_to) = (
            lab.node_ns("ind-1").unwrap().to_string(),
            lab.node_ns("ind-2").unwrap().to_string(),
        );
        std::thread::spawn(move || {
            // 4 MiB at 1 MiB/s: the flush lands in the middle
            wiremesh::lab::tcp_transfer_paced(
                &ns_from,
                &ns_to,
                to,
                5202,
                4 << 20,
                Some(1 << 20),
                Duration::from_secs(120),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    // both routers forget every mapping at once: the next datagrams draw new ones
    lab.flush_nat("ind-1").unwrap();
    lab.flush_nat("ind-2").unwrap();
    let t = transfer.join().unwrap().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let s = pings.join().unwrap().unwrap();
    println!(
        "flush mid-transfer: {} bytes intact={} in {:?}; pings {} sent, {} lost, longest gap {:?}",
        t.bytes,
        t.intact(),
        t.elapsed,
        s.sent,
        s.lost,
        s.longest_gap
    );
    assert!(t.intact(), "the transfer arrived whole");
    assert!(
        s.longest_gap <= RECOVERY_GOAL,
        "traffic flowed again within 5 s: gap {:?}",
        s.longest_gap
    );
    // the mappings came back: direct again (at once when the routers kept the ports)
    let path = peer_path(&lab, "ind-1", "ind-2");
    println!(
        "after the flush: ind-1 → ind-2 {path}; transfer took {:?}",
        t.elapsed
    );
    assert!(
        t.elapsed >= Duration::from_secs(3),
        "the flush landed mid-transfer"
    );

    // roaming: ind-1's site gets a new public address; its peers still send to the old one
    let stop = Arc::new(AtomicBool::new(false));
    let pings = ping_stream(
        &lab,
        "ind-2",
        overlay(&lab, "ind-1"),
        Duration::from_millis(20),
        stop.clone(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let moved = lab.renumber_nat("ind-1").unwrap();
    let renumbered = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let s = pings.join().unwrap().unwrap();
    println!(
        "ind-1 renumbered to {moved}: pings {} sent, {} lost, longest gap {:?}; ind-2 → ind-1 now {}",
        s.sent,
        s.lost,
        s.longest_gap,
        peer_path(&lab, "ind-2", "ind-1")
    );
    assert!(
        s.longest_gap <= RECOVERY_GOAL,
        "traffic flowed again within 5 s of the new address: gap {:?}",
        s.longest_gap
    );
    // and the pair punches through again, to the new address
    let direct = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "ind-2 direct to ind-1's new address",
        || {
            let path = peer_path(&lab, "ind-2", "ind-1");
            match (path.as_str(), common::endpoint_of(&lab, "ind-2", "ind-1")) {
                ("punched", Ok(at)) if at.ip() == std::net::IpAddr::V4(moved) => {
                    Ok(renumbered.elapsed())
                }
                (path, at) => Err(format!("{path} at {at:?}")),
            }
        },
    );
    println!("direct again at the new address {direct:?} after the renumbering");
}
