//! Pod-CIDR allocation through a real etcd on loopback (docs/registry.md, "Allocation: 20
//! joiners, 20 CIDRs"): joiners that start at the same moment get distinct CIDRs, also when
//! every one of them prefers the same slot, and a full pool is refused naming `cluster-cidr`.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use etcd::TestEtcd;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::Barrier;
use wiremesh::core::key::PublicKey;
use wiremesh::core::registry::keys::Layout;
use wiremesh::core::registry::validate::{self, Settings};
use wiremesh::daemon::registry::join::{take_claim, JoinError};
use wiremesh::io::etcd::Etcd;

/// A mesh whose pool is a /19 of /24s: 32 slots.
const SETTINGS: &str = r#"{"v":1,"mode":"full","cluster-cidr":"10.77.0.0/19","node-prefix":24}"#;

fn record(name: &str, i: u32) -> Vec<u8> {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&(i + 2).to_le_bytes());
    let key = PublicKey::from_bytes(b);
    format!(
        r#"{{"v":1,"name":"{name}","cloud":"c","region":"r","endpoints":[],"public-key":"{key}","hub":false,"state":"active"}}"#
    )
    .into_bytes()
}

/// Starts `names.len()` joiners behind one barrier, each with its own connection, and returns
/// their results in order.
async fn join_at_once(
    e: &TestEtcd,
    layout: &Layout,
    names: &[String],
) -> Vec<Result<Ipv4Net, JoinError>> {
    let settings: Settings = validate::settings("s", SETTINGS.as_bytes()).unwrap();
    let barrier = Arc::new(Barrier::new(names.len()));
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (config, layout, settings, barrier, name) = (
            e.config(),
            layout.clone(),
            settings.clone(),
            barrier.clone(),
            name.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut etcd = Etcd::connect(&config, layout.prefix()).await?;
            let (kvs, revision) = etcd.list(layout.prefix()).await?;
            let snapshot = wiremesh::core::registry::Snapshot::new(revision, kvs);
            barrier.wait().await;
            let taken = take_claim(
                &mut etcd,
                &layout,
                &settings,
                &snapshot,
                &name,
                Some(record(&name, i as u32)),
            )
            .await?;
            Ok(taken.claim.pod_cidr)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// The CIDRs every joiner took; fails on the first that did not.
fn all_taken(results: Vec<Result<Ipv4Net, JoinError>>) -> Vec<Ipv4Net> {
    results.into_iter().map(Result::unwrap).collect()
}

async fn start_mesh(e: &TestEtcd, mesh: &str) -> (Etcd, Layout) {
    let layout = Layout::new(mesh).unwrap();
    let mut etcd = Etcd::connect(&e.config(), layout.prefix()).await.unwrap();
    etcd.put(&layout.settings(), SETTINGS.as_bytes().to_vec(), 0)
        .await
        .unwrap();
    (etcd, layout)
}

/// Checks that the claims in etcd are `n` distinct CIDRs, each with its `alloc/` lock written
/// in the same revision, and that they equal what the joiners were told.
async fn assert_distinct(etcd: &mut Etcd, layout: &Layout, told: &[Ipv4Net]) {
    let (kvs, _) = etcd.list(layout.prefix()).await.unwrap();
    let claims: Vec<_> = kvs
        .iter()
        .filter(|kv| kv.key.starts_with(&format!("{}claims/", layout.prefix())))
        .collect();
    assert_eq!(claims.len(), told.len());
    let distinct: BTreeSet<_> = told.iter().collect();
    assert_eq!(
        distinct.len(),
        told.len(),
        "two joiners got one CIDR: {told:?}"
    );
    for net in told {
        let lock = layout.alloc(ipnet::IpNet::V4(*net));
        let lock = kvs.iter().find(|kv| kv.key == lock).expect("alloc key");
        let claim = claims
            .iter()
            .find(|kv| String::from_utf8_lossy(&kv.value).contains(&net.to_string()))
            .expect("a claim names it");
        assert_eq!(lock.mod_revision, claim.mod_revision, "one transaction");
    }
    for (i, a) in told.iter().enumerate() {
        for b in &told[i + 1..] {
            assert!(!a.contains(&b.network()) && !b.contains(&a.network()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_nodes_registering_at_one_moment_get_twenty_distinct_cidrs() {
    let e = TestEtcd::start();
    let (mut etcd, layout) = start_mesh(&e, "alloc-plain").await;
    let names: Vec<String> = (0..20).map(|i| format!("node-{i}")).collect();
    let told = all_taken(join_at_once(&e, &layout, &names).await);
    assert_distinct(&mut etcd, &layout, &told).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_joiners_that_all_prefer_one_slot_still_get_twenty_distinct_cidrs() {
    let e = TestEtcd::start();
    let (mut etcd, layout) = start_mesh(&e, "alloc-same").await;
    let pool: Ipv4Net = "10.77.0.0/19".parse().unwrap();
    let wanted = wiremesh::core::ipam::preferred_v4(pool, 24, "seed").unwrap();
    let names: Vec<String> = (0..100_000)
        .map(|i| format!("n{i}"))
        .filter(|n| wiremesh::core::ipam::preferred_v4(pool, 24, n) == Some(wanted))
        .take(20)
        .collect();
    assert_eq!(names.len(), 20);
    let told = all_taken(join_at_once(&e, &layout, &names).await);
    assert!(
        told.contains(&wanted),
        "one of them got the slot they all wanted"
    );
    assert_distinct(&mut etcd, &layout, &told).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joiner_to_a_full_pool_is_refused_naming_cluster_cidr() {
    let e = TestEtcd::start();
    let (mut etcd, layout) = start_mesh(&e, "alloc-full").await;
    let names: Vec<String> = (0..32).map(|i| format!("f{i}")).collect();
    let told = all_taken(join_at_once(&e, &layout, &names).await);
    assert_distinct(&mut etcd, &layout, &told).await;
    let late = join_at_once(&e, &layout, &["late".to_string()]).await;
    let err = late.into_iter().next().unwrap().unwrap_err().to_string();
    assert!(err.contains("no free pod CIDR left"), "{err}");
    assert!(err.contains("cluster-cidr 10.77.0.0/19"), "{err}");
    // A node that already holds a claim adopts it instead of taking another.
    let again = join_at_once(&e, &layout, &["f3".to_string()]).await;
    assert_eq!(again.into_iter().next().unwrap().unwrap(), told[3]);
}
