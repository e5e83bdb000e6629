//! Memory and apply time of a daemon with 0, 1,000 and 10,000 configured idle peers, wiremesh
//! next to boringtun-cli and the offload build of wireguard-go, alternating in one run. Root
//! only; `cargo bench --bench peer_scale`.
//!
//! ```text
//!   ns ps<pid>  (created here, removed on exit)
//!   ┌───────────────────────────────────────────────────────────────┐
//!   │  daemon under test, tun psw0, listening on UDP 51820          │
//!   │  172.30.0.0/16 local (route on lo): every idle peer's endpoint│
//!   │  is 172.30.x.y:51820; nftables drops what is sent there, so   │
//!   │  nothing answers and nothing leaves the namespace             │
//!   └───────────────────────────────────────────────────────────────┘
//! ```
//!
//! - wiremesh reads a full-mesh topology of N+1 nodes; the apply time is the daemon's own
//!   `apply_ms` from its "wiremesh is up" log line (reading and planning the topology, building
//!   the peers, installing the routes; `prepare_ms`, `engine_ms`, `routes_ms` split it).
//! - boringtun-cli and wireguard-go get the same peers (key, AllowedIPs = the pod CIDR,
//!   endpoint) with one `wg setconf`; their apply time is that command's wall time.
//! - RSS is `VmRSS` of `/proc/PID/status` once it has settled after the apply. Bytes per idle
//!   peer = (RSS with N peers − RSS with none) / N.
//!
//! Environment: `ROUNDS` (default 3), `PEERS` (default "1000 10000"), `BORINGTUN`,
//! `WG_GO_OFFLOAD`.

#[path = "common/root.rs"]
mod root;
#[path = "scale/mod.rs"]
mod scale;

use scale::{fmt_stats, ip_batch, run, settled_rss_kib, stats, WgDaemon, WgImpl};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wiremesh::core::key::{PrivateKey, PublicKey};

const WIREMESH: &str = env!("CARGO_BIN_EXE_wiremesh");
const IFNAME: &str = "psw0";
/// Wait this long after the apply before reading RSS (handshake bursts, allocator settling).
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Wiremesh,
    Wg(WgImpl),
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Wiremesh => "wiremesh",
            Impl::Wg(w) => w.name(),
        }
    }
}

/// One measurement: RSS in KiB, apply time in seconds, wiremesh's split (ms).
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: f64,
    apply_s: f64,
    split: Option<(f64, f64, f64)>,
}

/// The namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Netns {
        run(Command::new("ip").args(["netns", "add", name]));
        let ns = Netns(name.into());
        ip_batch(
            Some(name),
            &[
                "link set lo up".into(),
                "route add local 172.30.0.0/16 dev lo".into(),
            ],
        );
        run(Command::new("ip").args([
            "netns",
            "exec",
            name,
            "nft",
            "add table inet void; \
             add chain inet void input { type filter hook input priority 0; policy accept; }; \
             add rule inet void input ip daddr 172.30.0.0/16 drop",
        ]));
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// The idle peers: keys and the index that gives each its pod CIDR and void endpoint.
struct Peers {
    own: PrivateKey,
    keys: Vec<PublicKey>,
}

fn pod(i: usize) -> String {
    // node 0 is the daemon under test; peer i is node i + 1
    let n = i + 1;
    format!("10.{}.{}.0/24", n / 250, n % 250)
}

fn endpoint(i: usize) -> String {
    let host = i + 2;
    format!("172.30.{}.{}:51820", host >> 8, host & 255)
}

fn topology(p: &Peers, n: usize) -> String {
    let mut t = String::from("mode = \"full\"\ncluster-cidr = \"10.0.0.0/8\"\n");
    let _ = write!(
        t,
        "[[node]]\nname = \"n0\"\ncloud = \"c\"\nregion = \"r\"\nendpoint = \"172.30.0.1:51820\"\npublic-key = \"{}\"\npod-cidr = \"10.0.0.0/24\"\n",
        p.own.public_key()
    );
    for (i, key) in p.keys[..n].iter().enumerate() {
        let _ = write!(
            t,
            "[[node]]\nname = \"p{i}\"\ncloud = \"c\"\nregion = \"r\"\nendpoint = \"{}\"\npublic-key = \"{key}\"\npod-cidr = \"{}\"\n",
            endpoint(i),
            pod(i)
        );
    }
    t
}

fn wg_config(p: &Peers, n: usize) -> String {
    let mut t = String::from("[Interface]\nListenPort = 51820\n");
    for (i, key) in p.keys[..n].iter().enumerate() {
        let _ = write!(
            t,
            "[Peer]\nPublicKey = {key}\nAllowedIPs = {}\nEndpoint = {}\n",
            pod(i),
            endpoint(i)
        );
    }
    t
}

/// The field `name=value` of a log line.
fn field(line: &str, name: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
}

