//! Prometheus metrics, read from the [`Device`] on every scrape.
//!
//! Off unless `metrics_listen` is set (`--metrics-listen 127.0.0.1:9586`). Nothing here keeps a
//! counter of its own: [`DeviceCollector`] walks the peer table when Prometheus asks, so a
//! value can never drift from what `wg show` and `wiremesh status` report, and a reload that
//! removes a peer removes its series at the next scrape.
//!
//! | family | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `wiremesh_peer_tx_bytes` / `_rx_bytes` | counter | peer, public_key | tunnel bytes sent / received |
//! | `wiremesh_peer_tx_packets` / `_rx_packets` | counter | peer, public_key | inner packets sent / accepted |
//! | `wiremesh_peer_last_handshake_age_seconds` | gauge | peer, public_key | absent until the first handshake |
//! | `wiremesh_peer_handshake_failures` | counter | peer, public_key | handshake messages `Tunn` refused |
//! | `wiremesh_peer_endpoint_changes` | counter | peer, public_key | roaming and DNS re-resolution |
//! | `wiremesh_peer_endpoint_failovers` | counter | peer, public_key | tried at the next endpoint |
//! | `wiremesh_peer_roams_refused` | counter | peer, public_key | private endpoint kept |
//! | `wiremesh_peer_punches` / `_punches_succeeded` | counter | peer, public_key | hole punches started / that reached the peer |
//! | `wiremesh_peer_mtu_bytes` | gauge | peer, public_key | tunnel MTU towards the peer (discovered) |
//! | `wiremesh_peer_mtu_confirmed_age_seconds` | gauge | peer, public_key | absent before discovery |
//! | `wiremesh_peer_answering` | gauge | peer, public_key | 1 while the peer answers, 0 while down or returning |
//! | `wiremesh_peer_down_events` | counter | peer, public_key | times it stopped answering (failovers away from it) |
//! | `wiremesh_peer_carried_ranges` | gauge | peer, public_key | shared ranges (a region's hubs) it carries now |
//! | `wiremesh_dropped_packets` | counter | reason | [`DropReason::label`] |
//! | `wiremesh_forwarded_packets` | counter | | hub: relayed without the kernel |
//! | `wiremesh_key_rotations` | counter | | own static-key rotations started since the daemon began |
//! | `wiremesh_peer_releases` | counter | | idle peers whose session state was given back |
//! | `wiremesh_cookie_replies` | counter | | handshake messages answered with a cookie under load |
//! | `wiremesh_awake_peers` | gauge | | peers holding session state now (the rest are idle records) |
//! | `wiremesh_build` | info | version | always 1 |
//! | `wiremesh_policy_*`, `wiremesh_conntrack_*` | | | the network policy: see `policy.rs` |
//!
//! Counters carry `_total` on their samples, as OpenMetrics and Prometheus both expect.
//! The handshake age is left out, rather than NaN, before a first handshake: `absent()` and
//! `unless` then work in alerts, and no dashboard draws a NaN as a gap that looks like data.

mod http;
mod policy;
#[cfg(test)]
mod tests;
mod text;

pub use http::{serve, MetricsServer};
pub use text::to_prometheus_text;

use crate::core::liveness::Health;
use crate::engine::{Device, DropReason, PeerSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Values the engine does not track yet. Each has a default that is right today; the change
/// that brings the real value overrides one method instead of touching the collector.
pub trait MetricHooks: Send + Sync + 'static {
    /// Tunnel MTU towards `peer`: what path-MTU discovery confirmed, or the plan's estimate.
    fn peer_mtu(&self, _device: &Device, peer: &PeerSnapshot) -> u16 {
        peer.mtu
    }

    /// Private-key rotations started since the daemon started.
    fn rotations(&self, device: &Device) -> u64 {
        device.rotations()
    }
}

/// The hooks' defaults: the peer's MTU as the engine enforces it, the engine's rotation count.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanValues;

impl MetricHooks for PlanValues {}

/// Encodes a device's state on each scrape.
#[derive(Clone)]
pub struct DeviceCollector {
    device: Arc<Device>,
    hooks: Arc<dyn MetricHooks>,
}

impl fmt::Debug for DeviceCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCollector")
            .field("public_key", &self.device.public_key())
            .finish_non_exhaustive()
    }
}

