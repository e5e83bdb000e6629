//! Working memory of one I/O loop, reused for every packet.

use super::firewall::PolicyView;
use crate::constants::MAX_DATAGRAM;

/// Per-call working memory of one I/O loop: two datagram-sized buffers, so a packet can be
/// decrypted into one and a rewritten copy (MSS clamp, control reply) built in the other
/// without allocating. Data packets are encrypted straight into the sink.
pub struct Scratch {
    /// The packet being worked on: a decrypted inner packet, or a datagram a timer builds.
    pub(super) packet: Vec<u8>,
    /// Room for a second packet made while `packet` is still in use.
    pub(super) spare: Vec<u8>,
    /// The network policy this loop judges with.
    pub(super) policy: PolicyView,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub(super) fn packet_mut(&mut self) -> &mut [u8] {
        &mut self.packet
    }

    pub fn new() -> Self {
        Self {
            packet: vec![0; MAX_DATAGRAM],
            spare: vec![0; MAX_DATAGRAM],
            policy: PolicyView::default(),
        }
    }
}
