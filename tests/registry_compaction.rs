//! A daemon cut off from etcd while the mesh changes and etcd compacts its history: when it
//! reconnects, its watch revision is gone; it relists and applies the difference instead of
//! crashing or missing the change.

mod common;

use common::*;
use std::time::Duration;
use wiremesh::lab::JoinOptions;

#[test]
fn a_compacted_watch_revision_makes_the_daemon_relist_not_crash() {
    if !require_root() {
        return;
    }
    let mut lab = running_registry_lab("three-regions.toml", 1);
    assert_all_pairs(&lab, Duration::from_secs(3));
    let pid = lab.daemon_pid("a").unwrap();
    // a loses etcd (its packets to the registry vanish), not the mesh
    let cut = "add table inet wmcut; \
               add chain inet wmcut out { type filter hook output priority 0; policy accept; }; \
               add rule inet wmcut out ip daddr 172.29.0.0/24 drop";
    let out = lab.exec("a", &["nft", cut]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_log(
        &lab,
        "a",
        "the mesh keeps its last topology",
        Duration::from_secs(30),
    );
    lab.join(
        "e",
        &JoinOptions {
            region: "us-east".into(),
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
    // churn after the join, then compact everything up to the head, physically
    for i in 0..5 {
        etcdctl(
            &lab,
            &["put", "/wiremesh/other-mesh/x"],
            format!("{i}").as_bytes(),
        );
    }
    let status = registry_cli(&lab, &["status"]);
    let head: i64 = status
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap();
    etcdctl(&lab, &["compaction", "--physical", &head.to_string()], b"");
    assert!(
        !wg_peers(lab.ifname("a").unwrap()).contains(&key),
        "a saw e while cut off"
    );
    let out = lab.exec("a", &["nft", "delete table inet wmcut"]).unwrap();
    assert!(out.status.success());
    wait_log(
        &lab,
        "a",
        "registry watch revision was compacted; relisting",
        Duration::from_secs(45),
    );
    wait_peer_everywhere(&lab, &key, true, Duration::from_secs(10));
    assert_eq!(lab.daemon_pid("a"), Some(pid));
    assert_all_pairs(&lab, Duration::from_secs(3));
}
