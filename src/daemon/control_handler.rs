//! The daemon's answers on the wiremesh control socket.

use super::rotate::Rotator;
use crate::core::rotation::NodeState;
use crate::engine::Device;
use crate::io::control_socket::{
    ControlHandler, ControlRequest, ControlResponse, DaemonStatus, PeerPathStatus,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

pub struct DaemonControl {
    pub device: Arc<Device>,
    pub node: String,
    pub interface: String,
    pub rotator: Arc<Rotator>,
}

impl DaemonControl {
    fn status(&self) -> DaemonStatus {
        let now = Instant::now();
        let own = self.device.public_key();
        let table = self.device.peers();
        // shared ranges by carrier: the one in use, and the ones standing by
        let mut carries: HashMap<u32, Vec<String>> = HashMap::new();
        let mut standby: HashMap<u32, Vec<String>> = HashMap::new();
        for (net, carriers, chosen) in table.shared() {
            for c in carriers {
                let list = if Arc::ptr_eq(c, chosen) {
                    &mut carries
                } else {
                    &mut standby
                };
                list.entry(c.slot).or_default().push(net.to_string());
            }
        }
        let mut peers: Vec<PeerPathStatus> = table
            .iter()
            .map(|p| {
                // one reading: an MTU and a confirmation from two instants could pair the
                // plan's MTU with a discovery's confirmation
                let path = p.path.view();
                let candidates = p.candidates.view();
                let punch = self.device.punch_view(p);
                let path_now = match table.relayed_via(p) {
                    Some(relay) => format!("relayed via {}", relay.name()),
                    None if punch.punched.is_some() && punch.punched == p.endpoint() => {
                        "punched".to_string()
                    }
                    None => candidates.path(p.endpoint()),
                };
                // bound first: a guard inside the literal would live to its end
                let keys = p.keys().accepted();
                let theirs = keys[0];
                // an idle peer wakes under the newest keys
                let on_newest_keys = p
                    .active()
                    .is_none_or(|active| active.ours == own && active.theirs == theirs);
                PeerPathStatus {
                    name: p.name(),
                    public_key: theirs.to_string(),
                    mtu: path.mtu,
                    discovered: path.confirmed_at.is_some(),
                    mtu_confirmed_secs_ago: path
                        .confirmed_at
                        .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                    speaks_control: path.speaks_control,
                    probes_sent: path.probes_sent,
                    key_fingerprint: theirs.short(),
                    key_age_secs: now.saturating_duration_since(p.key_since()).as_secs_f64(),
                    previous_key: keys.get(1).map(|k| k.to_string()),
                    on_newest_keys,
                    probe_bytes: path.probe_bytes,
                    health: p.liveness.health().as_str().to_string(),
                    downs: p.liveness.downs(),
                    path: path_now,
                    punch_attempts: punch.attempts,
                    punch_successes: punch.successes,
                    candidates: candidates.listed(),
                    roam_refused: candidates.roam_refused,
                    endpoint_failovers: candidates.failovers,
                    carries: carries.remove(&p.slot).unwrap_or_default(),
                    standby_for: standby.remove(&p.slot).unwrap_or_default(),
                }
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        DaemonStatus {
            node: self.node.clone(),
            interface: self.interface.clone(),
            public_key: self.device.public_key().to_string(),
            tun_mtu: self.device.mtu(),
            peers,
            key_age_secs: self.device.key_age(now).as_secs_f64(),
            rotation: match self.device.rotation_state() {
                NodeState::Stable { .. } => "stable",
                NodeState::Announced { .. } => "announced",
                NodeState::Switched { .. } => "switched",
            }
            .to_string(),
            rotations: self.device.rotations(),
            psk_epoch: self.device.psk_epoch(),
            awake_peers: self.device.awake_count(),
            forwarded_packets: self.device.forwarded(),
            policy: Some(super::policy::status(&self.device, now)),
            nat: Some({
                let nat = self.device.nat(now);
                crate::io::control_socket::NatStatus {
                    kind: nat.nat.as_str().to_string(),
                    reflexive: nat.reflexive,
                    seen_by: nat.answers.into_iter().collect(),
                }
            }),
        }
    }
}

impl ControlHandler for DaemonControl {
    fn handle(&self, req: ControlRequest) -> ControlResponse {
        match req {
            ControlRequest::Status => ControlResponse {
                status: Some(self.status()),
                ..Default::default()
            },
            ControlRequest::Rotate => match self.rotator.rotate() {
                Ok(key) => ControlResponse {
                    rotated: Some(key.to_string()),
                    ..Default::default()
                },
                Err(e) => ControlResponse {
                    error: Some(e.to_string()),
                    ..Default::default()
                },
            },
        }
    }
}
