//! A node under a handshake flood: what it costs the node and what it does to traffic across
//! it, for wiremesh and, in the same run, the implementations it is measured against.
//!
//! A lab of three nodes in one region (full mesh): n0 is the target, n1 a legitimate peer that
//! sends a UDP echo through n0 every 10 ms, and n2's namespace (no daemon) floods n0's
//! endpoint with, in turn, random junk, initiations with a forged MAC1 and initiations with a
//! valid MAC1 for n0's key from a key no node knows (`wiremesh::lab::flood_packets`), `COUNT`
//! of each at each rate of `RATES`, half from n2's configured endpoint and half from another
//! port. Per implementation, rate and kind: the rate achieved, echo loss and p99, the target's
//! CPU per flood packet (utime + stime, echoes included: 100 a second), its RSS growth, and the
//! cookie replies that came back to the flooder.
//!
//! Root only; `cargo bench --bench handshake_flood`. Environment: `IMPLS` (default
//! "wiremesh wg-go boringtun", those installed), `RATES` (default "20000 200000"), `COUNT`
//! (default 50000), `ROUNDS` (default 1), `WIREMESH` (another `wiremesh` executable, e.g. an
//! older build), `WM_ALT` (the executable of the implementation "wiremesh-alt", for an A/B run
//! in one go), `BORINGTUN`, `WG_GO` (see `scale/mod.rs`). boringtun-cli:
//! `cargo install boringtun-cli --locked --root /opt/wiremesh-anchors/boringtun`.

#[path = "common/root.rs"]
mod root;
#[path = "scale/mod.rs"]
mod scale;

use scale::{rss_kib, WgDaemon, WgImpl};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wiremesh::lab::{
    echo_server, echo_stream, flood_packets, send_flood, EchoStats, FloodKind, Lab, LabOptions,
};

const WIREMESH: &str = env!("CARGO_BIN_EXE_wiremesh");
const ECHO_EVERY: Duration = Duration::from_millis(10);
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
const ECHO_PORT: u16 = 7007;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The implementation under test, running on n0 and n1.
enum Running {
    Wiremesh,
    Wg(Vec<WgDaemon>),
}

fn start(lab: &mut Lab, which: &str, dir: &Path, wiremesh: &str) -> Option<Running> {
    let wg = match which {
        "wiremesh" | "wiremesh-alt" => {
            lab.start_daemons_of(&["n0", "n1"]).unwrap();
            return Some(Running::Wiremesh);
        }
        "wg-go" => WgImpl::WireguardGo,
        "wg-go-offload" => WgImpl::WireguardGoOffload,
        "boringtun" => WgImpl::Boringtun,
        other => panic!("unknown implementation {other}"),
    };
    if !wg.available() {
        eprintln!("{} not found at {}: skipped", wg.name(), wg.exe().display());
        return None;
    }
    let daemons = ["n0", "n1"]
        .iter()
        .map(|n| {
            let log = dir.join(format!("{n}.{which}.log"));
            let d = WgDaemon::start(wg, lab.node_ns(n).unwrap(), lab.ifname(n).unwrap(), &log);
            scale::configure(lab, n, dir, wiremesh);
            d
        })
        .collect();
    Some(Running::Wg(daemons))
}

impl Running {
    fn target_pid(&self, lab: &Lab) -> u32 {
        match self {
            Running::Wiremesh => lab.daemon_pid("n0").expect("n0's daemon"),
            Running::Wg(d) => d[0].pid(),
        }
    }

    fn stop(self, lab: &mut Lab) {
        match self {
            Running::Wiremesh => lab.stop_daemons().unwrap(),
            Running::Wg(d) => scale::stop_all(d),
        }
    }
}

/// One flood's figures.
struct Row {
    which: String,
    rate: u32,
    kind: FloodKind,
    pps: f64,
    echo: EchoStats,
    cpu_us: f64,
    rss_growth_kib: i64,
    cookie_replies: usize,
}

