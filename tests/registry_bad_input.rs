//! Bad input around the registry: an unreachable URL, refused credentials, a malformed
//! address, and records written by hand into etcd (a bad key, an overlapping claim, broken JSON,
//! a newer version, an unknown field, a 1 MiB value). Each gets a clear error naming the key
//! or the endpoint; a bad record is skipped and reported, never applied, and the daemon lives.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use common::*;
use std::time::Duration;

/// `wiremesh up` for node `n1` with a fresh key and `args`; its exit status and stderr.
fn up(args: &[&str]) -> (bool, String) {
    Joiner::new().up("wmbad0", args)
}

#[test]
fn an_unreachable_registry_without_a_snapshot_is_refused_naming_both() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("etcd://127.0.0.1:{port}");
    let (ok, err) = up(&["--registry", &url]);
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot reach etcd at 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("no snapshot at"), "{err}");
}

#[test]
fn a_malformed_registry_address_is_refused_naming_the_setting() {
    let (ok, err) = up(&["--registry", "http://127.0.0.1:2379"]);
    assert!(!ok);
    assert!(
        err.contains("registry 'http://127.0.0.1:2379': expected file:PATH"),
        "{err}"
    );
}

#[test]
fn refused_credentials_are_reported_as_such() {
    let e = etcd::TestEtcd::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(e.enable_auth("right"));
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong\n").unwrap();
    let url = format!("etcd://{}", e.endpoint());
    let (ok, err) = up(&[
        "--registry",
        &url,
        "--etcd-user",
        "root",
        "--etcd-password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains(&format!("etcd at {} refused the credentials", e.endpoint())),
        "{err}"
    );
    // a user without a password is refused before anything is dialled
    let (ok, err) = up(&["--registry", &url, "--etcd-user", "root"]);
    assert!(!ok);
    assert!(err.contains("etcd-user is set but no password"), "{err}");
}

#[test]
fn records_written_by_hand_are_skipped_and_reported_never_applied() {
    if !require_root() {
        return;
    }
    let lab = running_registry_lab("three-regions.toml", 1);
    let p = format!("/wiremesh/{}/", lab.prefix());
    let a_cidr = lab.topology().unwrap().node("a").unwrap().pod_cidr;
    let peers_before = wg_peers(lab.ifname("a").unwrap()).len();
    let key = |i: u8| {
        let mut b = [0u8; 32];
        b[0] = i;
        b[1] = 7;
        wiremesh::core::key::PublicKey::from_bytes(b).to_string()
    };
    let record = |name: &str, key: &str, extra: &str| {
        format!(
            r#"{{"v":1,"name":"{name}","cloud":"c","region":"eu-west","endpoints":["172.31.1.99:51820"],"public-key":"{key}","hub":false{extra}}}"#
        )
    };
    let claim = |cidr: &str| format!(r#"{{"v":1,"pod-cidr":"{cidr}"}}"#);
    let bad: Vec<(String, String, &str)> = vec![
        (
            format!("{p}node/x1/record"),
            record("x1", "AAAA", ""),
            "field 'public-key'",
        ),
        (format!("{p}node/x2/record"), record("x2", &key(2), ""), ""),
        (
            format!("{p}node/x3/record"),
            "{not json".into(),
            "x3/record",
        ),
        (
            format!("{p}node/x4/record"),
            record("x4", &key(4), "").replace("\"v\":1", "\"v\":2"),
            "newer wiremesh",
        ),
        (
            format!("{p}node/x5/record"),
            record("x5", &key(5), ",\"colour\":\"red\""),
            "colour",
        ),
        (
            format!("{p}node/x6/record"),
            "x".repeat(1 << 20),
            "x6/record",
        ),
    ];
    for (k, v, _) in &bad {
        etcdctl(&lab, &["put", k], v.as_bytes());
    }
    // x2's record is fine but its claim overlaps a's, which is older: x2 loses
    etcdctl(
        &lab,
        &["put", &format!("{p}claims/x2")],
        claim(&a_cidr.to_string()).as_bytes(),
    );
    for i in [1, 3, 4, 5, 6] {
        etcdctl(
            &lab,
            &["put", &format!("{p}claims/x{i}")],
            claim(&format!("10.244.{}.0/24", 200 + i)).as_bytes(),
        );
    }
    // x2's record itself is fine: what is refused is its claim (below)
    let refused: Vec<_> = bad.iter().filter(|(_, _, says)| !says.is_empty()).collect();
    for (k, _, says) in &refused {
        wait_log(&lab, "a", k, Duration::from_secs(10));
        let log = std::fs::read_to_string(lab.log_path("a")).unwrap();
        let line = log.lines().find(|l| l.contains(k.as_str())).unwrap();
        assert!(line.contains(says), "{k}: {line}");
    }
    wait_log(&lab, "a", &format!("{p}claims/x2"), Duration::from_secs(10));
    let status = registry_cli(&lab, &["status"]);
    println!("{status}");
    for (k, _, _) in &refused {
        assert!(
            status.contains(&format!("skipped: {k}")),
            "{k} not in:\n{status}"
        );
    }
    assert!(
        status.contains(&format!("skipped: {p}claims/x2")),
        "{status}"
    );
    // nothing was applied: the same peers, the daemons alive, the mesh whole
    for n in lab.nodes() {
        let peers = wg_peers(lab.ifname(&n).unwrap());
        assert_eq!(peers.len(), peers_before, "{n}: {peers:?}");
        assert!(!peers.contains(&key(2)), "{n} configured x2");
        assert!(lab.daemon_pid(&n).is_some(), "{n} died");
    }
    assert_all_pairs(&lab, Duration::from_secs(3));
}
