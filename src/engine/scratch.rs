//! Working memory of one I/O loop, reused for every packet.

use crate::constants::MAX_DATAGRAM;

/// Per-call working memory of one I/O loop: two datagram-sized buffers, so a packet can be
/// decrypted into one and a rewritten copy (MSS clamp, control reply) built in the other
/// without allocating. Data packets are encrypted straight into the sink.
pub struct Scratch {
    pub(super) a: Vec<u8>,
    pub(super) b: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub(super) fn a_mut(&mut self) -> &mut [u8] {
        &mut self.a
    }

    pub fn new() -> Self {
        Self {
            a: vec![0; MAX_DATAGRAM],
            b: vec![0; MAX_DATAGRAM],
        }
    }
}
