//! Watch fan-out (issue 17): 1,000 clients, each with its own connection and one prefix watch
//! as a daemon keeps, on one real etcd on loopback; 50 changes are put one after another, and
//! for each the time from the put's answer to its delivery at the 1,000th watcher is taken.
//! Prints p50, p99 and max over the changes, with the host. No root needed;
//! `cargo bench --bench registry_fanout`. Environment: `CLIENTS` (default 1000), `CHANGES` (50).

use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wiremesh::io::etcd::watch::{Watch, WatchItem};
use wiremesh::io::etcd::{Etcd, EtcdConfig};
use wiremesh::lab::etcd::{loopback_spec, Member, ETCD_READY_TIMEOUT};

#[path = "common/root.rs"]
mod root;

const PREFIX: &str = "/wiremesh/fanout/";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One file descriptor per connection, and then some: raise the soft limit to the hard one.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clients = env("CLIENTS", 1000);
    let changes = env("CHANGES", 50);
    raise_nofile();
    let dir = std::path::PathBuf::from(format!(
        "/dev/shm/wiremesh-bench-fanout-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = loopback_spec("e1", &dir, "fanout").unwrap();
    let mut member = Member::start(spec).unwrap();
    member.wait_healthy(ETCD_READY_TIMEOUT).unwrap();
    let config = EtcdConfig {
        endpoints: vec![member.spec.client.to_string()],
        ..EtcdConfig::default()
    };
    println!(
        "watch fan-out: {clients} watchers on one etcd 3.4 member, {changes} changes, host: {}",
        root::host()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(run(config, clients, changes));
    member.kill();
    let _ = std::fs::remove_dir_all(&dir);
    let mut times = result;
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "put answered → delivered to all {clients}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(pick(1.0))
    );
}

async fn run(config: EtcdConfig, clients: usize, changes: usize) -> Vec<Duration> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let started = Instant::now();
    let mut head = Etcd::connect(&config, PREFIX).await.unwrap();
    let from = head
        .put(&format!("{PREFIX}start"), b"0".to_vec(), 0)
        .await
        .unwrap()
        + 1;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (config, tx) = (config.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let etcd = Etcd::connect(&config, PREFIX).await.unwrap();
            let mut watch = Watch::start(&etcd, PREFIX, from).await.unwrap();
            while let Ok(Some(item)) = watch.next().await {
                if let WatchItem::Events { revision, .. } = item {
                    let _ = tx.send((revision, Instant::now()));
                }
            }
        }));
    }
    // every watcher must be in place before timing: a marker put must reach all of them
    let marker = head
        .put(&format!("{PREFIX}marker"), b"m".to_vec(), 0)
        .await
        .unwrap();
    let mut got = 0;
    while got < clients {
        let (rev, _) = rx.recv().await.unwrap();
        if rev == marker {
            got += 1;
        }
    }
    println!(
        "{clients} watchers connected and watching in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    for i in 0..changes {
        let rev = head
            .put(&format!("{PREFIX}node/n{i}/record"), vec![b'x'; 300], 0)
            .await
            .unwrap();
        let answered = Instant::now();
        let mut last = answered;
        let mut n = 0;
        while n < clients {
            let (r, at) = rx.recv().await.unwrap();
            if r == rev {
                n += 1;
                last = last.max(at);
            }
        }
        times.push(last.saturating_duration_since(answered));
    }
    for t in tasks {
        t.abort();
    }
    times
}
