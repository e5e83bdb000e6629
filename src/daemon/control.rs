//! The daemon's answers on the wiremesh control socket.

use crate::engine::Device;
use crate::io::control::{
    ControlHandler, ControlRequest, ControlResponse, DaemonStatus, PeerPathStatus,
};
use std::sync::Arc;
use std::time::Instant;

pub struct DaemonControl {
    pub device: Arc<Device>,
    pub node: String,
    pub interface: String,
}

impl DaemonControl {
    fn status(&self) -> DaemonStatus {
        let now = Instant::now();
        let mut peers: Vec<PeerPathStatus> = self
            .device
            .peers()
            .iter()
            .map(|p| {
                let confirmed = p.path.confirmed_at();
                PeerPathStatus {
                    name: p.name(),
                    public_key: p.public_key.to_string(),
                    mtu: p.path.mtu(),
                    discovered: confirmed.is_some(),
                    mtu_confirmed_secs_ago: confirmed
                        .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                    speaks_control: p.path.speaks_control(),
                    probes_sent: p.path.probes_sent(),
                    probe_bytes: p.path.probe_bytes(),
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
        }
    }
}

impl ControlHandler for DaemonControl {
    fn handle(&self, req: ControlRequest) -> ControlResponse {
        match req {
            ControlRequest::Status => ControlResponse {
                status: Some(self.status()),
                error: None,
            },
        }
    }
}
