//! `wiremesh check`: is this node's part of the mesh healthy? Run on the node (or inside its
//! network namespace). For every peer in the node's plan it probes the peer's pod address with a
//! small echo and with an echo of the full tunnel MTU and Don't Fragment set, then reads the
//! handshake times from the daemon's UAPI socket. The rules live in [`crate::core::health`].
//!
//! The handshake is read *after* the probes on purpose: on an idle tunnel the probe itself
//! makes WireGuard handshake, so a healthy but quiet mesh passes.

use crate::constants::{CHECK_TIMEOUT, DEFAULT_INTERFACE};
use crate::core::health::{Observation, Probe, Report};
use crate::core::key::PublicKey;
use crate::core::plan::Plan;
use crate::core::topology::Topology;
use crate::io::icmp::{self, Echo, IcmpError};
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
    /// The daemon's tun device; its UAPI socket is /var/run/wireguard/<interface>.sock.
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
    let mut targets = Vec::new();
    for peer in &plan.peers {
        let address = topology.node(&peer.name)?.overlay_addrs()[0];
        // The route to the pod address knows every hop (through hubs too); the tun device's
        // MTU caps it.
        let path_mtu = plan
            .routes
            .iter()
            .find(|r| r.destination.contains(&address))
            .map_or(peer.mtu, |r| r.mtu);
        targets.push(Target {
            name: peer.name.clone(),
            key: peer.public_key,
            address,
            mtu: path_mtu.min(tun_mtu),
        });
    }
    let probes = probe_all(&targets, timeout);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let device = rt.block_on(uapi::query(&uapi::socket_path(&args.interface)));
    let now = SystemTime::now();
    let observations: Vec<Observation> = targets
        .iter()
        .zip(probes)
        .map(|(t, (echo, full_size))| {
            let peer = device
                .as_ref()
                .ok()
                .and_then(|d| d.peers.iter().find(|p| p.public_key == t.key));
            Observation {
                peer: t.name.clone(),
                address: t.address,
                mtu: t.mtu,
                configured: peer.is_some(),
                last_handshake: peer.and_then(|p| p.last_handshake),
                echo,
                full_size,
            }
        })
        .collect();
    let report = Report::new(
        &args.node,
        &args.interface,
        device.err().map(|e| e.to_string()),
        &observations,
        timeout,
        now,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
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
    key: PublicKey,
    address: IpAddr,
    /// Size of the full-size probe.
    mtu: u16,
}

/// Probes every peer at once (a thread each): a small echo, then the full-size one.
fn probe_all(targets: &[Target], timeout: Duration) -> Vec<(Probe, Probe)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| {
                s.spawn(move || {
                    let small = probe(icmp::echo(&Echo::new(t.address, timeout)));
                    let full = probe(icmp::echo(&Echo::full_size(t.address, timeout, t.mtu)));
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
