//! The tun device through `tun-rs`: created with the node's overlay addresses and MTU, removed
//! by the kernel when the last descriptor closes (so even SIGKILL leaves no device behind).
//!
//! Opened with offloads (a virtio-net header on every read and write): the kernel hands us TCP
//! super-packets of up to 64 KiB (TSO) that `recv_multiple` splits into MTU-sized segments, and
//! takes coalesced ones back (`send_multiple` with a `GROTable`), so a burst crosses the tun
//! device in a few system calls. Where the kernel refuses offloads the device opens without them;
//! the same batch calls then carry one packet each.
//!
//! Opened multi-queue where the kernel allows it, so that [`crate::io::tun_lanes`] can add a
//! queue for small packets; with one queue attached, that changes nothing.
//!
//! The descriptor is non-blocking and driven by the data-path threads (reads until
//! `WouldBlock`, then `poll`), not by the async runtime.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use tun_rs::{DeviceBuilder, DeviceImpl, GROTable, SyncDevice};

/// What the data-path loops need of one queue of the tun device: batched, non-blocking reads
/// and writes, and a descriptor to wait on. [`SyncDevice`] is the real one; the loops are
/// generic over it (no dynamic dispatch on the data path), so a unit test can run them over an
/// in-memory device (`crate::testing`).
pub trait Tun: Send + Sync {
    /// Reads what is queued without waiting (`WouldBlock` when nothing is): one packet, or one
    /// super-packet split into segments, into `bufs[i][offset..]`, `sizes[i]` bytes each;
    /// returns how many. `original` is room for the whole read. `ErrorKind::Other`: a malformed
    /// super-packet, skipped.
    fn recv_multiple(
        &self,
        original: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize>;
    /// Writes the packets in `bufs`, each after `offset` bytes of headroom (for the driver's
    /// header), coalescing what `gro` can.
    fn send_multiple(
        &self,
        gro: &mut GROTable,
        bufs: &mut [Vec<u8>],
        offset: usize,
    ) -> io::Result<usize>;
    /// The descriptor to wait on for readable packets.
    fn fd(&self) -> BorrowedFd<'_>;
}

impl Tun for SyncDevice {
    #[inline]
    fn recv_multiple(
        &self,
        original: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        DeviceImpl::recv_multiple(self, original, bufs, sizes, offset)
    }
    #[inline]
    fn send_multiple(
        &self,
        gro: &mut GROTable,
        bufs: &mut [Vec<u8>],
        offset: usize,
    ) -> io::Result<usize> {
        DeviceImpl::send_multiple(self, gro, bufs, offset)
    }
    #[inline]
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

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
pub fn open(name: &str, mtu: u16, addrs: &[IpAddr]) -> Result<SyncDevice, TunError> {
    let err = |source| TunError {
        name: name.to_string(),
        source,
    };
    let build = |offload: bool, multi_queue: bool| {
        let mut builder = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .packet_information(false)
            .multi_queue(multi_queue)
            .offload(offload);
        for addr in addrs {
            builder = match addr {
                IpAddr::V4(a) => builder.ipv4(*a, 32u8, None),
                IpAddr::V6(a) => builder.ipv6(*a, 128u8),
            };
        }
        let dev = builder.build_sync()?;
        dev.set_nonblocking(true)?;
        Ok(dev)
    };
    build(true, true)
        .or_else(|e| {
            tracing::debug!(error = %e, "multi-queue tun refused; opening one queue");
            build(true, false)
        })
        .or_else(|e| {
            tracing::warn!(error = %e, "tun offloads refused; opening without them");
            build(false, false)
        })
        .map_err(err)
}
