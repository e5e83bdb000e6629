//! Where the engine puts packets it wants sent.

use std::net::SocketAddr;
use std::ops::Range;

/// Receives the engine's output. Implementations copy what they need: the slices point into
/// the engine's scratch buffers and are reused right after the call.
pub trait Sink {
    /// A datagram for the underlay.
    fn send(&mut self, to: SocketAddr, datagram: &[u8]);
    /// An IP packet for the local tun device.
    fn write_tun(&mut self, packet: &[u8]);
}

/// A sink that gathers packets into one arena until the I/O loop flushes them.
#[derive(Debug, Default)]
pub struct Batch {
    arena: Vec<u8>,
    net: Vec<(SocketAddr, Range<usize>)>,
    tun: Vec<Range<usize>>,
}

impl Batch {
    pub fn new() -> Self {
        Self {
            arena: Vec::with_capacity(256 * 1024),
            ..Self::default()
        }
    }

    fn push(&mut self, data: &[u8]) -> Range<usize> {
        let start = self.arena.len();
        self.arena.extend_from_slice(data);
        start..self.arena.len()
    }

    pub fn is_empty(&self) -> bool {
        self.net.is_empty() && self.tun.is_empty()
    }

    /// Datagrams for the underlay, in the order they were produced.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.net.iter().map(|(a, r)| (*a, &self.arena[r.clone()]))
    }

    /// Packets for the tun device, in the order they were produced.
    pub fn tun_packets(&self) -> impl Iterator<Item = &[u8]> {
        self.tun.iter().map(|r| &self.arena[r.clone()])
    }

    /// Empties the batch, keeping its allocation.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.net.clear();
        self.tun.clear();
    }
}

impl Sink for Batch {
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) {
        let r = self.push(datagram);
        self.net.push((to, r));
    }

    fn write_tun(&mut self, packet: &[u8]) {
        let r = self.push(packet);
        self.tun.push(r);
    }
}
