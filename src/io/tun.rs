//! The tun device through `tun-rs`: created with the node's overlay addresses and MTU, removed
//! by the kernel when the last descriptor closes (so even SIGKILL leaves no device behind).

use std::io;
use std::net::IpAddr;
use tun_rs::{AsyncDevice, DeviceBuilder};

#[derive(Debug, thiserror::Error)]
#[error("cannot create tun device '{name}': {source} (needs CAP_NET_ADMIN and /dev/net/tun)")]
pub struct TunError {
    pub name: String,
    #[source]
    pub source: io::Error,
}

/// Creates and brings up `name` with each address as a host address (/32, /128): the node's
/// pod CIDR itself belongs to its container network, and other nodes' CIDRs are routed in
/// explicitly, each with its own route.
pub fn open(name: &str, mtu: u16, addrs: &[IpAddr]) -> Result<AsyncDevice, TunError> {
    let err = |source| TunError {
        name: name.to_string(),
        source,
    };
    let mut builder = DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .packet_information(false);
    for addr in addrs {
        builder = match addr {
            IpAddr::V4(a) => builder.ipv4(*a, 32u8, None),
            IpAddr::V6(a) => builder.ipv6(*a, 128u8),
        };
    }
    builder.build_async().map_err(err)
}
