//! etcd frozen (SIGSTOP) for 30 s and then dead (SIGKILL) for 30 s: traffic between existing
//! nodes loses nothing, a node restarted meanwhile comes back from its snapshot file, and once
//! etcd returns on its data directory a new node joins and every pair reaches it.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wiremesh::lab::Signal;

#[test]
fn the_mesh_rides_out_a_minute_without_etcd_and_converges_after() {
    if !require_root() {
        return;
    }
    let mut lab = running_registry_lab("three-regions.toml", 1);
    assert_all_pairs(&lab, Duration::from_secs(3));
    let to_c = lab.overlay_addrs("c").unwrap()[0];
    let stop = Arc::new(AtomicBool::new(false));
    let pings = ping_stream(&lab, "a", to_c, Duration::from_millis(20), stop.clone());

    assert!(lab.signal_etcd(0, Signal::Stop).unwrap());
    std::thread::sleep(Duration::from_secs(30));
    lab.kill_etcd(0).unwrap();
    // b restarts while etcd is gone: it starts from its snapshot file
    lab.restart_daemon("b").unwrap();
    wait_log(
        &lab,
        "b",
        "starting from the registry snapshot",
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_secs(25));
    let b = lab.overlay_addrs("b").unwrap()[0];
    let reach = lab.ping("a", b, Duration::from_secs(3)).unwrap();
    assert!(
        reach.is_some(),
        "b, restarted from its snapshot, is not reached"
    );

    stop.store(true, Ordering::Relaxed);
    let s = pings.join().unwrap().unwrap();
    println!(
        "a -> c during 60 s without etcd: {} sent, {} lost, longest gap {:?}",
        s.sent, s.lost, s.longest_gap
    );
    assert!(s.sent > 1000, "{s:?}");
    assert_eq!(s.lost, 0, "{s:?}");

    lab.start_etcd(0).unwrap();
    // the daemons reconnect within their backoff (at most 30 s)
    let (_, took) = join_and_wait(&mut lab, "e", "onprem", Duration::from_secs(45));
    println!("after etcd returned, every node had peer e in {took:?}");
    assert_all_pairs(&lab, Duration::from_secs(3));
    // b, which started from its snapshot, joined the registry when it came back
    let status = registry_cli(&lab, &["status"]);
    let b_line = status.lines().find(|l| l.starts_with("b ")).unwrap();
    assert!(b_line.contains(" yes "), "b's presence: {status}");
}
