//! What the scale benchmarks (`peer_scale`, `pair_reach`) share: the `wg`-configured daemons
//! wiremesh is measured against, started in a namespace and ended by pid, memory read from
//! `/proc`, generated topologies and medians.
#![allow(dead_code)] // each bench uses a different subset

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The userspace WireGuard daemons configured through the `wg` UAPI socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgImpl {
    /// `boringtun-cli` 0.7 (`cargo install boringtun-cli --root /opt/wiremesh-anchors/boringtun`).
    Boringtun,
    /// wireguard-go with TUN and UDP offloads (`/work/shared/tools/install-wireguard-go-offload`).
    WireguardGoOffload,
    /// Debian's wireguard-go (`apt-get install wireguard-go`).
    WireguardGo,
}

impl WgImpl {
    pub fn name(self) -> &'static str {
        match self {
            WgImpl::Boringtun => "boringtun-cli",
            WgImpl::WireguardGoOffload => "wireguard-go (offload)",
            WgImpl::WireguardGo => "wireguard-go",
        }
    }

    /// The executable (overridable with `BORINGTUN=` / `WG_GO_OFFLOAD=`, as in netns-throughput).
    pub fn exe(self) -> PathBuf {
        let (var, default) = match self {
            WgImpl::Boringtun => (
                "BORINGTUN",
                "/opt/wiremesh-anchors/boringtun/bin/boringtun-cli",
            ),
            WgImpl::WireguardGoOffload => (
                "WG_GO_OFFLOAD",
                "/opt/wiremesh-anchors/wireguard-go-offload",
            ),
            WgImpl::WireguardGo => ("WG_GO", "/usr/bin/wireguard-go"),
        };
        std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
    }

    pub fn available(self) -> bool {
        self.exe().exists()
    }
}

/// A `wg`-configured daemon this process started in a namespace; killed by pid on drop.
pub struct WgDaemon {
    child: Child,
    pub ifname: String,
    pub ns: String,
}

impl WgDaemon {
    /// Starts the daemon on tun `ifname` in `ns` and waits for its UAPI socket.
    pub fn start(which: WgImpl, ns: &str, ifname: &str, log: &Path) -> WgDaemon {
        let _ = std::fs::remove_file(socket(ifname));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(which.exe())
            .env("WG_PROCESS_FOREGROUND", "1")
            .env("WG_SUDO", "true");
        if which == WgImpl::Boringtun {
            cmd.arg("-f");
        }
        let child = cmd
            .arg(ifname)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).expect("daemon log"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", which.exe().display()));
        // `ip netns exec` execs the daemon in place: the child's pid is the daemon's
        let d = WgDaemon {
            child,
            ifname: ifname.into(),
            ns: ns.into(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket(ifname).exists() {
            assert!(
                Instant::now() < deadline,
                "{} never created {}",
                which.name(),
                socket(ifname).display()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for WgDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(socket(&self.ifname));
    }
}

/// Ends many daemons at once (SIGKILL to all, then reaps), quicker than dropping one by one.
pub fn stop_all(daemons: Vec<WgDaemon>) {
    let mut daemons = daemons;
    for d in &mut daemons {
        let _ = d.child.kill();
    }
    drop(daemons);
}

pub fn socket(ifname: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"))
}

/// Configures a `wg`-style daemon running on a lab node as an operator would: `wiremesh plan
/// --format wg` (by `wiremesh`), `wg setconf`, the private key, then addresses, MTU and routes
/// with `ip`.
pub fn configure(lab: &wiremesh::lab::Lab, node: &str, dir: &Path, wiremesh: &str) {
    let ns = lab.node_ns(node).unwrap();
    let ifname = lab.ifname(node).unwrap();
    let conf = run(Command::new(wiremesh)
        .args(["plan", "--format", "wg", "-n", node, "-t"])
        .arg(lab.derived_topology_path()));
    let path = dir.join(format!("{node}.wg.conf"));
    std::fs::write(&path, conf).unwrap();
    let key = lab.state_dir().join("keys").join(format!("{node}.key"));
    run(Command::new("ip")
        .args(["netns", "exec", ns, "wg", "setconf", ifname])
        .arg(&path));
    run(Command::new("ip")
        .args(["netns", "exec", ns, "wg", "set", ifname, "private-key"])
        .arg(&key));
    let plan = wiremesh::core::plan::Plan::compute(lab.topology().unwrap(), node).unwrap();
    let mut lines: Vec<String> = plan
        .addresses
        .iter()
        .map(|a| {
            let len = if a.is_ipv4() { 32 } else { 128 };
            format!("address add {a}/{len} dev {ifname}")
        })
        .collect();
    lines.push(format!("link set {ifname} mtu {} up", plan.mtu));
    for r in &plan.routes {
        lines.push(format!("route replace {} dev {ifname}", r.destination));
    }
    ip_batch(Some(ns), &lines);
}

/// Runs a command, panicking with its stderr when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip [-n NS] -batch -` with these lines on stdin.
pub fn ip_batch(ns: Option<&str>, lines: &[String]) {
    use std::io::Write;
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip");
    child
        .stdin
        .take()
        .unwrap()
        .write_all((lines.join("\n") + "\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ip -batch in {ns:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Waits until a process's RSS stops moving (two reads `quiet` apart within 1%), at most
/// `limit`; returns the last reading.
pub fn settled_rss_kib(pid: u32, quiet: Duration, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    let mut last = rss_kib(pid);
    loop {
        std::thread::sleep(quiet);
        let now = rss_kib(pid);
        if now.abs_diff(last) * 100 <= last || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// A full mesh of `n` nodes over `regions` regions, with placeholder keys (the lab gives every
/// node its own) and pod CIDRs from 10.0.0.0/8 (node i gets 10.(i/250).(i%250).0/24).
pub fn full_mesh(n: usize, regions: usize) -> String {
    let mut t = String::from("mode = \"full\"\ncluster-cidr = \"10.0.0.0/8\"\n");
    for i in 0..n {
        let key = wiremesh::io::keyfile::generate().public_key();
        let _ = write!(
            t,
            "[[node]]\nname = \"n{i}\"\ncloud = \"c\"\nregion = \"r{}\"\npublic-key = \"{key}\"\npod-cidr = \"10.{}.{}.0/24\"\n",
            i % regions.max(1),
            i / 250,
            i % 250,
        );
    }
    t
}

/// Median, minimum and maximum.
pub fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    s.sort_by(f64::total_cmp);
    let m = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (m, s[0], s[s.len() - 1])
}

/// `median (min–max)` with `digits` decimals.
pub fn fmt_stats(v: &[f64], digits: usize) -> String {
    let (m, lo, hi) = stats(v);
    if m.is_nan() {
        return "n/a".into();
    }
    format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
}
