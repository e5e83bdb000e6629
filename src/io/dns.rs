//! Endpoint names resolved with `hickory-resolver` and re-resolved when the answer's TTL runs
//! out, so a peer whose address changes behind a DNS name is followed without a reload.

use crate::constants::{DNS_RETRY, MIN_DNS_REFRESH};
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot read the system resolver configuration: {0}")]
    System(String),
    #[error("{host}: {message}")]
    Lookup { host: String, message: String },
}

/// A resolver: the system's, or one pointed at given servers (tests, split-horizon setups).
#[derive(Clone)]
pub struct Resolver(TokioResolver);

impl Resolver {
    pub fn new(servers: &[SocketAddr]) -> Result<Resolver, DnsError> {
        let builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsError::System(e.to_string()))?
        } else {
            let servers = servers
                .iter()
                .map(|s| {
                    let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                    for c in &mut ns.connections {
                        c.port = s.port();
                    }
                    ns
                })
                .collect();
            let config = ResolverConfig::from_name_servers(servers);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        };
        let mut opts = ResolverOpts::default();
        opts.cache_size = 64;
        Ok(Resolver(
            builder
                .with_options(opts)
                .build()
                .map_err(|e| DnsError::System(e.to_string()))?,
        ))
    }

    /// Resolves `host`, preferring an IPv4 answer when `prefer_v4`, and says when to ask again.
    pub async fn resolve(
        &self,
        host: &str,
        prefer_v4: bool,
    ) -> Result<(IpAddr, Instant), DnsError> {
        let lookup = self.0.lookup_ip(host).await.map_err(|e| DnsError::Lookup {
            host: host.to_string(),
            message: e.to_string(),
        })?;
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        let pick = addrs
            .iter()
            .find(|a| a.is_ipv4() == prefer_v4)
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| DnsError::Lookup {
                host: host.to_string(),
                message: "no addresses".into(),
            })?;
        let now = Instant::now();
        let refresh = lookup
            .valid_until()
            .saturating_duration_since(now)
            .max(MIN_DNS_REFRESH);
        Ok((pick, now + refresh))
    }
}

/// How long to wait before retrying a failed lookup.
pub fn retry_delay() -> Duration {
    DNS_RETRY
}
