//! Helpers shared by the integration tests that need root and network namespaces.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

#[allow(unused_imports)] // each test crate uses a different subset
pub use wiremesh::testing::{require_root, wait_for, wait_until};

/// A lab prefix no other test of any concurrent run uses: `t<pid><n>` (at most 10 characters).
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A topology under `tests/topologies/`.
pub fn topology(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/topologies")
        .join(name)
}

/// The `wiremesh` binary built for this test run.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wiremesh"))
}

/// Runs the `wiremesh` binary with `args` and waits for it.
pub fn wiremesh(args: &[&str]) -> std::process::Output {
    std::process::Command::new(exe())
        .args(args)
        .output()
        .expect("run wiremesh")
}

/// Runs the `wiremesh` binary with `args`, writes `stdin` to it, and waits for it.
pub fn wiremesh_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = std::process::Command::new(exe())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wiremesh");
    // Dropped right after the write, so the binary sees the end of its input. A binary that
    // refuses its arguments exits without reading: its input then meets a closed pipe, which
    // is its answer, not the test's failure.
    let written = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write wiremesh's stdin: {e}"
        );
    }
    child.wait_with_output().expect("wait for wiremesh")
}

/// `wiremesh check` as an argv (binary first) against `topology`, for `node` on `ifname`.
pub fn check_args(topology: &Path, node: &str, ifname: &str) -> Vec<String> {
    vec![
        exe().display().to_string(),
        "check".into(),
        "--topology".into(),
        topology.display().to_string(),
        "--node".into(),
        node.into(),
        "--interface".into(),
        ifname.into(),
    ]
}

/// A finished command's status, stdout and stderr, for failure messages.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Names of all network namespaces starting with `<prefix>-`.
pub fn namespaces_of(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

/// `wg show IF peers` through the daemon's UAPI socket: the peers' base64 public keys.
pub fn wg_peers(ifname: &str) -> Vec<String> {
    let out = std::process::Command::new("wg")
        .args(["show", ifname, "peers"])
        .output()
        .expect("wg show");
    assert!(
        out.status.success(),
        "wg show {ifname}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `wg show IF latest-handshakes`: public key → UNIX time of the last handshake (0 = never).
pub fn wg_handshakes(ifname: &str) -> std::collections::BTreeMap<String, u64> {
    let out = std::process::Command::new("wg")
        .args(["show", ifname, "latest-handshakes"])
        .output()
        .expect("wg show");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, t) = l.split_once('\t')?;
            Some((k.to_string(), t.trim().parse().ok()?))
        })
        .collect()
}

/// A lab built from `tests/topologies/<name>` under a fresh prefix; daemons not started.
pub fn new_lab(name: &str) -> wiremesh::lab::Lab {
    wiremesh::lab::Lab::build(
        &topology(name),
        wiremesh::lab::LabOptions::new(unique_prefix(), exe()),
    )
    .unwrap()
}

/// A lab built from `tests/topologies/<name>` with every daemon started and ready and
/// `per_node` containers attached to every node through the CNI plugin chain.
pub fn running_lab_with_containers(name: &str, per_node: usize) -> wiremesh::lab::Lab {
    let mut lab = running_lab(name);
    lab.attach_containers(per_node).unwrap();
    lab
}

/// A lab built from `tests/topologies/<name>` with every daemon started and ready.
pub fn running_lab(name: &str) -> wiremesh::lab::Lab {
    let mut lab = new_lab(name);
    lab.start_daemons().unwrap();
    lab
}

/// Pings every ordered pair over the overlay, prints the matrix, and fails naming the pairs
/// that got no answer within `timeout`.
pub fn assert_all_pairs(lab: &wiremesh::lab::Lab, timeout: std::time::Duration) {
    let matrix = lab.ping_matrix(timeout).unwrap();
    println!("{matrix}");
    assert!(
        matrix.all_ok(),
        "failed pairs {:?}\n{matrix}",
        matrix.failures()
    );
}

/// A checksummed TCP transfer of `bytes` from `from` to `to_addr` (an overlay address of
/// node `to`) that must arrive whole and intact; prints its rate under `label`.
pub fn assert_transfer(
    lab: &wiremesh::lab::Lab,
    label: &str,
    (from, to): (&str, &str),
    to_addr: std::net::IpAddr,
    bytes: u64,
) {
    let t = lab.transfer(from, to, to_addr, bytes).unwrap();
    println!(
        "{label}: {} bytes in {:?} ({:.0} Mbit/s)",
        t.bytes,
        t.elapsed,
        t.mbit_per_s()
    );
    assert_eq!(t.bytes, bytes);
    assert!(
        t.intact(),
        "{label}: sha256 sent {} received {}",
        t.sent_sha256,
        t.received_sha256
    );
}

