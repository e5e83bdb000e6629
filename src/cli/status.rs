//! `wiremesh status`: what each running daemon reports over its UAPI socket, the same source
//! `wg show` reads, with peers named after their topology nodes when a topology is given.

use crate::constants::{DEFAULT_INTERFACE, UAPI_DIR};
use crate::core::key::PublicKey;
use crate::core::topology::Topology;
use crate::io::control_socket;
use crate::io::uapi::{self, UapiDevice};
use anyhow::Context as _;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Interface to query (default: wm0).
    #[arg(long, short, conflicts_with = "all")]
    pub interface: Option<String>,
    /// Every interface with a socket in /var/run/wireguard.
    #[arg(long)]
    pub all: bool,
    /// Topology file, to name peers by node instead of by key.
    #[arg(long, short)]
    pub topology: Option<PathBuf>,
    /// Print a JSON array, one object per interface.
    #[arg(long)]
    pub json: bool,
}

/// One interface as printed; the JSON form is the contract for scripts.
#[derive(Debug, serde::Serialize)]
struct InterfaceStatus {
    interface: String,
    public_key: Option<String>,
    listen_port: u16,
    peers: Vec<PeerStatus>,
    /// Seconds since this node's key came into use (from the control socket).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_age_secs: Option<f64>,
    /// `stable`, `announced` or `switched` (from the control socket).
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation: Option<String>,
    /// Pre-shared-key epoch in use; absent without a mesh secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    psk_epoch: Option<u64>,
    /// Peers holding session state (from the control socket); the rest are idle.
    #[serde(skip_serializing_if = "Option::is_none")]
    awake_peers: Option<usize>,
    /// The network policy in force, its hits and its connection table (from the control
    /// socket).
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<crate::io::policy_status::PolicyStatus>,
    /// The NAT in front of this node (from the control socket).
    #[serde(skip_serializing_if = "Option::is_none")]
    nat: Option<control_socket::NatStatus>,
}