fn wiremesh(ns: &str, dir: &Path, p: &Peers, n: usize) -> Sample {
    let topo = dir.join(format!("wm{n}.toml"));
    std::fs::write(&topo, topology(p, n)).unwrap();
    let key = dir.join("own.key");
    let log_path = dir.join(format!("wm{n}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child: Child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            WIREMESH,
            "up",
            "--node",
            "n0",
            "--interface",
            IFNAME,
        ])
        .arg("--topology")
        .arg(&topo)
        .arg("--private-key")
        .arg(&key)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let up = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("wiremesh is up")) {
            break line.to_string();
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wiremesh with {n} peers did not come up:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(SETTLE);
    let rss = settled_rss_kib(
        child.id(),
        Duration::from_millis(300),
        Duration::from_secs(5),
    );
    // SAFETY: kill(2) on the pid of our own child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    let _ = std::fs::remove_file(scale::socket(IFNAME));
    let ms = |f| field(&up, f).unwrap_or(f64::NAN);
    Sample {
        rss_kib: rss as f64,
        apply_s: ms("apply_ms") / 1000.0,
        split: Some((ms("prepare_ms"), ms("engine_ms"), ms("routes_ms"))),
    }
}

fn wg_style(which: WgImpl, ns: &str, dir: &Path, p: &Peers, n: usize) -> Sample {
    let conf = dir.join(format!("wg{n}.conf"));
    std::fs::write(&conf, wg_config(p, n)).unwrap();
    let d = WgDaemon::start(which, ns, IFNAME, &dir.join("wg.log"));
    run(Command::new("ip")
        .args(["netns", "exec", ns, "wg", "set", IFNAME, "private-key"])
        .arg(dir.join("own.key")));
    let t = Instant::now();
    run(Command::new("ip")
        .args(["netns", "exec", ns, "wg", "setconf", IFNAME])
        .arg(&conf));
    let apply = t.elapsed();
    std::thread::sleep(SETTLE);
    let rss = settled_rss_kib(d.pid(), Duration::from_millis(300), Duration::from_secs(5));
    drop(d);
    Sample {
        rss_kib: rss as f64,
        apply_s: apply.as_secs_f64(),
        split: None,
    }
}

fn main() {
    if !root::may_run("peer-scale") {
        return;
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut counts: Vec<usize> = std::env::var("PEERS")
        .unwrap_or_else(|_| "1000 10000".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    counts.insert(0, 0);
    let mut impls = vec![Impl::Wiremesh];
    for w in [WgImpl::Boringtun, WgImpl::WireguardGoOffload] {
        if w.available() {
            impls.push(Impl::Wg(w));
        } else {
            eprintln!("{} not found: left out", w.exe().display());
        }
    }
    let ns_name = format!("ps{}", std::process::id());
    let ns = Netns::create(&ns_name);
    let dir = tempfile::tempdir().unwrap();
    let peers = Peers {
        own: wiremesh::io::keyfile::generate(),
        keys: (0..*counts.iter().max().unwrap())
            .map(|_| wiremesh::io::keyfile::generate().public_key())
            .collect(),
    };
    wiremesh::io::keyfile::write_private(&dir.path().join("own.key"), &peers.own, false).unwrap();
    // samples[impl][count]
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![vec![]; counts.len()]; impls.len()];
    for round in 1..=rounds {
        for (c, &n) in counts.iter().enumerate() {
            for (i, &im) in impls.iter().enumerate() {
                let s = match im {
                    Impl::Wiremesh => wiremesh(&ns.0, dir.path(), &peers, n),
                    Impl::Wg(w) => wg_style(w, &ns.0, dir.path(), &peers, n),
                };
                println!(
                    "round {round}: {:<24} {n:>6} peers: RSS {:>8.0} KiB, apply {:.3} s{}",
                    im.name(),
                    s.rss_kib,
                    s.apply_s,
                    s.split.map_or(String::new(), |(p, e, r)| format!(
                        " (prepare {p:.1} ms, engine {e:.1} ms, routes {r:.1} ms)"
                    ))
                );
                samples[i][c].push(s);
            }
        }
    }
    println!("\n| implementation | peers | RSS, KiB | KiB per idle peer | apply, s |");
    println!("|---|---|---|---|---|");
    for (i, im) in impls.iter().enumerate() {
        let base = stats(&rss(&samples[i][0])).0;
        for (c, &n) in counts.iter().enumerate() {
            let per_peer: Vec<f64> = if n == 0 {
                vec![]
            } else {
                rss(&samples[i][c])
                    .iter()
                    .map(|r| (r - base) / n as f64)
                    .collect()
            };
            let apply: Vec<f64> = samples[i][c].iter().map(|s| s.apply_s).collect();
            println!(
                "| {} | {n} | {} | {} | {} |",
                im.name(),
                fmt_stats(&rss(&samples[i][c]), 0),
                if n == 0 {
                    "–".into()
                } else {
                    fmt_stats(&per_peer, 2)
                },
                fmt_stats(&apply, 3)
            );
        }
    }
    drop(ns);
}

fn rss(s: &[Sample]) -> Vec<f64> {
    s.iter().map(|s| s.rss_kib).collect()
}
