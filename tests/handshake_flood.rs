//! A node under a handshake flood, through real daemons: from a third namespace (node c's,
//! whose daemon is not started), random junk, initiations with a forged MAC1 and initiations
//! with a valid MAC1 for node a's key (from a key no node knows), 50,000 of each at 20,000 a
//! second, half from c's configured endpoint (a's engine tries c's session first for those)
//! and half from another port. Meanwhile b echoes through a every 10 ms. Before admission
//! (`src/engine/admission.rs`) each valid-MAC1 initiation cost a Diffie-Hellman and pings were
//! lost; now a answers with cookie replies. Figures at more rates: `benches/handshake_flood.rs`.
//! (Its own test binary: it sets `WIREMESH_METRICS_LISTEN` for every daemon it starts.)

mod common;

use common::{new_lab, require_root};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremesh::lab::{echo_server, echo_stream, flood_packets, send_flood, FloodKind, Lab};

/// Every lab namespace has its own loopback, so all daemons can listen on the same address.
const LISTEN: &str = "127.0.0.1:9586";
const PER_KIND: usize = 50_000;
const PPS: u32 = 20_000;
const ECHO_EVERY: Duration = Duration::from_millis(10);
/// An answer later than this counts as lost (ping's default wait is 10 s; a tunnel that
/// queues for a second has failed all the same).
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// How much the flooded daemon's resident memory may grow.
const RSS_GROWTH_KIB: u64 = 4 * 1024;

/// The tests flood and measure loss: one at a time, so neither floods the other's cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn scrape(lab: &Lab, node: &str) -> String {
    common::scrape_metrics(lab.node_ns(node).unwrap(), LISTEN)
}

/// A node's counters that the flood moves.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    cookie_replies: u64,
    rate_limited: u64,
    decrypt_failure: u64,
    unknown_peer: u64,
}

impl Counters {
    fn of(lab: &Lab, node: &str) -> Counters {
        let text = scrape(lab, node);
        let get = |prefix: &str| -> u64 {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {prefix} in the metrics"))
        };
        let drops = |reason: &str| {
            get(&format!(
                "wiremesh_dropped_packets_total{{reason=\"{reason}\"}}"
            ))
        };
        Counters {
            cookie_replies: get("wiremesh_cookie_replies_total "),
            rate_limited: drops("rate_limited"),
            decrypt_failure: drops("decrypt_failure"),
            unknown_peer: drops("unknown_peer"),
        }
    }

