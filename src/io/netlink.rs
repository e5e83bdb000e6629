//! Routes over rtnetlink: each destination node's pod CIDR into the tun device, tagged with
//! wiremesh's route protocol number so that only our own routes are ever replaced or removed.

use crate::constants::ROUTE_PROTOCOL;
use futures::stream::{self, StreamExt};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{RouteAttribute, RouteMetric, RouteProtocol, RouteScope};
use rtnetlink::{Handle, RouteMessageBuilder};
use std::net::IpAddr;

/// Route requests kept in flight at once by the `*_many` calls.
const IN_FLIGHT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("interface '{0}' not found")]
    NoLink(String),
    #[error("route {route}: {source}")]
    Route {
        route: IpNet,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("netlink: {0}")]
    Other(#[source] rtnetlink::Error),
}

/// A netlink handle bound to one interface.
#[derive(Clone)]
pub struct Routes {
    handle: Handle,
    ifindex: u32,
}

impl Routes {
    /// Opens a netlink connection (its driver task runs on the current tokio runtime).
    pub async fn for_interface(name: &str) -> Result<Routes, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        tokio::spawn(conn);
        let link = handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .map_err(|_| NetlinkError::NoLink(name.to_string()))?
            .ok_or_else(|| NetlinkError::NoLink(name.to_string()))?;
        Ok(Routes {
            handle,
            ifindex: link.header.index,
        })
    }

    fn message(&self, dest: IpNet, mtu: Option<u16>) -> netlink_packet_route::route::RouteMessage {
        let mut msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dest.network(), dest.prefix_len())
            .expect("an IpNet is always a valid prefix")
            .output_interface(self.ifindex)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .scope(RouteScope::Link)
            .build();
        if let Some(mtu) = mtu {
            msg.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(u32::from(
                    mtu,
                ))]));
        }
        msg
    }

    /// Adds or replaces the route for `dest`, optionally with a per-route MTU.
    pub async fn set(&self, dest: IpNet, mtu: Option<u16>) -> Result<(), NetlinkError> {
        self.handle
            .route()
            .add(self.message(dest, mtu))
            .replace()
            .execute()
            .await
            .map_err(|source| NetlinkError::Route {
                route: dest,
                source,
            })
    }

    /// Adds or replaces many routes, up to [`IN_FLIGHT`] requests at once on the one netlink
    /// socket: 10,000 routes one round trip at a time took most of a second.
    pub async fn set_many(&self, routes: &[(IpNet, u16)]) -> Result<(), NetlinkError> {
        stream::iter(routes)
            .map(|&(dest, mtu)| self.set(dest, Some(mtu)))
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Removes many routes, as [`set_many`](Self::set_many) adds them.
    pub async fn remove_many(&self, dests: &[IpNet]) -> Result<(), NetlinkError> {
        stream::iter(dests)
            .map(|&dest| self.remove(dest))
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Removes our route for `dest`; a route that is already gone is not an error.
    pub async fn remove(&self, dest: IpNet) -> Result<(), NetlinkError> {
        match self
            .handle
            .route()
            .del(self.message(dest, None))
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
            Err(source) => Err(NetlinkError::Route {
                route: dest,
                source,
            }),
        }
    }
}
