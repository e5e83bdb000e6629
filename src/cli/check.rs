//! `wiremesh check`: is this node's part of the mesh healthy? Run on the node (or inside its
//! network namespace). For every peer in the node's plan it probes the peer's pod address with a
//! small echo and with an echo of the route's full MTU and Don't Fragment set, then reads the
//! handshake times from the daemon's UAPI socket. The rules live in [`crate::core::health`].
//!
//! The full-size echo is as large as the running daemon says the path carries (its control
//! socket reports each peer's tunnel MTU and whether discovery measured it), not the plan's
//! estimate: behind a black hole between regions the plan's size is refused by the kernel
//! route that discovery lowered, on a healthy mesh. The path figure is read once, before the
//! probes, in one snapshot per peer (see `PeerPath::view`).
//!
//! The handshake is read *after* the probes on purpose: on an idle tunnel the probe itself
//! makes WireGuard handshake, so a healthy but quiet mesh passes.

use crate::constants::{CHECK_TIMEOUT, DEFAULT_INTERFACE};
use crate::core::health::{self, Observation, PathMtu, Probe, Report};
use crate::core::key::PublicKey;
use crate::core::plan::Plan;
use crate::core::topology::Topology;
use crate::io::control_socket::{self, ControlRequest, DaemonStatus};
use crate::io::icmp_echo::{self, Echo, IcmpError};
use crate::io::uapi;
use anyhow::Context as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Topology file describing the whole mesh.
    #[arg(long, short)]
    pub topology: PathBuf,
    /// The node this runs on.
    #[arg(long, short)]
    pub node: String,
    /// The daemon's tun device; its UAPI socket is /var/run/wireguard/<interface>.sock and its
    /// control socket /var/run/wiremesh/<interface>.sock.
    #[arg(long, short, default_value = DEFAULT_INTERFACE)]
    pub interface: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How long each probe waits for a reply: `3s`, `500ms` or plain seconds (default 3s).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// `3s`, `500ms`, `2m` or a bare number of seconds (`1.5`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Duration::from_secs_f64(v * scale)),
        _ => Err(format!("'{s}' is not a duration like 3s or 500ms")),
    }
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let timeout = args.timeout.unwrap_or(CHECK_TIMEOUT);
    let topology = Topology::load(&args.topology)?;
    let plan = Plan::compute(&topology, &args.node)?;
    let tun_mtu = interface_mtu(&args.interface).unwrap_or(plan.mtu);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let daemon = rt
        .block_on(control_socket::request(
            &control_socket::socket_path(&args.interface),
            &ControlRequest::Status,
        ))
        .and_then(|resp| {
            resp.status.ok_or_else(|| {
                control_socket::ControlError::Refused("no status in the answer".into())
            })
        });
    let mut targets = Vec::new();
    for peer in &plan.peers {
        let address = topology.node(&peer.name)?.overlay_addrs()[0];
        // The route to the pod address knows every hop (through hubs too); the tun device's
        // MTU caps the probe (see `probe_size`).
        let route = plan
            .routes
            .iter()
            .find(|r| r.destination.contains(&address));
        let plan_mtu = route.map_or(peer.mtu, |r| r.mtu);
        let first_hop = route.map_or(peer.name.as_str(), |r| r.via.as_str());
        let path = daemon
            .as_ref()
            .ok()
            .and_then(|d| path_mtu(d, first_hop, route));
        let (mtu, mtu_source) = health::probe_size(plan_mtu, path, tun_mtu);
        targets.push(Target {
            name: peer.name.clone(),
            keys: known_keys(peer.public_key, daemon.as_ref().ok(), &peer.name),
            address,
            plan_mtu,
            path,
            mtu,
            mtu_source,
        });
    }
    let probes = probe_all(&targets, timeout);

    let device = rt.block_on(uapi::query(&uapi::socket_path(&args.interface)));
    let now = SystemTime::now();
    let observations: Vec<Observation> = targets
        .iter()
        .zip(probes)
        .map(|(t, (echo, full_size))| {
            let relayed_via = daemon
                .as_ref()
                .ok()
                .and_then(|d| d.peers.iter().find(|p| p.name == t.name))
                .and_then(|p| p.path.strip_prefix("relayed via "))
                .map(str::to_string);
            // a relayed peer's traffic rides the relay's session: that handshake is the one
            // that must be fresh
            let keys = match &relayed_via {
                Some(relay) => targets
                    .iter()
                    .find(|r| &r.name == relay)
                    .map_or(&t.keys, |r| &r.keys),
                None => &t.keys,
            };
            let peer = device
                .as_ref()
                .ok()
                .and_then(|d| d.peers.iter().find(|p| keys.contains(&p.public_key)));
            Observation {
                peer: t.name.clone(),
                address: t.address,
                plan_mtu: t.plan_mtu,
                path: t.path,
                mtu: t.mtu,
                mtu_source: t.mtu_source,
                configured: peer.is_some(),
                last_handshake: peer.and_then(|p| p.last_handshake),
                relayed_via,
                echo,
                full_size,
            }
        })
        .collect();
    let report = Report::new(
        &args.node,
        &args.interface,
        device.err().map(|e| e.to_string()),
        daemon.err().map(|e| e.to_string()),
        &observations,
        timeout,
        now,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    for line in report.note_lines() {
        eprintln!("NOTE {line}");
    }
    let failures = report.failure_lines();
    for line in &failures {
        eprintln!("FAIL {line}");
    }
    let failed = report.peers.iter().filter(|p| !p.ok).count();
    anyhow::ensure!(
        report.ok,
        "check of node '{}' failed: {failed} of {} peer(s) unhealthy, {} problem(s)",
        args.node,
        report.peers.len(),
        failures.len()
    );
    Ok(())
}