    fn since(self, before: Counters) -> Counters {
        Counters {
            cookie_replies: self.cookie_replies - before.cookie_replies,
            rate_limited: self.rate_limited - before.rate_limited,
            decrypt_failure: self.decrypt_failure - before.decrypt_failure,
            unknown_peer: self.unknown_peer - before.unknown_peer,
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // the fields after the command name, which is in parentheses and may hold spaces
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A lab of nodes a, b, c, d whose daemons are `running`, each serving metrics.
fn lab_with(running: &[&str]) -> Lab {
    std::env::set_var("WIREMESH_METRICS_LISTEN", LISTEN);
    let mut lab = new_lab("three-regions.toml");
    lab.start_daemons_of(running).unwrap();
    lab
}

/// Where the flood goes (a's underlay endpoint), and where from: c's configured endpoint and
/// another port of c's address.
fn flood_path(lab: &Lab) -> (SocketAddr, Vec<SocketAddr>) {
    let topo = lab.topology().unwrap();
    let port = |n: &str| topo.node(n).unwrap().listen_port;
    let at = |n: &str, port: u16| SocketAddr::new(IpAddr::V4(lab.underlay_addr(n).unwrap()), port);
    (at("a", port("a")), vec![at("c", port("c")), at("c", 0)])
}

fn a_key(lab: &Lab) -> wiremesh::core::key::PublicKey {
    lab.topology().unwrap().node("a").unwrap().public_key
}

#[test]
fn echoes_across_a_node_flooded_with_junk_forged_and_valid_mac1_handshakes_lose_nothing() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab_with(&["a", "b"]);
    let a_addr = lab.overlay_addrs("a").unwrap()[0];
    let b_addr = lab.overlay_addrs("b").unwrap()[0];
    let reached = lab.ping("b", a_addr, Duration::from_secs(15)).unwrap();
    assert!(reached.is_some(), "b never reached a");
    let pid = lab.daemon_pid("a").unwrap();
    let (target, sources) = flood_path(&lab);
    let c_ns = lab.node_ns("c").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let echo_at = SocketAddr::new(a_addr, 7007);
    let server = echo_server(lab.node_ns("a").unwrap(), echo_at, stop.clone()).unwrap();
    let stream = echo_stream(
        lab.node_ns("b").unwrap(),
        b_addr,
        echo_at,
        ECHO_EVERY,
        ECHO_TIMEOUT,
        stop.clone(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = proc_status_kib(pid, "VmRSS:");
    let mut seen = Vec::new();
    for kind in FloodKind::ALL {
        let packets = flood_packets(kind, &a_key(&lab), PER_KIND);
        let before = Counters::of(&lab, "a");
        let cpu = cpu_seconds(pid);
        let sent = send_flood(c_ns, sources.clone(), target, packets, PPS, Arc::default())
            .join()
            .unwrap()
            .unwrap();
        // what is still queued at a's socket
        std::thread::sleep(Duration::from_millis(200));
        let cpu = cpu_seconds(pid) - cpu;
        let moved = Counters::of(&lab, "a").since(before);
        println!(
            "{}: {} sent in {:.2} s ({:.0}/s, {} refused by the sender's kernel); a's CPU {:.3} s \
             ({:.1} µs a packet, echoes included); {moved:?}",
            kind.label(),
            sent.sent,
            sent.elapsed.as_secs_f64(),
            sent.pps(),
            sent.failed,
            cpu,
            cpu * 1e6 / sent.sent.max(1) as f64,
        );
        seen.push((kind, sent, moved));
    }
    let rss_after = proc_status_kib(pid, "VmRSS:");
    stop.store(true, Ordering::Relaxed);
    let stats = stream.join().unwrap().unwrap();
    let echoed = server.join().unwrap().unwrap();
    println!(
        "echoes b → a → b every {ECHO_EVERY:?}: {} sent, {} lost ({:.2} %), median {:?}, p99 {:?}, \
         max {:?} ({echoed} echoed); a's RSS {rss_before} → {rss_after} KiB",
        stats.sent,
        stats.lost(),
        stats.loss_percent(),
        stats.quantile(0.5).unwrap_or_default(),
        stats.quantile(0.99).unwrap_or_default(),
        stats.rtts.last().copied().unwrap_or_default(),
    );

    for (kind, sent, moved) in &seen {
        let at_least_most = (sent.sent as u64) * 9 / 10;
        match kind {
            FloodKind::Junk | FloodKind::BadMac1 => {
                assert_eq!(moved.cookie_replies, 0, "{}: {moved:?}", kind.label());
                assert!(
                    moved.decrypt_failure + moved.unknown_peer >= at_least_most,
                    "{}: most of it should have been counted: {moved:?}",
                    kind.label()
                );
            }
            FloodKind::ValidMac1 => {
                // admitted below the limit, once per second of flood and the one it started in
                let admitted = 1_000 * (sent.elapsed.as_secs() + 2);
                assert!(
                    moved.unknown_peer <= admitted,
                    "more valid-MAC1 initiations got a Diffie-Hellman than the limit lets through: {moved:?}"
                );
                assert!(
                    moved.cookie_replies >= at_least_most - admitted,
                    "too few cookie replies: {moved:?}"
                );
                assert_eq!(moved.cookie_replies, moved.rate_limited);
            }
        }
    }
    // a forged MAC1 is refused before anything that could cost a Diffie-Hellman
    assert_eq!(seen[1].2.unknown_peer, 0, "{:?}", seen[1].2);
    assert!(
        stats.sent >= 500,
        "the echo stream barely ran: {}",
        stats.sent
    );
    assert_eq!(stats.lost(), 0, "echoes lost across the flood");
    assert!(
        rss_after <= rss_before + RSS_GROWTH_KIB,
        "a's RSS grew from {rss_before} to {rss_after} KiB"
    );
}

#[test]
fn a_peer_that_starts_during_a_valid_mac1_flood_completes_its_handshake() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = lab_with(&["a"]);
    let (target, sources) = flood_path(&lab);
    // 10 times the limit, for at most 25 s: d's messages meet a node whose handshake bucket
    // the flood keeps nearly empty; one that finds no token gets a cookie, and the retry 5 s
    // later carries MAC2 (the engine's admission tests pin that exchange down)
    let packets = flood_packets(FloodKind::ValidMac1, &a_key(&lab), 250_000);
    let stop = Arc::new(AtomicBool::new(false));
    let before = Counters::of(&lab, "a");
    let flood = send_flood(
        lab.node_ns("c").unwrap(),
        sources,
        target,
        packets,
        10_000,
        stop.clone(),
    );
    std::thread::sleep(Duration::from_millis(1_500));
    let start = Instant::now();
    lab.start_daemons_of(&["d"]).unwrap();
    let a_addr = lab.overlay_addrs("a").unwrap()[0];
    let reached = lab.ping("d", a_addr, Duration::from_secs(20)).unwrap();
    let took = start.elapsed();
    let moved = Counters::of(&lab, "a").since(before);
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap().unwrap();
    println!(
        "d reached a after {took:?} under a flood of {:.0} valid-MAC1 initiations a second; {moved:?}",
        sent.pps()
    );
    assert!(
        reached.is_some(),
        "d never completed a handshake with a under the flood"
    );
    assert!(
        moved.cookie_replies > 0,
        "a was never under load: {moved:?}"
    );
}