impl DeviceCollector {
    pub fn new(device: Arc<Device>, hooks: Arc<dyn MetricHooks>) -> Self {
        Self { device, hooks }
    }
}

/// A registry holding only `device`'s collector, with the default hooks.
pub fn registry(device: Arc<Device>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(DeviceCollector::new(device, Arc::new(PlanValues))));
    r
}

/// The OpenMetrics text of everything in `registry`, ending in `# EOF`.
pub fn render_openmetrics(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; an encoder error would be a bug in a collector.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}

type PeerLabels = [(&'static str, String); 2];

/// A per-peer counter: family name (before the unit), help, unit, and how to read it.
type CounterSpec<'a> = (&'a str, &'a str, Option<&'a Unit>, fn(&PeerSnapshot) -> u64);

/// One value per peer, in peer-name order.
struct PerPeer<'a, T> {
    labels: &'a [PeerLabels],
    values: Vec<T>,
}

fn counter_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: PerPeer<'_, u64>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, v) in rows.labels.iter().zip(rows.values) {
        ConstCounter::new(v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge_family<T: prometheus_client::encoding::EncodeGaugeValue + fmt::Debug>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(&PeerLabels, T)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in rows {
        let mut family = m.encode_family(*labels)?;
        family.encode_gauge(v)?;
    }
    Ok(())
}

