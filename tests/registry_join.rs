//! A node joins a running mesh on a real etcd registry with nothing but the registry and a key:
//! every running daemon configures it through its watch, without a restart and without
//! re-handshaking its existing peers; it leaves by SIGTERM (peer removed everywhere, its CIDR
//! kept) and `registry remove` frees its CIDR.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn a_node_joins_a_running_mesh_and_leaves_it_without_disturbing_the_others() {
    if !require_root() {
        return;
    }
    let mut lab = running_registry_lab("three-regions.toml", 1);
    assert_all_pairs(&lab, Duration::from_secs(3));
    let before: BTreeMap<String, (u32, BTreeMap<String, u64>)> = lab
        .nodes()
        .into_iter()
        .map(|n| {
            let pid = lab.daemon_pid(&n).unwrap();
            let hs = wg_handshakes(lab.ifname(&n).unwrap());
            (n, (pid, hs))
        })
        .collect();

    let (key, took) = join_and_wait(&mut lab, "e", "us-east", Duration::from_secs(10));
    println!("every node had peer e configured {took:?} after its daemon was up");
    assert_all_pairs(&lab, Duration::from_secs(3));

    for (n, (pid, hs)) in &before {
        assert_eq!(lab.daemon_pid(n), Some(*pid), "{n} restarted");
        let now = wg_handshakes(lab.ifname(n).unwrap());
        for (peer, at) in hs {
            assert_eq!(now.get(peer), Some(at), "{n} re-handshook {peer}");
        }
    }
    let status = registry_cli(&lab, &["status"]);
    assert!(status.contains("\ne "), "{status}");

    lab.leave("e", false).unwrap();
    wait_peer_everywhere(&lab, &key, false, Duration::from_secs(10));
    let status = registry_cli(&lab, &["status"]);
    assert!(status.contains("left (CIDR kept): e"), "{status}");
    assert_all_pairs(&lab, Duration::from_secs(3));

    let removed = registry_cli(&lab, &["remove", "e"]);
    assert!(removed.contains("its pod CIDRs are free"), "{removed}");
    let status = registry_cli(&lab, &["status"]);
    assert!(!status.contains("\ne "), "{status}");
    let export = registry_cli(&lab, &["export"]);
    assert!(!export.contains("name = \"e\""), "{export}");
}

#[test]
fn a_rotated_key_reaches_the_registry_and_a_node_that_was_down_converges_from_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    if !require_root() {
        return;
    }
    let mut lab = running_registry_lab("three-regions.toml", 1);
    assert_all_pairs(&lab, Duration::from_secs(3));
    // d crashes: it misses the in-band announcement
    lab.kill_daemon("d", wiremesh::lab::Signal::Kill).unwrap();
    let to_a = lab.overlay_addrs("a").unwrap()[0];
    let stop = Arc::new(AtomicBool::new(false));
    let pings = ping_stream(&lab, "b", to_a, Duration::from_millis(20), stop.clone());
    let new = rotate(&lab, "a");
    // the record changes once the rotation settles (every live peer acknowledged, or the
    // announce timeout for d passed)
    wiremesh::testing::wait_until(
        Duration::from_secs(30),
        "a's new key in the registry",
        || {
            registry_cli(&lab, &["status"])
                .lines()
                .any(|l| l.starts_with("a ") && l.contains(&new))
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let s = pings.join().unwrap().unwrap();
    println!("b -> a while a rotated and its record changed: {s:?}");
    assert_eq!(s.lost, 0, "{s:?}");
    assert!(wg_peers(lab.ifname("b").unwrap()).contains(&new));

    lab.restart_daemon("d").unwrap();
    assert!(
        wg_peers(lab.ifname("d").unwrap()).contains(&new),
        "d read the new key"
    );
    lab.refresh_topology().unwrap();
    assert_all_pairs(&lab, Duration::from_secs(3));
}

#[test]
fn a_node_removed_by_the_administrator_while_running_stops_and_is_dropped_everywhere() {
    if !require_root() {
        return;
    }
    let lab = running_registry_lab("three-regions.toml", 1);
    let key = lab
        .topology()
        .unwrap()
        .node("d")
        .unwrap()
        .public_key
        .to_string();
    let pid = lab.daemon_pid("d").unwrap();
    let out = registry_cli(&lab, &["remove", "d", "--force"]);
    assert!(out.contains("removed node 'd'"), "{out}");
    wait_log(
        &lab,
        "d",
        "removed from the registry",
        std::time::Duration::from_secs(10),
    );
    wiremesh::testing::wait_until(Duration::from_secs(10), "d's daemon to exit", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    for n in ["a", "b", "c"] {
        wiremesh::testing::wait_until(Duration::from_secs(10), "d dropped", || {
            !wg_peers(lab.ifname(n).unwrap()).contains(&key)
        });
    }
}

#[test]
fn in_a_hub_mesh_a_joining_hub_and_a_joining_spoke_reach_everyone() {
    if !require_root() {
        return;
    }
    let mut lab = running_registry_lab("hub-two-regions.toml", 1);
    let hub = wiremesh::lab::JoinOptions {
        region: "eu".into(),
        hub: true,
        ..wiremesh::lab::JoinOptions::default()
    };
    lab.join("eu-hub2", &hub).unwrap();
    let key = lab
        .topology()
        .unwrap()
        .node("eu-hub2")
        .unwrap()
        .public_key
        .to_string();
    // a hub peers with every node of the mesh; the others learn it through their watch
    for n in ["eu-s1", "eu-s2", "us-hub"] {
        wiremesh::testing::wait_until(Duration::from_secs(10), "the new hub configured", || {
            wg_peers(lab.ifname(n).unwrap()).contains(&key)
        });
    }
    // a spoke peers with its region's hub(s) and the hubs of other regions relay for it
    let spoke = wiremesh::lab::JoinOptions {
        region: "us".into(),
        ..wiremesh::lab::JoinOptions::default()
    };
    lab.join("us-s3", &spoke).unwrap();
    let key = lab
        .topology()
        .unwrap()
        .node("us-s3")
        .unwrap()
        .public_key
        .to_string();
    wiremesh::testing::wait_until(Duration::from_secs(10), "us-hub has us-s3", || {
        wg_peers(lab.ifname("us-hub").unwrap()).contains(&key)
    });
    assert!(!wg_peers(lab.ifname("eu-s1").unwrap()).contains(&key));
    assert!(lab.topology().unwrap().node("eu-hub2").unwrap().hub);
    assert_all_pairs(&lab, Duration::from_secs(5));
    // a spoke of a region without a hub cannot be planned: its daemon says why and exits
    let lonely = wiremesh::lab::JoinOptions {
        region: "ap".into(),
        ..wiremesh::lab::JoinOptions::default()
    };
    let err = lab.join("ap-s1", &lonely).unwrap_err().to_string();
    assert!(err.contains("node 'ap-s1' is in etcd://"), "{err}");
    assert!(err.contains("cannot be planned"), "{err}");
    assert!(err.contains("region 'ap' has no hub"), "{err}");
}