#[derive(Debug, serde::Serialize)]
struct PeerStatus {
    /// The topology node's name, or the short key when unknown.
    name: String,
    public_key: String,
    endpoint: Option<SocketAddr>,
    /// Unix seconds; absent before the first handshake.
    latest_handshake: Option<u64>,
    rx_bytes: u64,
    tx_bytes: u64,
    persistent_keepalive: Option<u16>,
    allowed_ips: Vec<String>,
    /// Tunnel MTU towards this peer, from the wiremesh control socket (absent for another
    /// WireGuard implementation).
    mtu: Option<u16>,
    /// Seconds since discovery last confirmed `mtu`; absent while the plan's estimate applies.
    mtu_confirmed_secs_ago: Option<f64>,
    /// Seconds since the peer's key was configured or announced (from the control socket).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_age_secs: Option<f64>,
    /// `up`, `down` or `returning` (from the control socket).
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<String>,
    /// Times the peer stopped answering and its shared ranges moved to another carrier.
    #[serde(skip_serializing_if = "Option::is_none")]
    downs: Option<u64>,
    /// How the peer is reached: `private <scope>`, `public`, `punched`, `learnt`, `relayed via
    /// <node>`, `none` (control socket).
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    /// The peer's configured endpoints, best first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<String>,
    /// Packets from another address refused while a private endpoint was in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    roam_refused: Option<u64>,
    /// Ranges shared by several carriers (a region's hubs) that this peer carries now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    carries: Vec<String>,
    /// Shared ranges this peer stands by for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    standby_for: Vec<String>,
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let names = match (&args.interface, args.all) {
        (_, true) => list_interfaces(Path::new(UAPI_DIR))?,
        (Some(name), false) => vec![name.clone()],
        (None, false) => vec![DEFAULT_INTERFACE.to_string()],
    };
    let node_names: HashMap<PublicKey, String> = match &args.topology {
        Some(path) => Topology::load(path)?
            .nodes
            .into_iter()
            .map(|n| (n.public_key, n.name))
            .collect(),
        None => HashMap::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut statuses = Vec::new();
    let mut failures = Vec::new();
    for name in &names {
        match rt.block_on(uapi::query(&uapi::socket_path(name))) {
            Ok(dev) => {
                let mut status = summarize(name, &dev, &node_names);
                let req = control_socket::ControlRequest::Status;
                if let Ok(resp) = rt.block_on(control_socket::request(
                    &control_socket::socket_path(name),
                    &req,
                )) {
                    if let Some(daemon) = resp.status {
                        status.key_age_secs = Some(daemon.key_age_secs);
                        status.rotation = Some(daemon.rotation);
                        status.psk_epoch = daemon.psk_epoch;
                        status.awake_peers = Some(daemon.awake_peers);
                        status.policy = daemon.policy;
                        status.nat = daemon.nat;
                        add_paths(&mut status, daemon.peers);
                    }
                }
                statuses.push(status);
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        print!("{}", render(&statuses, SystemTime::now()));
    }
    match failures.as_slice() {
        [] => Ok(()),
        [one] if names.len() == 1 => {
            anyhow::bail!("{}", one.split_once(": ").map_or(one.as_str(), |(_, e)| e))
        }
        many => anyhow::bail!("{}", many.join("\n")),
    }
}

/// Interface names of every `*.sock` in `dir`, sorted, as `wg show interfaces` finds them.
fn list_interfaces(dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("is the daemon running? no sockets in {}", dir.display())
        }
        Err(e) => return Err(e).with_context(|| dir.display().to_string()),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".sock")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    anyhow::ensure!(
        !names.is_empty(),
        "is the daemon running? no sockets in {}",
        dir.display()
    );
    Ok(names)
}

fn summarize(
    name: &str,
    dev: &UapiDevice,
    node_names: &HashMap<PublicKey, String>,
) -> InterfaceStatus {
    let peers = dev
        .peers
        .iter()
        .map(|p| PeerStatus {
            name: node_names
                .get(&p.public_key)
                .cloned()
                .unwrap_or_else(|| p.public_key.short()),
            public_key: p.public_key.to_string(),
            endpoint: p.endpoint,
            latest_handshake: p
                .last_handshake
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
            persistent_keepalive: p.persistent_keepalive,
            allowed_ips: p.allowed_ips.iter().map(|n| n.to_string()).collect(),
            mtu: None,
            mtu_confirmed_secs_ago: None,
            key_age_secs: None,
            health: None,
            downs: None,
            path: None,
            candidates: Vec::new(),
            roam_refused: None,
            carries: Vec::new(),
            standby_for: Vec::new(),
        })
        .collect();
    InterfaceStatus {
        interface: name.to_string(),
        public_key: dev.private_key.as_ref().map(|k| k.public_key().to_string()),
        listen_port: dev.listen_port,
        peers,
        key_age_secs: None,
        rotation: None,
        psk_epoch: None,
        awake_peers: None,
        policy: None,
        nat: None,
    }
}

/// Fills in each peer's MTU from the daemon's own view of its paths.
fn add_paths(status: &mut InterfaceStatus, paths: Vec<control_socket::PeerPathStatus>) {
    for p in &mut status.peers {
        if let Some(path) = paths.iter().find(|x| x.public_key == p.public_key) {
            p.mtu = Some(path.mtu);
            p.mtu_confirmed_secs_ago = path.mtu_confirmed_secs_ago;
            p.key_age_secs = Some(path.key_age_secs);
            p.health = Some(path.health.clone()).filter(|h| !h.is_empty());
            p.downs = Some(path.downs);
            p.path = Some(path.path.clone()).filter(|x| !x.is_empty());
            p.candidates = path.candidates.clone();
            p.roam_refused = Some(path.roam_refused);
            p.carries = path.carries.clone();
            p.standby_for = path.standby_for.clone();
        }
    }
}

/// The key's fingerprint and, when the daemon told us, its age: "AbCdEf12 (3h 5m)".
fn key_cell(public_key: &str, age: Option<f64>) -> String {
    let short: String = public_key.chars().take(8).collect();
    match age {
        Some(a) => format!("{short} ({})", span(a as u64)),
        None => short,
    }
}

fn span(d: u64) -> String {
    match d {
        0..60 => format!("{d}s"),
        60..3600 => format!("{}m {}s", d / 60, d % 60),
        3600..86400 => format!("{}h {}m", d / 3600, d % 3600 / 60),
        _ => format!("{}d {}h", d / 86400, d % 86400 / 3600),
    }
}

/// "up", "up, in use", "up, standby", "down (2 failovers)": whether the peer answers and, where
/// several peers carry one range (a region's hubs), whether it carries it now.
fn state_cell(p: &PeerStatus) -> String {
    let Some(health) = &p.health else {
        return "-".into();
    };
    let mut cell = health.clone();
    if !p.carries.is_empty() {
        cell.push_str(", in use");
    } else if !p.standby_for.is_empty() {
        cell.push_str(", standby");
    }
    match p.downs {
        Some(1) => cell.push_str(" (1 failover)"),
        Some(n) if n > 1 => cell.push_str(&format!(" ({n} failovers)")),
        _ => {}
    }
    cell
}

fn mtu_cell(p: &PeerStatus) -> String {
    match (p.mtu, p.mtu_confirmed_secs_ago) {
        (Some(m), Some(age)) => format!("{m} ({:.0}s ago)", age),
        (Some(m), None) => format!("{m} (plan)"),
        _ => "-".into(),
    }
}

/// Binary units with one decimal, as `wg` does (with two there).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// "12s ago", "5m 3s ago", "2h 10m ago", "3d 4h ago" or "never"; `now` is an argument so this
/// stays testable. A handshake in the future (clock stepped back) reads as "0s ago".
fn ago(now: SystemTime, unix_secs: Option<u64>) -> String {
    let Some(secs) = unix_secs else {
        return "never".into();
    };
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let d = now.saturating_sub(secs);
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m {}s ago", d / 60, d % 60),
        3600..86400 => format!("{}h {}m ago", d / 3600, d % 3600 / 60),
        _ => format!("{}d {}h ago", d / 86400, d % 86400 / 3600),
    }
}