/// What one ping stream saw.
#[derive(Debug, Default)]
pub struct Stream {
    pub sent: u64,
    pub lost: u64,
    /// The longest time between two replies (or from the start to the first).
    pub longest_gap: std::time::Duration,
}

/// Pings `to` from `node`'s namespace every `every` (one second's timeout each) until `stop`.
pub fn ping_stream(
    lab: &wiremesh::lab::Lab,
    node: &str,
    to: std::net::IpAddr,
    every: std::time::Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Result<Stream, wiremesh::lab::LabError>> {
    use std::time::{Duration, Instant};
    use wiremesh::io::icmp_echo::{self, Echo};
    wiremesh::lab::in_netns(lab.node_ns(node).unwrap(), move || {
        let mut s = Stream::default();
        let mut last_ok = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            s.sent += 1;
            match icmp_echo::echo(&Echo::new(to, Duration::from_secs(1))) {
                Ok(Some(_)) => {
                    s.longest_gap = s.longest_gap.max(last_ok.elapsed());
                    last_ok = Instant::now();
                }
                _ => s.lost += 1,
            }
            std::thread::sleep(every.saturating_sub(started.elapsed()));
        }
        s
    })
}

/// The daemon's own view over its control socket: paths, keys, liveness.
pub fn daemon_status(
    lab: &wiremesh::lab::Lab,
    node: &str,
) -> wiremesh::io::control_socket::DaemonStatus {
    use wiremesh::io::control_socket::{self, ControlRequest};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = control_socket::socket_path(lab.ifname(node).unwrap());
    let ask = control_socket::request(&path, &ControlRequest::Status);
    rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(5), ask).await })
        .unwrap_or_else(|_| panic!("{node}: no status within 5 s"))
        .unwrap()
        .status
        .unwrap()
}

