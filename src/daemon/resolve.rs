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
                Some(e @ Endpoint::Dns { .. }) => Some((p.public_key, (e, p.clone()))),
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