impl Collector for DeviceCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let now = SystemTime::now();
        let mono = std::time::Instant::now();
        let dev = &*self.device;
        let mut peers: Vec<PeerSnapshot> = dev
            .peers()
            .iter()
            .map(|p| dev.peer_snapshot(p, mono, now))
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        let labels: Vec<PeerLabels> = peers
            .iter()
            .map(|p| {
                [
                    ("peer", p.name.clone()),
                    ("public_key", p.public_key.to_string()),
                ]
            })
            .collect();
        let rows = |f: fn(&PeerSnapshot) -> u64| PerPeer {
            labels: &labels,
            values: peers.iter().map(f).collect(),
        };
        let bytes = Some(&Unit::Bytes);
        let per_peer_counters: [CounterSpec; 11] = [
            (
                "wiremesh_peer_tx",
                "Tunnel bytes sent to the peer (WireGuard payload, as wg show).",
                bytes,
                |p| p.tx_bytes,
            ),
            (
                "wiremesh_peer_rx",
                "Tunnel bytes received from the peer (WireGuard payload, as wg show).",
                bytes,
                |p| p.rx_bytes,
            ),
            (
                "wiremesh_peer_tx_packets",
                "Inner packets encrypted and sent to the peer.",
                None,
                |p| p.tx_packets,
            ),
            (
                "wiremesh_peer_rx_packets",
                "Inner packets from the peer that passed the AllowedIPs check.",
                None,
                |p| p.rx_packets,
            ),
            (
                "wiremesh_peer_handshake_failures",
                "Handshake messages from the peer that the noise layer refused.",
                None,
                |p| p.handshake_failures,
            ),
            (
                "wiremesh_peer_endpoint_changes",
                "Times the peer's underlay address changed (roaming, DNS).",
                None,
                |p| p.endpoint_changes,
            ),
            (
                "wiremesh_peer_endpoint_failovers",
                "Times the peer, not answering at its endpoint, was tried at its next one (docs/nat.md).",
                None,
                |p| p.candidates.failovers,
            ),
            (
                "wiremesh_peer_roams_refused",
                "Packets from another address that did not move the peer off its private endpoint in use.",
                None,
                |p| p.candidates.roam_refused,
            ),
            (
                "wiremesh_peer_punches",
                "Hole punches started towards the peer, reached through a relay (docs/nat.md).",
                None,
                |p| p.punch.attempts,
            ),
            (
                "wiremesh_peer_punches_succeeded",
                "Hole punches that reached the peer: its traffic may leave the relay.",
                None,
                |p| p.punch.successes,
            ),
            (
                "wiremesh_peer_down_events",
                "Times the peer stopped answering; each moved the ranges it shared with other carriers (a region's hubs) away from it.",
                None,
                |p| p.downs,
            ),
        ];
        for (name, help, unit, f) in per_peer_counters {
            counter_family(&mut enc, name, help, unit, rows(f))?;
        }

        let ages: Vec<(&PeerLabels, f64)> = labels
            .iter()
            .zip(&peers)
            .filter_map(|(l, p)| {
                let at = p.last_handshake?;
                // A handshake stamped after `now` (clock step) counts as just now.
                let age = now.duration_since(at).unwrap_or_default();
                Some((l, age.as_secs_f64()))
            })
            .collect();
        gauge_family(
            &mut enc,
            "wiremesh_peer_last_handshake_age",
            "Seconds since the last completed handshake; absent before the first one.",
            Some(&Unit::Seconds),
            &ages,
        )?;
        let confirmed: Vec<(&PeerLabels, f64)> = labels
            .iter()
            .zip(&peers)
            .filter_map(|(l, p)| Some((l, p.mtu_confirmed_age?.as_secs_f64())))
            .collect();
        gauge_family(
            &mut enc,
            "wiremesh_peer_mtu_confirmed_age",
            "Seconds since a probe last confirmed the peer's MTU; absent before discovery.",
            Some(&Unit::Seconds),
            &confirmed,
        )?;
        let answering: Vec<(&PeerLabels, i64)> = labels
            .iter()
            .zip(&peers)
            .map(|(l, p)| (l, i64::from(p.health == Health::Up)))
            .collect();
        gauge_family(
            &mut enc,
            "wiremesh_peer_answering",
            "1 while the peer answers what is sent to it; 0 while it is down or returning.",
            None,
            &answering,
        )?;
        // ranges shared by several carriers: how many each peer carries now (the hub in use)
        let mut carried: std::collections::HashMap<String, i64> = Default::default();
        for (_, _, chosen) in dev.peers().shared() {
            *carried.entry(chosen.name()).or_default() += 1;
        }
        let carrying: Vec<(&PeerLabels, i64)> = labels
            .iter()
            .zip(&peers)
            .map(|(l, p)| (l, carried.get(&p.name).copied().unwrap_or(0)))
            .collect();
        gauge_family(
            &mut enc,
            "wiremesh_peer_carried_ranges",
            "Ranges shared by several carriers (a region's hubs) that this peer carries now.",
            None,
            &carrying,
        )?;
        let mtus: Vec<(&PeerLabels, i64)> = labels
            .iter()
            .zip(&peers)
            .map(|(l, p)| (l, i64::from(self.hooks.peer_mtu(dev, p))))
            .collect();
        gauge_family(
            &mut enc,
            "wiremesh_peer_mtu",
            "Tunnel MTU towards the peer: discovered, or the plan's estimate before discovery.",
            bytes,
            &mtus,
        )?;

        let mut drops = enc.encode_descriptor(
            "wiremesh_dropped_packets",
            "Packets dropped by the engine, by reason.",
            None,
            MetricType::Counter,
        )?;
        for reason in DropReason::ALL {
            let label = [("reason", reason.label())];
            ConstCounter::new(dev.drops(reason)).encode(drops.encode_family(&label)?)?;
        }
        let node_counters = [
            (
                "wiremesh_forwarded_packets",
                "Packets a hub relayed from one peer to another without the kernel.",
                dev.forwarded(),
            ),
            (
                "wiremesh_key_rotations",
                "Own static-key rotations started since the daemon began.",
                self.hooks.rotations(dev),
            ),
            (
                "wiremesh_peer_releases",
                "Idle peers whose session state was given back.",
                dev.releases(),
            ),
            (
                "wiremesh_cookie_replies",
                "Handshake messages answered with a cookie reply under load (not handled).",
                dev.cookie_replies(),
            ),
        ];
        for (name, help, v) in node_counters {
            let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(m)?;
        }
        let m = enc.encode_descriptor(
            "wiremesh_awake_peers",
            "Peers holding session state now; the others are idle records.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(dev.awake_count() as i64).encode(m)?;
        policy::encode(&mut enc, dev)?;
        let info = Info::new([("version", env!("CARGO_PKG_VERSION"))]);
        let m = enc.encode_descriptor(
            "wiremesh_build",
            "The running wiremesh build; always 1.",
            None,
            info.metric_type(),
        )?;
        info.encode(m)
    }
}
