//! The engine seen through the WireGuard UAPI, so `wg show` and `wiremesh status` work against
//! a running daemon. The topology is the source of truth for peers: `set` may move a peer's
//! endpoint (as `wg set ... endpoint` does), but adding or removing peers and AllowedIPs is done
//! by editing the topology and sending SIGHUP, so a reload never silently undoes an edit.

use crate::engine::Device;
use crate::io::uapi::{UapiDevice, UapiError, UapiHandler, UapiPeer, UapiSet};
use std::sync::Arc;

pub struct EngineUapi(pub Arc<Device>);

impl UapiHandler for EngineUapi {
    fn get(&self) -> UapiDevice {
        let (now, wall) = (std::time::Instant::now(), std::time::SystemTime::now());
        let mut peers: Vec<_> = self
            .0
            .peers()
            .iter()
            .map(|p| p.snapshot(now, wall))
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        UapiDevice {
            private_key: Some(self.0.private_key()),
            listen_port: self.0.listen_port(),
            fwmark: None,
            peers: peers
                .into_iter()
                .map(|s| {
                    let mut p = UapiPeer::new(s.public_key);
                    p.endpoint = s.endpoint;
                    p.last_handshake = s.last_handshake;
                    p.rx_bytes = s.rx_bytes;
                    p.tx_bytes = s.tx_bytes;
                    p.persistent_keepalive = s.persistent_keepalive;
                    p.allowed_ips = s.allowed_ips;
                    p
                })
                .collect(),
        }
    }

    fn set(&self, req: UapiSet) -> Result<(), UapiError> {
        let refuse = |what: &str| {
            Err(UapiError::Invalid(format!(
                "{what} comes from the topology in wiremesh: edit the topology file and send SIGHUP"
            )))
        };
        if req.private_key.is_some() {
            return refuse("the private key");
        }
        if req.listen_port.is_some() && req.listen_port != Some(self.0.listen_port()) {
            return refuse("the listen port");
        }
        if req.replace_peers {
            return refuse("the peer list");
        }
        let table = self.0.peers();
        // check everything first, so a refused request changes nothing
        for p in &req.peers {
            if table.by_key(&p.public_key).is_none() || p.remove {
                return refuse("the peer list");
            }
            if p.replace_allowed_ips || !p.allowed_ips.is_empty() {
                return refuse("AllowedIPs");
            }
            if p.preshared_key.is_some() || p.persistent_keepalive.is_some() {
                return refuse("peer settings other than the endpoint");
            }
        }
        for p in &req.peers {
            if let (Some(peer), Some(ep)) = (table.by_key(&p.public_key), p.endpoint) {
                peer.set_endpoint(ep);
            }
        }
        Ok(())
    }
}