fn render(statuses: &[InterfaceStatus], now: SystemTime) -> String {
    let mut out = String::new();
    for (i, s) in statuses.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let key = s
            .public_key
            .as_deref()
            .map_or("(none)".to_string(), |k| k.chars().take(8).collect());
        let awake = s
            .awake_peers
            .map_or(String::new(), |n| format!(" ({n} awake)"));
        out.push_str(&format!(
            "interface {}  key {key}  port {}  {} peer{}{awake}\n",
            s.interface,
            s.listen_port,
            s.peers.len(),
            if s.peers.len() == 1 { "" } else { "s" }
        ));
        if let Some(nat) = &s.nat {
            out.push_str(&nat.render());
        }
        if let (Some(age), Some(rotation)) = (s.key_age_secs, &s.rotation) {
            let psk = s
                .psk_epoch
                .map_or("off".to_string(), |e| format!("epoch {e}"));
            out.push_str(&format!(
                "key age {}  rotation {rotation}  pre-shared keys {psk}\n",
                span(age as u64)
            ));
        }
        let mut rows = vec![[
            "PEER",
            "ENDPOINT",
            "PATH",
            "HANDSHAKE",
            "RECEIVED",
            "SENT",
            "MTU",
            "STATE",
            "ALLOWED IPS",
            "KEY",
        ]
        .map(String::from)];
        rows.extend(s.peers.iter().map(|p| {
            [
                p.name.clone(),
                p.endpoint.map_or("-".into(), |e| e.to_string()),
                p.path.clone().unwrap_or_else(|| "-".into()),
                ago(now, p.latest_handshake),
                human_bytes(p.rx_bytes),
                human_bytes(p.tx_bytes),
                mtu_cell(p),
                state_cell(p),
                p.allowed_ips.join(", "),
                key_cell(&p.public_key, p.key_age_secs),
            ]
        }));
        let widths: Vec<usize> = (0..10)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(&format!("  {}\n", line.join("  ").trim_end()));
        }
        if let Some(policy) = &s.policy {
            out.push_str(&policy.render());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::uapi::UapiPeer;
    use std::time::Duration;

    #[test]
    fn byte_counts_read_in_binary_units() {
        for (n, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (3072, "3.0 KiB"),
            (1_234_567, "1.2 MiB"),
            (5 << 40, "5.0 TiB"),
        ] {
            assert_eq!(human_bytes(n), want, "{n}");
        }
    }

    #[test]
    fn handshake_ages_read_as_the_largest_two_units() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        for (secs, want) in [
            (None, "never"),
            (Some(1_000_000 - 12), "12s ago"),
            (Some(1_000_000 - 303), "5m 3s ago"),
            (Some(1_000_000 - 7800), "2h 10m ago"),
            (Some(1_000_000 - 3 * 86400 - 4 * 3600), "3d 4h ago"),
            (Some(1_000_005), "0s ago"),
        ] {
            assert_eq!(ago(now, secs), want);
        }
    }

    #[test]
    fn peers_are_named_from_the_topology_or_by_short_key() {
        let known = PublicKey::from_bytes([1; 32]);
        let stranger = PublicKey::from_bytes([2; 32]);
        let mut a = UapiPeer::new(known);
        a.last_handshake = Some(UNIX_EPOCH + Duration::from_secs(88));
        a.rx_bytes = 1_234_567;
        a.allowed_ips = vec!["10.0.1.0/24".parse().unwrap()];
        let dev = UapiDevice {
            listen_port: 51820,
            peers: vec![a, UapiPeer::new(stranger)],
            ..Default::default()
        };
        let names = HashMap::from([(known, "node-a".to_string())]);
        let status = summarize("wm0", &dev, &names);
        assert_eq!(status.peers[0].name, "node-a");
        assert_eq!(status.peers[1].name, stranger.short());
        let table = render(&[status], UNIX_EPOCH + Duration::from_secs(100));
        assert!(
            table.starts_with("interface wm0  key (none)  port 51820  2 peers\n"),
            "{table}"
        );
        assert!(
            table.contains(
                "node-a    -         -     12s ago    1.2 MiB   0 B   -    -      10.0.1.0/24"
            ),
            "{table}"
        );
        assert!(
            table.contains(&format!("{}  -         -     never", stranger.short())),
            "{table}"
        );
    }

    #[test]
    fn a_hub_reads_as_in_use_or_standby_with_its_failovers() {
        let dev = UapiDevice {
            listen_port: 51820,
            peers: vec![
                UapiPeer::new(PublicKey::from_bytes([1; 32])),
                UapiPeer::new(PublicKey::from_bytes([2; 32])),
            ],
            ..Default::default()
        };
        let mut status = summarize("wm0", &dev, &HashMap::new());
        let path = |key: u8, health: &str, downs, carries: &[&str], standby: &[&str]| {
            control_socket::PeerPathStatus {
                public_key: PublicKey::from_bytes([key; 32]).to_string(),
                health: health.into(),
                downs,
                carries: carries.iter().map(|s| s.to_string()).collect(),
                standby_for: standby.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }
        };
        add_paths(
            &mut status,
            vec![
                path(1, "down", 2, &[], &["10.244.0.0/16"]),
                path(2, "up", 0, &["10.244.0.0/16"], &[]),
            ],
        );
        assert_eq!(state_cell(&status.peers[0]), "down, standby (2 failovers)");
        assert_eq!(state_cell(&status.peers[1]), "up, in use");
        let json = serde_json::to_value(&status.peers[1]).unwrap();
        assert_eq!(json["carries"][0], "10.244.0.0/16");
        assert_eq!(json["health"], "up");
    }

    #[test]
    fn listing_a_missing_socket_directory_says_no_daemon_runs() {
        let dir = tempfile::tempdir().unwrap();
        let err = list_interfaces(&dir.path().join("none")).unwrap_err();
        assert!(
            err.to_string().starts_with("is the daemon running?"),
            "{err}"
        );
        std::fs::write(dir.path().join("wm1.sock"), "").unwrap();
        std::fs::write(dir.path().join("wm0.sock"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        assert_eq!(list_interfaces(dir.path()).unwrap(), ["wm0", "wm1"]);
    }

    #[test]
    fn a_key_reads_as_its_fingerprint_and_age_when_the_daemon_tells_it() {
        let key = PublicKey::from_bytes([7; 32]).to_string();
        assert_eq!(key_cell(&key, None), key[..8]);
        assert_eq!(
            key_cell(&key, Some(3.0 * 3600.0 + 300.0)),
            format!("{} (3h 5m)", &key[..8])
        );
    }
}