/// Floods n0 with `count` datagrams of `kind` at `rate` while n1 echoes through it.
fn flood_once(lab: &Lab, which: &str, pid: u32, kind: FloodKind, rate: u32, count: usize) -> Row {
    let topo = lab.topology().unwrap();
    let port = |n: &str| topo.node(n).unwrap().listen_port;
    let at = |n: &str, port: u16| SocketAddr::new(IpAddr::V4(lab.underlay_addr(n).unwrap()), port);
    let target = at("n0", port("n0"));
    let sources = vec![at("n2", port("n2")), at("n2", 0)];
    let packets = flood_packets(kind, &topo.node("n0").unwrap().public_key, count);
    let n0 = lab.overlay_addrs("n0").unwrap()[0];
    let n1 = lab.overlay_addrs("n1").unwrap()[0];
    let stop = Arc::new(AtomicBool::new(false));
    let stream = echo_stream(
        lab.node_ns("n1").unwrap(),
        n1,
        SocketAddr::new(n0, ECHO_PORT),
        ECHO_EVERY,
        ECHO_TIMEOUT,
        stop.clone(),
    );
    std::thread::sleep(Duration::from_millis(200));
    let (rss, cpu) = (rss_kib(pid), cpu_seconds(pid));
    let sent = send_flood(
        lab.node_ns("n2").unwrap(),
        sources,
        target,
        packets,
        rate,
        Arc::default(),
    )
    .join()
    .unwrap()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let cpu = cpu_seconds(pid) - cpu;
    let rss_growth_kib = rss_kib(pid) as i64 - rss as i64;
    stop.store(true, Ordering::Relaxed);
    let echo = stream.join().unwrap().unwrap();
    Row {
        which: which.into(),
        rate,
        kind,
        pps: sent.pps(),
        echo,
        cpu_us: cpu * 1e6 / sent.sent.max(1) as f64,
        rss_growth_kib,
        cookie_replies: sent.cookie_replies,
    }
}

fn print(rows: &[Row]) {
    println!("\n| implementation | offered/s | kind | achieved/s | echo loss | echo p99 ms | target CPU µs/flood packet | RSS growth KiB | cookie replies back |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {}/{} ({:.2} %) | {:.2} | {:.2} | {} | {} |",
            r.which,
            r.rate,
            r.kind.label(),
            r.pps,
            r.echo.lost(),
            r.echo.sent,
            r.echo.loss_percent(),
            r.echo
                .quantile(0.99)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
            r.cpu_us,
            r.rss_growth_kib,
            r.cookie_replies,
        );
    }
}

fn main() {
    if !root::may_run("handshake-flood") {
        return;
    }
    let impls: Vec<String> = std::env::var("IMPLS")
        .unwrap_or_else(|_| "wiremesh wg-go boringtun".into())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let rates: Vec<u32> = std::env::var("RATES")
        .unwrap_or_else(|_| "20000 200000".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let count: usize = env_or("COUNT", 50_000);
    let rounds: usize = env_or("ROUNDS", 1);
    let wiremesh = std::env::var("WIREMESH").unwrap_or_else(|_| WIREMESH.into());
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("flood.toml");
    std::fs::write(&topo, scale::full_mesh(3, 1)).unwrap();
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for (i, which) in impls.iter().enumerate() {
            // a lab per implementation: "wiremesh-alt" runs another executable (`WM_ALT`)
            let exe = match which.as_str() {
                "wiremesh-alt" => std::env::var("WM_ALT").expect("WM_ALT for wiremesh-alt"),
                _ => wiremesh.clone(),
            };
            let prefix = format!("hf{}{i}", std::process::id() % 100_000);
            let mut lab = Lab::build(&topo, LabOptions::new(prefix, &exe)).unwrap();
            let Some(running) = start(&mut lab, which, dir.path(), &wiremesh) else {
                continue;
            };
            let n0 = lab.overlay_addrs("n0").unwrap()[0];
            let up = lab.ping("n1", n0, Duration::from_secs(20)).unwrap();
            assert!(up.is_some(), "{which}: n1 never reached n0");
            let pid = running.target_pid(&lab);
            let stop = Arc::new(AtomicBool::new(false));
            let server = echo_server(
                lab.node_ns("n0").unwrap(),
                SocketAddr::new(n0, ECHO_PORT),
                stop.clone(),
            )
            .unwrap();
            for &rate in &rates {
                for kind in FloodKind::ALL {
                    let row = flood_once(&lab, which, pid, kind, rate, count);
                    println!(
                        "round {round}: {which} {rate}/s {}: {:.0}/s achieved, echo {}/{} lost, p99 {:?}, {:.2} µs CPU a packet, RSS {:+} KiB, {} cookie replies",
                        kind.label(),
                        row.pps,
                        row.echo.lost(),
                        row.echo.sent,
                        row.echo.quantile(0.99).unwrap_or_default(),
                        row.cpu_us,
                        row.rss_growth_kib,
                        row.cookie_replies,
                    );
                    rows.push(row);
                    // let the rate limiters' second run out, so floods do not overlap
                    std::thread::sleep(Duration::from_millis(1_200));
                }
            }
            stop.store(true, Ordering::Relaxed);
            let _ = server.join();
            running.stop(&mut lab);
            lab.down().unwrap();
        }
    }
    print(&rows);
}
