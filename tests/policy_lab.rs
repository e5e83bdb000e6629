//! Network policy with real daemons across three regions of a hub mesh
//! (`tests/topologies/policy-three-regions.toml`, docs/policy.md): who may open which TCP
//! flows, by region, cloud, label, CIDR set and port range, under a default deny; a rejecting
//! rule; ICMP "fragmentation needed" from a hub reaching a sender through its policy; reloads
//! from allow to deny and back under a running flow, and an invalid policy refused on reload;
//! and floods of SYNs against the connection table's bound.

mod common;

use common::{daemon_status, require_root, running_lab};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremesh::lab::{in_netns, Lab, Signal};

const TOPOLOGY: &str = "policy-three-regions.toml";

/// How long a connection attempt may take before it counts as dropped: a refused or rejected
/// one ends at once, a dropped SYN is retried by the kernel after 1 s, 3 s, ...
const CONNECT: Duration = Duration::from_secs(3);

fn addr(lab: &Lab, node: &str) -> IpAddr {
    lab.overlay_addrs(node).unwrap()[0]
}

/// A TCP echo server on `node`'s overlay address at each of `ports`, until `stop`.
fn echo_servers(lab: &Lab, node: &str, ports: &[u16], stop: Arc<AtomicBool>) {
    let ip = addr(lab, node);
    for &port in ports {
        let stop = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        in_netns(lab.node_ns(node).unwrap(), move || {
            let l = TcpListener::bind(SocketAddr::new(ip, port)).unwrap();
            l.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = s.read(&mut buf) {
                                if n == 0 || s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }
}

/// What a connection attempt from one node to another's port came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Connected, and a line sent came back.
    Echoed,
    /// Refused at once with "no route to host": ICMP administratively prohibited.
    Prohibited,
    /// No answer within [`CONNECT`]: dropped.
    Dropped,
    Other(String),
}

fn try_connect(lab: &Lab, from: &str, to: &str, port: u16) -> Outcome {
    let dst = SocketAddr::new(addr(lab, to), port);
    in_netns(lab.node_ns(from).unwrap(), move || {
        let started = Instant::now();
        match TcpStream::connect_timeout(&dst, CONNECT) {
            Ok(mut s) => {
                s.set_read_timeout(Some(CONNECT)).unwrap();
                let mut buf = [0u8; 5];
                match s.write_all(b"hello").and_then(|_| s.read_exact(&mut buf)) {
                    Ok(()) if &buf == b"hello" => Outcome::Echoed,
                    other => Outcome::Other(format!("{other:?} {buf:?}")),
                }
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => Outcome::Dropped,
            Err(e) if e.raw_os_error() == Some(libc::EHOSTUNREACH) => {
                assert!(started.elapsed() < CONNECT, "a rejection must be prompt");
                Outcome::Prohibited
            }
            Err(e) => Outcome::Other(e.to_string()),
        }
    })
    .join()
    .unwrap()
    .unwrap()
}

fn policy_of(lab: &Lab, node: &str) -> wiremesh::io::policy_status::PolicyStatus {
    daemon_status(lab, node)
        .policy
        .unwrap_or_else(|| panic!("{node}: no policy in its status"))
}

fn hits(lab: &Lab, node: &str, rule: &str) -> u64 {
    let p = policy_of(lab, node);
    p.rules
        .iter()
        .find(|r| r.name == rule)
        .unwrap_or_else(|| panic!("{node}: no rule {rule} in {p:?}"))
        .hits
}

/// A lab with every daemon up and every node reachable (pings are allowed everywhere).
fn lab() -> Lab {
    let lab = running_lab(TOPOLOGY);
    common::assert_all_pairs(&lab, Duration::from_secs(10));
    lab
}

#[test]
fn rules_by_region_cloud_label_cidr_set_and_port_decide_who_may_open_which_flow() {
    if !require_root() {
        return;
    }
    let lab = lab();
    let stop = Arc::new(AtomicBool::new(false));
    echo_servers(&lab, "use-db", &[5432, 443], stop.clone());
    echo_servers(&lab, "use-api", &[443, 8050, 8101], stop.clone());
    echo_servers(&lab, "fra-web", &[22], stop.clone());
    echo_servers(&lab, "sg-web", &[22], stop.clone());
    let cases = [
        // the Frankfurt → US-east example: the database port is refused at once...
        ("fra-web", "use-db", 5432, Outcome::Prohibited),
        // ...the API connects and answers, on 443 and inside its port range
        ("fra-web", "use-api", 443, Outcome::Echoed),
        ("fra-web", "use-api", 8050, Outcome::Echoed),
        // outside the range, and to the database on another port: default deny (dropped)
        ("fra-web", "use-api", 8101, Outcome::Dropped),
        ("fra-web", "use-db", 443, Outcome::Dropped),
        // by cloud: AWS to AWS may open anything
        ("use-api", "use-db", 5432, Outcome::Echoed),
        // by region and label: Singapore's web tier to Frankfurt, not the reverse
        ("sg-web", "fra-web", 22, Outcome::Echoed),
        ("fra-web", "sg-web", 22, Outcome::Dropped),
        // and Singapore has no rule towards AWS
        ("sg-web", "use-api", 443, Outcome::Dropped),
    ];
    let mut wrong = Vec::new();
    for (from, to, port, want) in cases {
        let got = try_connect(&lab, from, to, port);
        println!("{from} → {to}:{port}: {got:?}");
        if got != want {
            wrong.push(format!("{from} → {to}:{port}: {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // the rules that decided were counted where they were enforced: the sender's early check
    // (fra-web) answered the database attempt, and the receiver counted each flow it let in
    assert!(hits(&lab, "fra-web", "frankfurt-no-us-db") >= 1);
    assert_eq!(
        hits(&lab, "use-db", "frankfurt-no-us-db"),
        0,
        "it never crossed the WAN"
    );
    assert!(hits(&lab, "use-api", "frankfurt-us-api") >= 2);
    assert!(hits(&lab, "fra-web", "singapore-to-frankfurt") >= 1);
    assert!(policy_of(&lab, "sg-web").default_denied >= 2);

    // ICMP "fragmentation needed" from fra-hub, whose path to use-hub is a black hole above
    // 1360 bytes (the hubs discover it), crosses fra-web's policy as part of an allowed flow.
    // TCP would not show it (the hub clamps a SYN's MSS to the path it forwards on), so a
    // full-size ping with "don't fragment" is the flow: allowed, tracked, refused by the hub
    let api = addr(&lab, "use-api").to_string();
    let mut said = String::new();
    common::wait_until(
        Duration::from_secs(30),
        "fragmentation needed reaches fra-web",
        || {
            let out = lab
                .exec(
                    "fra-web",
                    &[
                        "ping", "-n", "-M", "do", "-s", "1400", "-c", "1", "-W", "1", &api,
                    ],
                )
                .unwrap();
            said = String::from_utf8_lossy(&out.stdout).into_owned();
            policy_of(&lab, "fra-web").related >= 1
        },
    );
    println!("{said}");
    let related = policy_of(&lab, "fra-web").related;
    println!("ICMP errors of tracked flows passed at fra-web: {related}");
    let out = lab
        .exec(
            "fra-web",
            &[
                "ping", "-n", "-M", "do", "-s", "1400", "-c", "1", "-W", "1", &api,
            ],
        )
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("{text}");
    assert!(
        text.contains("mtu"),
        "the kernel learned the path's MTU: {text}"
    );
    stop.store(true, Ordering::Relaxed);
}

/// A line every 100 ms through one connection, echoed; counts the answers.
fn chatter(
    lab: &Lab,
    from: &str,
    to: &str,
    port: u16,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Result<(), wiremesh::lab::LabError>> {
    let dst = SocketAddr::new(addr(lab, to), port);
    in_netns(lab.node_ns(from).unwrap(), move || {
        let mut s = TcpStream::connect_timeout(&dst, CONNECT).expect("the flow opens");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(b"tick").is_ok() {
                let mut got = 0;
                while got < 4 {
                    match s.read(&mut buf[got..4]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                if got == 4 {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// An answered flow from fra-web to use-api:443 (echo servers on `ports` of use-api), running
/// until `stop`; `answered` counts its echoes.
struct Flow {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    chatter: std::thread::JoinHandle<Result<(), wiremesh::lab::LabError>>,
}

impl Flow {
    fn start(lab: &Lab, ports: &[u16]) -> Flow {
        let stop = Arc::new(AtomicBool::new(false));
        echo_servers(lab, "use-api", ports, stop.clone());
        let answered = Arc::new(AtomicU64::new(0));
        let chatter = chatter(
            lab,
            "fra-web",
            "use-api",
            443,
            stop.clone(),
            answered.clone(),
        );
        let flow = Flow {
            stop,
            answered,
            chatter,
        };
        flow.answers(3, "the flow answers");
        flow
    }

    fn count(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits for `n` more answers.
    fn answers(&self, n: u64, what: &str) {
        let at = self.count();
        common::wait_until(Duration::from_secs(5), what, || self.count() >= at + n);
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.chatter.join().unwrap().unwrap();
    }
}

/// Each node's policy generation now.
fn generations(lab: &Lab) -> Vec<(String, u32)> {
    lab.nodes()
        .into_iter()
        .map(|n| {
            let g = policy_of(lab, &n).generation;
            (n, g)
        })
        .collect()
}

/// Writes `text` as the lab's topology and reloads every daemon; waits until each has put a
/// new policy in force (or, when `refused`, until each logged the refusal).
fn reload(lab: &mut Lab, text: &str, refused: bool) {
    let path = lab.derived_topology_path();
    let before = generations(lab);
    std::fs::write(&path, text).unwrap();
    for (n, _) in &before {
        lab.kill_daemon(n, Signal::Hup).unwrap();
    }
    for (n, g) in &before {
        if refused {
            common::wait_log(lab, n, "reload refused", Duration::from_secs(10));
            assert_eq!(policy_of(lab, n).generation, *g, "{n} kept its policy");
        } else {
            common::wait_until(Duration::from_secs(10), &format!("{n} reloads"), || {
                policy_of(lab, n).generation > *g
            });
        }
    }
}

#[test]
fn a_reload_to_deny_stops_a_running_flow_a_bad_policy_is_refused_and_a_reload_back_lets_new_flows_pass(
) {
    if !require_root() {
        return;
    }
    let mut lab = lab();
    let flow = Flow::start(&lab, &[443, 8000]);

    let good = std::fs::read_to_string(lab.derived_topology_path()).unwrap();
    // an invalid policy: refused with file, line, policy and field; the flow goes on
    let bad = good.replace("ports = [443, \"8000-8100\"]", "ports = [\"8100-8000\"]");
    reload(&mut lab, &bad, true);
    let log = std::fs::read_to_string(lab.log_path("fra-web")).unwrap();
    let refusal = &log[log.rfind("reload refused").unwrap()..];
    println!("{refusal}");
    for part in [
        "line ",
        "policy 'frankfurt-us-api'",
        "field 'ports'",
        "8100-8000",
    ] {
        assert!(
            refusal.contains(part),
            "the refusal names {part}: {refusal}"
        );
    }
    flow.answers(5, "the flow still answers");

    // a valid change that still allows the flow (a new rule, the Singapore rule moved): a new
    // policy generation is in force everywhere, and the flow goes on
    let unrelated = good
        .replace("order = 400", "order = 450")
        .replace(
            "# Pings everywhere",
            "[[policy]]\nname = \"sg-dns\"\norder = 50\naction = \"allow\"\nfrom = { region = \"southeastasia\" }\nprotocol = \"udp\"\nports = [53]\n\n# Pings everywhere",
        );
    let at = flow.count();
    reload(&mut lab, &unrelated, false);
    flow.answers(5, "the flow answers under the new generation");
    assert!(flow.count() >= at + 5);
    assert_eq!(policy_of(&lab, "use-api").revoked, 0, "nothing was revoked");

    // allow → deny: the running flow stops, new flows are refused
    let allow = "name = \"frankfurt-us-api\"\norder = 200\naction = \"allow\"";
    let deny = "name = \"frankfurt-us-api\"\norder = 200\naction = \"deny\"";
    reload(&mut lab, &good.replace(allow, deny), false);
    std::thread::sleep(Duration::from_millis(500));
    let at = flow.count();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(flow.count(), at, "the flow stopped");
    assert_eq!(
        try_connect(&lab, "fra-web", "use-api", 443),
        Outcome::Dropped
    );
    assert!(policy_of(&lab, "fra-web").revoked + policy_of(&lab, "use-api").revoked >= 1);

    // deny → allow: new flows pass
    reload(&mut lab, &good, false);
    assert_eq!(
        try_connect(&lab, "fra-web", "use-api", 8000),
        Outcome::Echoed
    );
    flow.stop();
}

/// Sends `n` TCP SYNs from `src` (an address of the namespace's node) to `dst`, each from
/// its own source port and to a port of `ports` in turn: `n` distinct flows.
fn syn_flood(ns: &str, src: Ipv4Addr, dst: Ipv4Addr, ports: std::ops::RangeInclusive<u16>, n: u32) {
    in_netns(ns, move || {
        // SAFETY: a plain socket call; the descriptor is closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(dst).to_be(),
            },
            sin_zero: [0; 8],
        };
        let span = u32::from(ports.end() - ports.start()) + 1;
        for i in 0..n {
            let sport = 10_000 + (i % 50_000) as u16;
            let dport = ports.start() + (i % span) as u16;
            let seg = syn_segment(src, dst, sport, dport, i);
            // SAFETY: valid buffer and address for the call's duration.
            let rc = unsafe {
                libc::sendto(
                    fd,
                    seg.as_ptr().cast(),
                    seg.len(),
                    0,
                    (&to as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            if rc < 0 {
                // the tun queue is full: give the engine a moment
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
    })
    .join()
    .unwrap()
    .unwrap();
}

/// A 20-byte TCP header with SYN set and its checksum over the IPv4 pseudo-header.
fn syn_segment(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut sum: u32 = 0;
    for chunk in src.octets().chunks(2).chain(dst.octets().chunks(2)) {
        sum += u32::from(u16::from_be_bytes([chunk[0], chunk[1]]));
    }
    sum += 6 + 20;
    for chunk in t.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], chunk[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    t[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    t
}

fn v4(lab: &Lab, node: &str) -> Ipv4Addr {
    match addr(lab, node) {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => panic!("{node} has no IPv4 overlay address"),
    }
}

#[test]
fn floods_of_denied_and_of_allowed_syns_keep_the_connection_table_within_its_bound() {
    if !require_root() {
        return;
    }
    let lab = lab();
    let flow = Flow::start(&lab, &[443]);
    let (web, db, api) = (v4(&lab, "fra-web"), v4(&lab, "use-db"), v4(&lab, "use-api"));
    let ns = lab.node_ns("fra-web").unwrap().to_string();

    // denied SYNs (default deny towards the database's other ports) open nothing
    let denied_before = policy_of(&lab, "fra-web").default_denied;
    syn_flood(&ns, web, db, 6000..=6999, 50_000);
    let p = policy_of(&lab, "fra-web");
    println!(
        "after 50,000 denied SYNs: {} denied by default, table {}/{}",
        p.default_denied - denied_before,
        p.conntrack_entries,
        p.conntrack_capacity
    );
    assert!(
        p.default_denied - denied_before >= 45_000,
        "the SYNs were judged"
    );
    assert!(p.conntrack_entries < 100, "denied flows are not tracked");

    // allowed SYNs nobody answers (the API's admin range has no listener: its kernel resets
    // them): more flows than the table holds; it stays within its bound and keeps the
    // answered flow
    syn_flood(&ns, web, api, 8000..=8100, 100_000);
    for node in ["fra-web", "use-api"] {
        let p = policy_of(&lab, node);
        println!(
            "{node} after 100,000 allowed SYNs: table {}/{}, evicted {}, overflow {}",
            p.conntrack_entries, p.conntrack_capacity, p.conntrack_evicted, p.overflow
        );
        assert!(p.conntrack_capacity > 0);
        assert!(
            p.conntrack_entries <= p.conntrack_capacity,
            "{node}: past its bound"
        );
    }
    assert!(
        policy_of(&lab, "fra-web").conntrack_evicted > 0,
        "the flood filled the table"
    );
    flow.answers(3, "the answered flow survives the flood");
    flow.stop();
}

#[test]
fn a_policy_set_in_the_registry_reaches_every_daemon_through_its_watch() {
    if !require_root() {
        return;
    }
    let lab = common::running_registry_lab(TOPOLOGY, 1);
    common::assert_all_pairs(&lab, Duration::from_secs(10));
    let stop = Arc::new(AtomicBool::new(false));
    echo_servers(&lab, "use-api", &[443], stop.clone());
    // imported with the topology: enforced from the start
    assert_eq!(
        try_connect(&lab, "fra-web", "use-db", 5432),
        Outcome::Prohibited
    );
    assert_eq!(
        try_connect(&lab, "fra-web", "use-api", 443),
        Outcome::Echoed
    );
    let before = generations(&lab);
    let shown = common::registry_cli(&lab, &["policy", "show"]);
    let allow = "name = \"frankfurt-us-api\"\norder = 200\naction = \"allow\"";
    assert!(shown.contains(allow), "{shown}");
    let file = lab.state_dir().join("policy-deny.toml");
    std::fs::write(
        &file,
        shown.replace(allow, &allow.replace("\"allow\"", "\"deny\"")),
    )
    .unwrap();
    common::registry_cli(&lab, &["policy", "set", &file.display().to_string()]);
    for (n, g) in &before {
        common::wait_until(
            Duration::from_secs(10),
            &format!("{n} takes the new policy"),
            || policy_of(&lab, n).generation > *g,
        );
    }
    assert_eq!(
        try_connect(&lab, "fra-web", "use-api", 443),
        Outcome::Dropped
    );
    stop.store(true, Ordering::Relaxed);
}