/// The raw HTTP response of a daemon's metrics endpoint at `addr` inside namespace `ns` (every
/// lab namespace has its own loopback, so each daemon may listen on the same address).
pub fn scrape_metrics(ns: &str, addr: &str) -> String {
    use std::io::{Read, Write};
    let addr = addr.to_string();
    wiremesh::lab::in_netns(ns, move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .join()
    .unwrap()
    .unwrap()
}

/// A network namespace made for one test, deleted (with everything in it) when dropped, so it
/// goes even when the test fails.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns add <name>`; the name should start with the test's `unique_prefix()`.
    pub fn new(name: &str) -> Netns {
        let out = std::process::Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .expect("run ip netns add");
        assert!(out.status.success(), "ip netns add {name}: {}", text(&out));
        Netns { name: name.into() }
    }

    /// The path a CNI runtime passes as `CNI_NETNS`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs `cmd args…` inside the namespace and waits for it.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> std::process::Output {
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args)
            .output()
            .expect("run ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs a command and fails the test with its output when it fails.
pub fn run(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {}", args.join(" "), text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that may fail: whether it succeeded, and its stdout and stderr together.
pub fn run_status(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap();
    (out.status.success(), text(&out))
}

/// Packets counted by an nft rule in `ns` that matches `saddr` arriving on `ifname`.
pub fn nft_count_from(ns: &str, table: &str, ifname: &str, saddr: std::net::IpAddr) -> u64 {
    let family = if saddr.is_ipv4() { "ip" } else { "ip6" };
    let listing = run(&[
        "ip", "netns", "exec", ns, "nft", "list", "table", "inet", table,
    ]);
    listing
        .lines()
        .find(|l| l.contains(&format!("iifname \"{ifname}\" {family} saddr {saddr} ")))
        .and_then(|l| l.split("packets ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter for {saddr} in:\n{listing}"))
}

/// Installs, in `ns`, a table `table` with a chain on `hook` (`input`, `prerouting`, ...)
/// that counts what arrives on `ifname` from each of `saddrs`; read with [`nft_count_from`].
/// The table goes with the namespace.
pub fn nft_count_sources(
    ns: &str,
    table: &str,
    hook: &str,
    ifname: &str,
    saddrs: &[std::net::IpAddr],
) {
    let mut rules = format!(
        "table inet {table} {{\n chain c {{\n  type filter hook {hook} priority 0; policy accept;\n"
    );
    for addr in saddrs {
        let family = if addr.is_ipv4() { "ip" } else { "ip6" };
        rules += &format!("  iifname \"{ifname}\" {family} saddr {addr} counter\n");
    }
    rules += " }\n}\n";
    let file = std::env::temp_dir().join(format!("{table}-{ns}.nft"));
    std::fs::write(&file, rules).unwrap();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f"])
        .arg(&file)
        .output()
        .expect("run nft");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "nft -f in {ns}: {}", text(&out));
}

/// Where a lab node's daemon publishes its CNI node state (the default `cni_state_dir`).
pub fn node_state_path(lab: &wiremesh::lab::Lab, node: &str) -> PathBuf {
    wiremesh::io::node_state_file::path(
        Path::new(wiremesh::constants::CNI_STATE_DIR),
        lab.ifname(node).unwrap(),
    )
}

/// Waits until `node`'s published container MTU is `want`; the state then, and how long it took.
pub fn wait_node_state_mtu(
    lab: &wiremesh::lab::Lab,
    node: &str,
    want: u16,
    within: std::time::Duration,
) -> (wiremesh::core::node_state::NodeState, std::time::Duration) {
    let start = std::time::Instant::now();
    let path = node_state_path(lab, node);
    wait_for(
        within,
        std::time::Duration::from_millis(100),
        &format!("{node}'s container MTU {want}"),
        || match wiremesh::io::node_state_file::read(&path) {
            Ok(s) if s.mtu == want => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let state = wiremesh::io::node_state_file::read(&path).unwrap();
    (state, start.elapsed())
}

/// A paced 24 MiB TCP transfer from `from_ns` to `to` (in `to_ns`, port `port`) during which,
/// one second in, the link between regions r1 and r2 silently drops everything above
/// `black_hole_above` bytes: path-MTU discovery has to find the smaller path under load. The
/// transfer's thread, for the caller to join once it has watched what it wants.
pub fn transfer_across_a_shrinking_path(
    lab: &wiremesh::lab::Lab,
    (from_ns, to_ns, to): (String, String, std::net::IpAddr),
    port: u16,
    black_hole_above: u16,
) -> std::thread::JoinHandle<Result<wiremesh::lab::Transfer, wiremesh::lab::LabError>> {
    let transfer = std::thread::spawn(move || {
        wiremesh::lab::tcp_transfer_paced(
            &from_ns,
            &to_ns,
            to,
            port,
            24 << 20,
            Some(4 << 20),
            std::time::Duration::from_secs(60),
        )
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let limit = wiremesh::lab::LinkLimit {
        mtu: None,
        black_hole_above: Some(black_hole_above),
    };
    lab.set_link("r1", "r2", limit).unwrap();
    transfer
}

/// A lab built from `tests/topologies/<name>` on a real etcd of `members` members (the
/// topology imported, every daemon started with `--registry` and ready).
pub fn running_registry_lab(name: &str, members: usize) -> wiremesh::lab::Lab {
    registry_lab_of(&topology(name), members, wiremesh::lab::READY_TIMEOUT)
}

/// [`running_registry_lab`] of any topology file, with daemons given `ready` to come up (the
/// benches' 64-node mesh needs longer than the default).
pub fn registry_lab_of(
    topology: &Path,
    members: usize,
    ready: std::time::Duration,
) -> wiremesh::lab::Lab {
    let mut opts = wiremesh::lab::LabOptions::new(unique_prefix(), exe());
    opts.etcd_members = Some(members);
    opts.ready_timeout = ready;
    let mut lab = wiremesh::lab::Lab::build(topology, opts).unwrap();
    lab.start_daemons().unwrap();
    lab
}

/// `wiremesh registry ARGS` against a lab's registry; its stdout, after asserting success.
pub fn registry_cli(lab: &wiremesh::lab::Lab, args: &[&str]) -> String {
    let out = lab.registry_cli(args).unwrap();
    assert!(
        out.status.success(),
        "wiremesh registry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until every running node's UAPI shows (`present`) or lacks the key; the time it took.
pub fn wait_peer_everywhere(
    lab: &wiremesh::lab::Lab,
    key: &str,
    present: bool,
    within: std::time::Duration,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    let nodes: Vec<String> = lab
        .nodes()
        .into_iter()
        .filter(|n| lab.daemon_pid(n).is_some())
        .collect();
    wait_until(
        within,
        &format!("peer {key} present={present} everywhere"),
        || {
            nodes.iter().all(|n| {
                let ifname = lab.ifname(n).unwrap();
                let Some(own) = lab.topology().and_then(|t| t.node(n).ok()) else {
                    return true;
                };
                own.public_key.to_string() == key
                    || wg_peers(ifname).iter().any(|p| p == key) == present
            })
        },
    );
    started.elapsed()
}

/// `etcdctl ARGS` (Debian's etcd-client) against a lab's first etcd member, from the core
/// namespace, with `stdin` as its input (the value of `put KEY`); its stdout, asserting success.
pub fn etcdctl(lab: &wiremesh::lab::Lab, args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write;
    let url = lab.registry_url().expect("a lab on etcd");
    let first = url
        .trim_start_matches("etcd://")
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.layout().core_ns, "etcdctl"])
        .arg(format!("--endpoints={first}"))
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl (scripts/install-deps installs etcd-client)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until a node's daemon log contains `needle`.
pub fn wait_log(lab: &wiremesh::lab::Lab, node: &str, needle: &str, within: std::time::Duration) {
    let path = lab.log_path(node);
    wait_until(within, &format!("'{needle}' in {}", path.display()), || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.contains(needle))
    });
}

/// `lab join NAME --region REGION` on a lab on etcd, then waits until every running node has
/// the new peer configured; its public key and how long that took after its daemon was up.
pub fn join_and_wait(
    lab: &mut wiremesh::lab::Lab,
    name: &str,
    region: &str,
    within: std::time::Duration,
) -> (String, std::time::Duration) {
    lab.join(
        name,
        &wiremesh::lab::JoinOptions {
            region: region.into(),
            ..wiremesh::lab::JoinOptions::default()
        },
    )
    .unwrap();
    let key = lab
        .topology()
        .unwrap()
        .node(name)
        .unwrap()
        .public_key
        .to_string();
    let took = wait_peer_everywhere(lab, &key, true, within);
    (key, took)
}

/// `wiremesh rotate -i IF` for `node`; the new public key it printed.
pub fn rotate(lab: &wiremesh::lab::Lab, node: &str) -> String {
    let out = std::process::Command::new(exe())
        .args(["rotate", "-i", lab.ifname(node).unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rotate {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A node about to join a registry from outside any lab: its own key and snapshot file in a
/// temp dir, for tests that run `wiremesh up` only as far as the registry takes it.
pub struct Joiner {
    dir: tempfile::TempDir,
    pub public_key: wiremesh::core::key::PublicKey,
}

impl Joiner {
    pub fn new() -> Joiner {
        let dir = tempfile::tempdir().unwrap();
        let key = wiremesh::io::keyfile::generate();
        wiremesh::io::keyfile::write_private(&dir.path().join("n1.key"), &key, false).unwrap();
        Joiner {
            dir,
            public_key: key.public_key(),
        }
    }

    /// `wiremesh up` for node `n1` of region `r1`, cloud `c1`, on interface `ifname`, with
    /// `args`; its exit status and stderr.
    pub fn up(&self, ifname: &str, args: &[&str]) -> (bool, String) {
        let key = self.dir.path().join("n1.key");
        let snapshot = self.dir.path().join("snap.json");
        let mut all = vec![
            "up",
            "--node",
            "n1",
            "--region",
            "r1",
            "--cloud",
            "c1",
            "--interface",
            ifname,
            "--private-key",
            key.to_str().unwrap(),
            "--registry-snapshot",
            snapshot.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let out = wiremesh(&all);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// `wg show IF endpoints` through the daemon's UAPI socket: public key → endpoint.
pub fn wg_endpoints(
    lab: &wiremesh::lab::Lab,
    node: &str,
) -> std::collections::BTreeMap<String, std::net::SocketAddr> {
    let out = run(&["wg", "show", lab.ifname(node).unwrap(), "endpoints"]);
    out.lines()
        .filter_map(|l| {
            let (key, ep) = l.split_once('\t')?;
            Some((key.to_string(), ep.trim().parse().ok()?))
        })
        .collect()
}

/// Where `node`'s daemon sends to `peer`, once it knows.
pub fn endpoint_of(
    lab: &wiremesh::lab::Lab,
    node: &str,
    peer: &str,
) -> Result<std::net::SocketAddr, String> {
    let key = lab
        .topology()
        .unwrap()
        .node(peer)
        .unwrap()
        .public_key
        .to_string();
    wg_endpoints(lab, node)
        .get(&key)
        .copied()
        .ok_or_else(|| format!("{node} has no endpoint for {peer}"))
}

/// How `node`'s daemon reaches `peer` now: `public`, `punched`, `relayed via …` (the `path` of
/// its status, docs/nat.md).
pub fn peer_path(lab: &wiremesh::lab::Lab, node: &str, peer: &str) -> String {
    let status = daemon_status(lab, node);
    let p = status.peers.iter().find(|p| p.name == peer);
    p.unwrap_or_else(|| panic!("{node} has no peer {peer}"))
        .path
        .clone()
}
