//! How a [`Plan`] is shown: a `wg setconf` file for hosts running stock WireGuard, and the
//! tables of `wiremesh plan`.

use super::{PeerRole, Plan};
use ipnet::IpNet;
use std::fmt::Write as _;

impl Plan {
    /// A `wg setconf` file for this node, so a host running stock WireGuard can take its place.
    /// Stock WireGuard moves an AllowedIP to the last peer that names it, so where hub-mode
    /// AllowedIPs overlap, the range goes to the peer the route table sends it via (so a second
    /// hub keeps its own CIDR and its packets are not dropped), else to the first peer naming it.
    pub fn to_wg_config(&self, private_key_path: Option<&str>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# wiremesh plan for node '{}' ({} mode)",
            self.node,
            format!("{:?}", self.mode).to_lowercase()
        );
        let _ = writeln!(
            out,
            "# Interface addresses: {}; MTU {}",
            join(&self.addresses),
            self.mtu
        );
        let _ = writeln!(
            out,
            "# Routes to add through the interface: {}",
            join(&self.route_destinations())
        );
        let _ = writeln!(out, "[Interface]");
        match private_key_path {
            Some(p) => {
                let _ = writeln!(out, "# PrivateKey: set with `wg set <if> private-key {p}`");
            }
            None => {
                let _ = writeln!(
                    out,
                    "# PrivateKey: set with `wg set <if> private-key <file>`"
                );
            }
        }
        let _ = writeln!(out, "ListenPort = {}", self.listen_port);
        let owner = |range: &IpNet| -> Option<&str> {
            let via = self
                .routes
                .iter()
                .find(|r| &r.destination == range)
                .map(|r| r.via.as_str());
            let named_by = |name: &str| {
                self.peers
                    .iter()
                    .any(|p| p.name == name && p.allowed_ips.contains(range))
            };
            via.filter(|v| named_by(v)).or_else(|| {
                self.peers
                    .iter()
                    .find(|p| p.allowed_ips.contains(range))
                    .map(|p| p.name.as_str())
            })
        };
        for p in &self.peers {
            let _ = writeln!(out, "\n# {} ({}/{})", p.name, p.cloud, p.region);
            let _ = writeln!(out, "[Peer]");
            let _ = writeln!(out, "PublicKey = {}", p.public_key);
            let allowed: Vec<IpNet> = p
                .allowed_ips
                .iter()
                .filter(|a| owner(a) == Some(p.name.as_str()))
                .copied()
                .collect();
            if allowed.is_empty() {
                let _ = writeln!(out, "# every range of this peer is carried by another peer");
            } else {
                let _ = writeln!(out, "AllowedIPs = {}", join(&allowed));
            }
            if let Some(e) = &p.endpoint {
                let _ = writeln!(out, "Endpoint = {e}");
            }
            if let Some(k) = p.persistent_keepalive {
                let _ = writeln!(out, "PersistentKeepalive = {k}");
            }
        }
        out
    }

    fn route_destinations(&self) -> Vec<IpNet> {
        self.routes.iter().map(|r| r.destination).collect()
    }

    /// Human-readable tables for `wiremesh plan`.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "node {} ({} mode), public key {}",
            self.node,
            format!("{:?}", self.mode).to_lowercase(),
            self.public_key
        );
        let _ = writeln!(
            out,
            "addresses {}  pod CIDRs {}  tun MTU {}  listen port {}  path-MTU discovery {}",
            join(&self.addresses),
            join(&self.pod_cidrs),
            self.mtu,
            self.listen_port,
            if self.discover_mtu {
                "on (MTUs below are where it starts)"
            } else {
                "off (fixed mtu)"
            }
        );
        let _ = writeln!(
            out,
            "\n{:<20} {:<6} {:<24} {:<12} {:<5} ALLOWED IPS",
            "PEER", "ROLE", "ENDPOINT", "PUBLIC KEY", "MTU"
        );
        for p in &self.peers {
            let role = match p.role {
                PeerRole::Hub => "hub",
                PeerRole::Direct => "direct",
            };
            let ep = p
                .endpoint
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "(learned)".into());
            let _ = writeln!(
                out,
                "{:<20} {:<6} {:<24} {:<12} {:<5} {}",
                p.name,
                role,
                ep,
                p.public_key.short() + "…",
                p.mtu,
                join(&p.allowed_ips)
            );
        }
        let _ = writeln!(out, "\n{:<24} {:<20} {:<20} MTU", "ROUTE", "NODE", "VIA");
        for r in &self.routes {
            let _ = writeln!(
                out,
                "{:<24} {:<20} {:<20} {}",
                r.destination.to_string(),
                r.node,
                r.via,
                r.mtu
            );
        }
        out
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