/// What the daemon says the route through `first_hop` carries; `None` when the daemon has no
/// such peer (then the plan's figure is all there is).
fn path_mtu(
    daemon: &DaemonStatus,
    first_hop: &str,
    route: Option<&crate::core::plan::RoutePlan>,
) -> Option<PathMtu> {
    let hop = daemon.peers.iter().find(|p| p.name == first_hop)?;
    Some(PathMtu {
        mtu: route.map_or(hop.mtu, |r| r.mtu_with_first_hop(Some(hop.mtu))),
        discovered: hop.discovered,
    })
}

/// The keys the peer may appear under in the UAPI: the topology's, and the ones the daemon
/// knows it by now (a rotated peer's new key, before the topology file catches up).
fn known_keys(
    topology_key: PublicKey,
    daemon: Option<&DaemonStatus>,
    name: &str,
) -> Vec<PublicKey> {
    let mut keys = vec![topology_key];
    let Some(p) = daemon.and_then(|d| d.peers.iter().find(|p| p.name == name)) else {
        return keys;
    };
    for text in std::iter::once(&p.public_key).chain(&p.previous_key) {
        if let Ok(k) = text.parse::<PublicKey>() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

/// The MTU the kernel uses on the tun device, when it exists here; the plan's otherwise.
fn interface_mtu(ifname: &str) -> Option<u16> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One peer to probe.
struct Target {
    name: String,
    /// Keys the daemon's UAPI may list the peer under.
    keys: Vec<PublicKey>,
    address: IpAddr,
    plan_mtu: u16,
    path: Option<PathMtu>,
    /// Size of the full-size probe.
    mtu: u16,
    mtu_source: health::MtuSource,
}

/// Probes every peer at once (a thread each): a small echo, then the full-size one.
fn probe_all(targets: &[Target], timeout: Duration) -> Vec<(Probe, Probe)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| {
                s.spawn(move || {
                    let small = probe(icmp_echo::echo(&Echo::new(t.address, timeout)));
                    let full = probe(icmp_echo::echo(&Echo::full_size(t.address, timeout, t.mtu)));
                    (small, full)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    let dead = Probe::Failed("probe thread panicked".into());
                    (dead.clone(), dead)
                })
            })
            .collect()
    })
}

fn probe(result: Result<Option<Duration>, IcmpError>) -> Probe {
    match result {
        Ok(Some(rtt)) => Probe::Reply(rtt),
        Ok(None) => Probe::NoReply,
        Err(e) => Probe::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::RoutePlan;
    use crate::io::control_socket::PeerPathStatus;

    fn daemon(peers: &[(&str, u16, bool)]) -> DaemonStatus {
        DaemonStatus {
            peers: peers
                .iter()
                .map(|(name, mtu, discovered)| PeerPathStatus {
                    name: name.to_string(),
                    public_key: PublicKey::from_bytes([name.len() as u8; 32]).to_string(),
                    mtu: *mtu,
                    discovered: *discovered,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn route(via: &str, mtu: u16, beyond_mtu: Option<u16>) -> RoutePlan {
        RoutePlan {
            destination: "10.244.7.0/24".parse().unwrap(),
            node: "far".into(),
            via: via.into(),
            mtu,
            beyond_mtu,
        }
    }

    #[test]
    fn the_path_mtu_is_the_first_hops_bounded_by_the_plan_for_the_hops_behind_it() {
        let d = daemon(&[("hub", 1320, true), ("near", 1440, false)]);
        let direct = route("near", 1400, None);
        assert_eq!(
            path_mtu(&d, "near", Some(&direct)),
            Some(PathMtu {
                mtu: 1440,
                discovered: false
            })
        );
        let behind_hub = route("hub", 1300, Some(1300));
        assert_eq!(
            path_mtu(&d, "hub", Some(&behind_hub)).map(|p| p.mtu),
            Some(1300)
        );
        let wide_beyond = route("hub", 1300, Some(1440));
        assert_eq!(
            path_mtu(&d, "hub", Some(&wide_beyond)),
            Some(PathMtu {
                mtu: 1320,
                discovered: true
            })
        );
        assert_eq!(path_mtu(&d, "gone", Some(&direct)), None);
    }

    #[test]
    fn a_peer_is_found_under_its_topology_key_or_the_keys_the_daemon_knows_it_by() {
        let old = PublicKey::from_bytes([9; 32]);
        let new = PublicKey::from_bytes([8; 32]);
        let mut d = daemon(&[]);
        d.peers.push(PeerPathStatus {
            name: "b".into(),
            public_key: new.to_string(),
            previous_key: Some(old.to_string()),
            ..Default::default()
        });
        // rotated after the topology file was written: the daemon lists the new key
        assert_eq!(known_keys(old, Some(&d), "b"), [old, new]);
        assert_eq!(known_keys(old, Some(&d), "c"), [old]);
        assert_eq!(known_keys(old, None, "b"), [old]);
    }

    #[test]
    fn timeouts_read_as_seconds_milliseconds_or_minutes() {
        for (text, want) in [
            ("3s", Duration::from_secs(3)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1.5", Duration::from_millis(1500)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "0s", "-1", "three", "3h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
