//! The etcd driver (`io/etcd`) against a real etcd on loopback: lists at one revision across
//! pages, transactions that commit or show what stood in the way, watches with their events and
//! their compacted end, the presence lease, and the errors an operator sees.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use etcd::TestEtcd;
use std::time::{Duration, Instant};
use wiremesh::core::registry::mirror::Event;
use wiremesh::core::registry::{TxnOutcome, TxnSpec};
use wiremesh::io::etcd::lease::{self, KeepAlive, Renewal};
use wiremesh::io::etcd::watch::{Watch, WatchItem};
use wiremesh::io::etcd::{Etcd, EtcdConfig, EtcdError};

const PREFIX: &str = "/wiremesh/drv/";

async fn connect(e: &TestEtcd) -> Etcd {
    Etcd::connect(&e.config(), PREFIX).await.unwrap()
}

/// Puts `n` keys under `prefix` in transactions of 128.
async fn fill(etcd: &mut Etcd, prefix: &str, n: usize) {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}k{i:05}")).collect();
    for chunk in keys.chunks(128) {
        let spec = TxnSpec {
            puts: chunk.iter().map(|k| (k.clone(), b"v".to_vec())).collect(),
            ..TxnSpec::default()
        };
        assert!(matches!(
            etcd.txn(&spec).await.unwrap(),
            TxnOutcome::Committed(_)
        ));
    }
}

#[tokio::test]
async fn a_list_reads_every_key_of_the_prefix_in_pages_at_one_revision() {
    let e = TestEtcd::start();
    let mut etcd = connect(&e).await;
    fill(&mut etcd, PREFIX, 2_500).await;
    // Neighbours of the prefix in etcd's byte order must not leak in.
    etcd.put("/wiremesh/drv0", b"x".to_vec(), 0).await.unwrap();
    etcd.put("/wiremesh/drv2/k", b"x".to_vec(), 0)
        .await
        .unwrap();
    let head = etcd.put("/wiremesh/dr", b"x".to_vec(), 0).await.unwrap();
    let (kvs, revision) = etcd.list(PREFIX).await.unwrap();
    assert_eq!(kvs.len(), 2_500);
    assert_eq!(revision, head);
    assert!(kvs.iter().all(|kv| kv.key.starts_with(PREFIX)));
    let mut keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    keys.dedup();
    assert_eq!(keys.len(), 2_500, "a key came twice across pages");
}

#[tokio::test]
async fn a_transaction_commits_once_and_then_shows_what_stood_in_the_way() {
    let e = TestEtcd::start();
    let mut etcd = connect(&e).await;
    let key = format!("{PREFIX}claims/a");
    let spec = TxnSpec {
        compare_absent: vec![key.clone()],
        puts: vec![(key.clone(), b"first".to_vec())],
        gets_on_failure: vec![key.clone(), format!("{PREFIX}absent-key")],
        ..TxnSpec::default()
    };
    let TxnOutcome::Committed(rev) = etcd.txn(&spec).await.unwrap() else {
        panic!("the first transaction must commit");
    };
    let mut second = spec.clone();
    second.puts[0].1 = b"second".to_vec();
    let TxnOutcome::Conflict(found) = etcd.txn(&second).await.unwrap() else {
        panic!("the second transaction must not commit");
    };
    assert_eq!(found.len(), 2);
    let held = found[0].as_ref().expect("the existing key is shown");
    assert_eq!(held.value, b"first");
    assert_eq!(held.create_revision, rev);
    assert!(found[1].is_none());
    // compare_unchanged: a stale mod revision fails, the current one passes.
    let delete = |rev| TxnSpec {
        compare_unchanged: vec![(key.clone(), rev)],
        deletes: vec![key.clone()],
        ..TxnSpec::default()
    };
    assert!(matches!(
        etcd.txn(&delete(rev - 1)).await.unwrap(),
        TxnOutcome::Conflict(_)
    ));
    assert!(matches!(
        etcd.txn(&delete(rev)).await.unwrap(),
        TxnOutcome::Committed(_)
    ));
    assert_eq!(etcd.get(&key).await.unwrap(), None);
}

