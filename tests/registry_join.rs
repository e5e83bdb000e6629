//! A node joins a running mesh on a real etcd registry with nothing but the registry and a key:
//! every running daemon configures it through its watch, without a restart and without
//! re-handshaking its existing peers; it leaves by SIGTERM (peer removed everywhere, its CIDR
//! kept) and `registry remove` frees its CIDR.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;
use wiremesh::lab::JoinOptions;

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

    lab.join(
        "e",
        &JoinOptions {
            region: "us-east".into(),
            cloud: Some("gcp".into()),
            ..JoinOptions::default()
        },
    )
    .unwrap();
    let key = lab
        .topology()
        .unwrap()
        .node("e")
        .unwrap()
        .public_key
        .to_string();
    let took = wait_peer_everywhere(&lab, &key, true, Duration::from_secs(10));
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
