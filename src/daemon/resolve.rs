//! One task per DNS-named peer endpoint: resolve, set the peer's endpoint, sleep until the
//! answer's TTL runs out, repeat. Reloads stop and start these tasks per peer.

use crate::core::key::PublicKey;
use crate::core::topology::Endpoint;
use crate::engine::Peer;
use crate::io::dns::{retry_delay, Resolver};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

#[derive(Default)]
pub struct Resolvers {
    tasks: HashMap<PublicKey, (Endpoint, JoinHandle<()>)>,
}

impl Resolvers {
    /// Makes the running tasks match the peers' configured endpoints.
    pub fn sync(&mut self, resolver: &Resolver, peers: &[Arc<Peer>], prefer_v4: bool) {
        let wanted: HashMap<PublicKey, (Endpoint, Arc<Peer>)> = peers
            .iter()
            .filter_map(|p| match p.config().endpoint.clone() {
                Some(e @ Endpoint::Dns { .. }) => Some((p.public_key(), (e, p.clone()))),
                _ => None,
            })
            .collect();
        self.tasks.retain(|key, (endpoint, task)| {
            let keep = wanted.get(key).is_some_and(|(e, _)| e == endpoint);
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, (endpoint, peer)) in wanted {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let Endpoint::Dns { host, port } = endpoint.clone() else {
                continue;
            };
            let resolver = resolver.clone();
            let task = tokio::spawn(async move {
                loop {
                    match resolver.resolve(&host, prefer_v4).await {
                        Ok((ip, refresh_at)) => {
                            let addr = SocketAddr::new(ip, port);
                            if peer.set_endpoint(addr) {
                                tracing::info!(peer = %peer.name(), %host, %addr, "endpoint resolved");
                            }
                            tokio::time::sleep_until(refresh_at.into()).await;
                        }
                        Err(e) => {
                            tracing::warn!(peer = %peer.name(), error = %e, "endpoint lookup failed; retrying");
                            tokio::time::sleep(retry_delay()).await;
                        }
                    }
                }
            });
            self.tasks.insert(key, (endpoint, task));
        }
    }

    pub fn stop(&mut self) {
        for (_, (_, t)) in self.tasks.drain() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::peer_for_tests;
    use std::net::Ipv4Addr;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::net::UdpSocket;

    /// A one-name DNS server on loopback whose answer (address, TTL) the test can change.
    async fn dns_server(answer: Arc<Mutex<(Ipv4Addr, u32)>>) -> (SocketAddr, JoinHandle<()>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                if n < 12 {
                    continue;
                }
                // question ends after the name's zero byte plus QTYPE and QCLASS
                let mut i = 12;
                while i < n && buf[i] != 0 {
                    i += usize::from(buf[i]) + 1;
                }
                let qend = (i + 5).min(n);
                let qtype = u16::from_be_bytes([buf[i + 1], buf[i + 2]]);
                let (ip, ttl) = *answer.lock().unwrap();
                let mut r = Vec::new();
                r.extend_from_slice(&buf[..2]);
                r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(qtype == 1), 0, 0, 0, 0]);
                r.extend_from_slice(&buf[12..qend]);
                if qtype == 1 {
                    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
                    r.extend_from_slice(&ttl.to_be_bytes());
                    r.extend_from_slice(&[0, 4]);
                    r.extend_from_slice(&ip.octets());
                }
                let _ = sock.send_to(&r, from).await;
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_dns_endpoint_is_resolved_and_followed_when_its_ttl_expires() {
        let answer = Arc::new(Mutex::new((Ipv4Addr::new(192, 0, 2, 7), 1)));
        let (server, task) = dns_server(answer.clone()).await;
        let resolver = Resolver::new(&[server]).unwrap();
        let peer = peer_for_tests(Some(Endpoint::Dns {
            host: "peer.mesh.test".into(),
            port: 51820,
        }));
        let mut resolvers = Resolvers::default();
        resolvers.sync(&resolver, std::slice::from_ref(&peer), true);
        let want1: SocketAddr = "192.0.2.7:51820".parse().unwrap();
        let want2: SocketAddr = "192.0.2.8:51820".parse().unwrap();
        wait_for(|| peer.endpoint() == Some(want1)).await;
        answer.lock().unwrap().0 = Ipv4Addr::new(192, 0, 2, 8);
        wait_for(|| peer.endpoint() == Some(want2)).await;
        resolvers.stop();
        task.abort();
    }

    async fn wait_for(cond: impl Fn() -> bool) {
        for _ in 0..100 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("condition not met within 5 s");
    }
}