#[tokio::test]
async fn a_watch_sees_puts_and_deletes_after_its_start_revision() {
    let e = TestEtcd::start();
    let mut etcd = connect(&e).await;
    let before = etcd
        .put(&format!("{PREFIX}old"), b"o".to_vec(), 0)
        .await
        .unwrap();
    let mut watch = Watch::start(&etcd, PREFIX, before + 1).await.unwrap();
    etcd.put(&format!("{PREFIX}new"), b"n".to_vec(), 0)
        .await
        .unwrap();
    etcd.put("/wiremesh/other/x", b"n".to_vec(), 0)
        .await
        .unwrap();
    let spec = TxnSpec {
        deletes: vec![format!("{PREFIX}old")],
        ..TxnSpec::default()
    };
    etcd.txn(&spec).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("the watch answered")
            .unwrap()
            .expect("the stream is open");
        if let WatchItem::Events { events, .. } = item {
            seen.extend(events);
        }
    }
    match &seen[0] {
        Event::Put(kv) => {
            assert_eq!(kv.key, format!("{PREFIX}new"));
            assert_eq!(kv.value, b"n");
        }
        other => panic!("expected the put, got {other:?}"),
    }
    assert!(
        matches!(&seen[1], Event::Delete { key, .. } if *key == format!("{PREFIX}old")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_ends_as_compacted() {
    let e = TestEtcd::start();
    let mut etcd = connect(&e).await;
    let first = etcd
        .put(&format!("{PREFIX}a"), b"1".to_vec(), 0)
        .await
        .unwrap();
    etcd.put(&format!("{PREFIX}a"), b"2".to_vec(), 0)
        .await
        .unwrap();
    let head = etcd
        .put(&format!("{PREFIX}a"), b"3".to_vec(), 0)
        .await
        .unwrap();
    etcd.compact(head).await.unwrap();
    let mut watch = Watch::start(&etcd, PREFIX, first).await.unwrap();
    let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch answered")
        .unwrap();
    assert_eq!(item, Some(WatchItem::Compacted(head)));
}

#[tokio::test]
async fn presence_lives_on_its_lease_and_goes_with_its_revocation() {
    let e = TestEtcd::start();
    let mut etcd = connect(&e).await;
    let id = lease::grant(&etcd, 30).await.unwrap();
    let key = format!("{PREFIX}node/a/presence");
    etcd.put(&key, b"here".to_vec(), id).await.unwrap();
    assert_eq!(etcd.get(&key).await.unwrap().unwrap().lease, id);
    let mut keep = KeepAlive::open(&etcd, id)
        .await
        .unwrap()
        .expect("lease known");
    assert!(matches!(keep.renew().await.unwrap(), Renewal::Alive { ttl } if ttl > 25));
    lease::revoke(&etcd, id).await.unwrap();
    assert_eq!(etcd.get(&key).await.unwrap(), None);
    assert_eq!(keep.renew().await.unwrap(), Renewal::Expired);
    assert!(KeepAlive::open(&etcd, id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_closed_port_is_reported_as_unreachable_naming_the_endpoint() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = EtcdConfig {
        endpoints: vec![format!("127.0.0.1:{port}")],
        ..EtcdConfig::default()
    };
    let started = Instant::now();
    let err = match Etcd::connect(&config, PREFIX).await {
        Err(e) => e,
        Ok(_) => panic!("connected to a closed port"),
    };
    let text = err.to_string();
    assert!(matches!(err, EtcdError::Unreachable { .. }), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_wrong_password_is_reported_as_refused_credentials() {
    let e = TestEtcd::start();
    let etcd = connect(&e).await;
    e.enable_auth("right-password").await;
    drop(etcd);
    let mut config = e.config();
    config.user = Some(("root".into(), "wrong-password".into()));
    let err = match Etcd::connect(&config, PREFIX).await {
        Err(e) => e,
        Ok(_) => panic!("a wrong password was accepted"),
    };
    assert!(matches!(err, EtcdError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    config.user = Some(("root".into(), "right-password".into()));
    Etcd::connect(&config, PREFIX).await.unwrap();
}
