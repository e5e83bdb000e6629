//! Redundant hubs with real daemons in namespaces: every pair reaches every other with one, two
//! and three hubs per region; and when the hub carrying a flow is killed, frozen, or cut off by
//! a silent black hole, the flow moves to the region's other hub within 5 s (the goal; the
//! engine's detection takes about 2.75 s) and comes back after the hub returns.

mod common;

use common::{
    assert_all_pairs, daemon_status, new_lab, ping_stream, require_root, running_lab, wait_for,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremesh::lab::{Lab, Signal};

const PING_EVERY: Duration = Duration::from_millis(20);
/// The failover goal of the issue that asked for it (Kilo's users wait 5–15 minutes).
const GOAL: Duration = Duration::from_secs(5);
const EU_HUBS: [&str; 2] = ["eu-hub-a", "eu-hub-b"];

#[test]
fn every_pair_reaches_every_other_with_one_two_and_three_hubs_per_region() {
    if !require_root() {
        return;
    }
    let lab = running_lab("hub-redundant.toml");
    assert_all_pairs(&lab, Duration::from_secs(5));
    // every spoke peers with all its region's hubs
    let s1 = daemon_status(&lab, "ap-s1");
    let mut peers: Vec<&str> = s1.peers.iter().map(|p| p.name.as_str()).collect();
    peers.sort();
    assert_eq!(peers, ["ap-hub-a", "ap-hub-b", "ap-hub-c"]);
}

/// The eu hub that carries eu-s1's cluster traffic now, by eu-s1's own account.
fn hub_in_use(lab: &Lab) -> String {
    let status = daemon_status(lab, "eu-s1");
    let in_use: Vec<&str> = status
        .peers
        .iter()
        .filter(|p| !p.carries.is_empty())
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(in_use.len(), 1, "{status:#?}");
    in_use[0].to_string()
}

/// us-hub answers eu-s1 through the hub eu-s1 sends through.
fn assert_far_side_follows(lab: &Lab, hub: &str) {
    let cidr = lab.topology().unwrap().node("eu-s1").unwrap().pod_cidr;
    let s = daemon_status(lab, "us-hub");
    let p = s.peers.iter().find(|p| p.name == hub).unwrap();
    assert!(p.carries.contains(&cidr.to_string()), "{s:#?}");
}

/// Waits until eu-s1 sends through `hub` again: it answers, is held, and carries its share.
fn wait_back_in_use(lab: &Lab, hub: &str, after: &str) {
    let since = Instant::now();
    wait_for(
        Duration::from_secs(20),
        Duration::from_millis(250),
        &format!("{hub} back in use"),
        || {
            if hub_in_use(lab) == hub {
                Ok(())
            } else {
                Err(format!(
                    "{hub} never came back: {:?}",
                    health(lab, "eu-s1", hub)
                ))
            }
        },
    );
    println!("{hub} back in use {:?} after {after}", since.elapsed());
}

fn health(lab: &Lab, at: &str, peer: &str) -> (String, u64) {
    let s = daemon_status(lab, at);
    let p = s.peers.iter().find(|p| p.name == peer).unwrap();
    (p.health.clone(), p.downs)
}

/// A lab with eu-s1 pinging us-s1 every 20 ms through one eu hub; returns it with the hub in
/// use, the other one, and the ping stream's stop flag and handle.
fn flowing() -> (
    Lab,
    String,
    String,
    Arc<AtomicBool>,
    std::thread::JoinHandle<Result<common::Stream, wiremesh::lab::LabError>>,
) {
    let mut lab = new_lab("hub-failover.toml");
    lab.start_daemons().unwrap();
    let to = lab.overlay_addrs("us-s1").unwrap()[0];
    assert!(lab
        .ping("eu-s1", to, Duration::from_secs(5))
        .unwrap()
        .is_some());
    let stop = Arc::new(AtomicBool::new(false));
    let stream = ping_stream(&lab, "eu-s1", to, PING_EVERY, stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    let hub = hub_in_use(&lab);
    let other = EU_HUBS.iter().find(|h| **h != hub).unwrap().to_string();
    (lab, hub, other, stop, stream)
}

fn finish(
    stop: Arc<AtomicBool>,
    stream: std::thread::JoinHandle<Result<common::Stream, wiremesh::lab::LabError>>,
    label: &str,
) -> common::Stream {
    stop.store(true, Ordering::Relaxed);
    let s = stream.join().unwrap().unwrap();
    println!(
        "{label}: {} pings, {} lost, longest gap {:?}",
        s.sent, s.lost, s.longest_gap
    );
    assert!(
        s.longest_gap <= GOAL,
        "{label}: longest gap {:?} over the {GOAL:?} goal",
        s.longest_gap
    );
    s
}

#[test]
fn killing_the_hub_in_use_moves_the_flow_within_five_seconds_and_a_transfer_completes_intact() {
    if !require_root() {
        return;
    }
    let (mut lab, hub, other, stop, stream) = flowing();
    let to = lab.overlay_addrs("us-s1").unwrap()[0];
    // a paced transfer that spans the kill: 12 MiB at 1.5 MiB/s
    let (from_ns, to_ns) = (
        lab.node_ns("eu-s1").unwrap().to_string(),
        lab.node_ns("us-s1").unwrap().to_string(),
    );
    let transfer = std::thread::spawn(move || {
        wiremesh::lab::tcp_transfer_paced(
            &from_ns,
            &to_ns,
            to,
            5202,
            12 << 20,
            Some(3 << 19),
            Duration::from_secs(60),
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    lab.kill_daemon(&hub, Signal::Kill).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let s = finish(stop, stream, &format!("SIGKILL {hub}"));
    assert!(s.lost < s.sent / 4, "{s:?}");
    let t = transfer.join().unwrap().unwrap();
    println!(
        "transfer across the kill: {} bytes in {:?}, intact {}",
        t.bytes,
        t.elapsed,
        t.intact()
    );
    assert!(
        t.intact(),
        "sha256 {} vs {}",
        t.sent_sha256,
        t.received_sha256
    );
    assert_eq!(hub_in_use(&lab), other);
    assert_eq!(health(&lab, "eu-s1", &hub), ("down".into(), 1));
    assert_far_side_follows(&lab, &other);

    // the hub restarts: it answers, is held for a while, and carries its share again
    lab.restart_daemon(&hub).unwrap();
    wait_back_in_use(&lab, &hub, "its restart");
    assert!(lab
        .ping("eu-s1", to, Duration::from_secs(2))
        .unwrap()
        .is_some());
}

#[test]
fn a_hub_frozen_for_thirty_seconds_is_left_and_used_again_after_it_continues() {
    if !require_root() {
        return;
    }
    let (mut lab, hub, other, stop, stream) = flowing();
    lab.kill_daemon(&hub, Signal::Stop).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(hub_in_use(&lab), other);
    assert_eq!(health(&lab, "eu-s1", &hub).0, "down");
    lab.kill_daemon(&hub, Signal::Cont).unwrap();
    wait_back_in_use(&lab, &hub, "SIGCONT");
    std::thread::sleep(Duration::from_secs(2));
    let s = finish(stop, stream, &format!("SIGSTOP {hub} for 30 s"));
    assert!(s.lost < s.sent / 20, "{s:?}");
    assert_eq!(health(&lab, "eu-s1", &hub), ("up".into(), 1), "no flapping");
}

#[test]
fn a_hub_whose_link_silently_drops_everything_is_left_within_five_seconds() {
    if !require_root() {
        return;
    }
    let (lab, hub, other, stop, stream) = flowing();
    // no ICMP, no reset: every packet in or out of the hub's namespace vanishes
    let rules = "table inet wmtest_blackhole {
        chain input { type filter hook input priority -300; policy drop; }
        chain output { type filter hook output priority -300; policy drop; }
    }";
    let file = std::env::temp_dir().join(format!("{}-blackhole.nft", lab.prefix()));
    std::fs::write(&file, rules).unwrap();
    let out = lab
        .exec(&hub, &["nft", "-f", file.to_str().unwrap()])
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(8));
    let s = finish(stop, stream, &format!("black hole at {hub}"));
    assert!(s.lost < s.sent / 4, "{s:?}");
    assert_eq!(hub_in_use(&lab), other);
    assert_far_side_follows(&lab, &other);
}
