//! The I/O loops around the engine. Each loop reads what is ready (up to a budget), lets the
//! engine decide, then flushes the batch. Nothing here decides anything about packets.
//!
//! Outbound: one tun read may be a TCP super-packet (TSO), split into segments; each is
//! encrypted straight into the batch; runs of equal-size datagrams to one peer leave in one
//! `sendmsg` (UDP GSO). Inbound: `recvmmsg` with UDP GRO; each datagram is decrypted; the
//! packets for the tun device are coalesced again (tun GRO) and written in a few calls.
//! Every buffer is allocated once per loop; the per-packet path allocates nothing.

use crate::constants::{MAX_DATAGRAM, RATE_LIMITER_RESET, TIMER_TICK};
use crate::engine::{Batch, Device, Scratch};
use crate::io::udp::{RecvMeta, Udp};
use std::io::IoSliceMut;
use std::sync::Arc;
use tun_rs::{AsyncDevice, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// Packets gathered before a flush. It bounds the wait a ping queued behind a saturating flow
/// sees: about this many encryptions (~1 µs each) and one flush.
const BUDGET: usize = 128;

/// One tun segment: room for any tun MTU up to jumbo frames.
const TUN_SEGMENT: usize = 16 * 1024;

/// UDP receive buffers per `recvmmsg`; each holds up to 64 KiB of GRO-coalesced datagrams.
const UDP_BUFFERS: usize = 8;

pub struct Io {
    pub device: Arc<Device>,
    pub tun: Arc<AsyncDevice>,
    pub udp: Arc<Udp>,
}

/// A batch whose tun packets leave room for the virtio-net header the tun driver writes.
pub fn new_batch() -> Batch {
    Batch::with_headroom(VIRTIO_NET_HDR_LEN)
}

impl Io {
    /// Sends the batch's datagrams (GSO runs), then writes its tun packets (coalesced), and
    /// empties it.
    pub async fn flush(&self, batch: &mut Batch, gro: &mut GROTable) {
        self.udp.send_batch(batch).await;
        if batch.tun_packets().next().is_some() {
            let offset = batch.headroom();
            if let Err(e) = self
                .tun
                .send_multiple(gro, batch.tun_buffers_mut(), offset)
                .await
            {
                tracing::debug!(error = %e, "tun write failed");
            }
        }
        batch.clear();
    }

    /// tun → encrypt → UDP.
    pub async fn outbound(self: Arc<Self>) {
        let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + 65_535];
        let mut bufs = vec![vec![0u8; TUN_SEGMENT]; IDEAL_BATCH_SIZE];
        let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
        let mut scratch = Scratch::new();
        let mut batch = new_batch();
        let mut gro = GROTable::default();
        loop {
            let n = match self
                .tun
                .recv_multiple(&mut original, &mut bufs, &mut sizes, 0)
                .await
            {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Other => {
                    // a malformed super-packet (bad virtio header): skip it
                    tracing::debug!(error = %e, "tun read skipped");
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "tun read failed; outbound loop stops");
                    return;
                }
            };
            self.encrypt(&bufs, &sizes[..n], &mut scratch, &mut batch);
            while batch.len() < BUDGET {
                match self
                    .tun
                    .try_recv_multiple(&mut original, &mut bufs, &mut sizes, 0)
                {
                    Ok(n) => self.encrypt(&bufs, &sizes[..n], &mut scratch, &mut batch),
                    Err(_) => break,
                }
            }
            self.flush(&mut batch, &mut gro).await;
        }
    }

    fn encrypt(&self, bufs: &[Vec<u8>], sizes: &[usize], scratch: &mut Scratch, batch: &mut Batch) {
        for (buf, &len) in bufs.iter().zip(sizes) {
            self.device.handle_tun_packet(&buf[..len], scratch, batch);
        }
    }

    /// UDP → decrypt → tun (or the next peer, on a hub).
    pub async fn inbound(self: Arc<Self>) {
        let mut bufs: [Vec<u8>; UDP_BUFFERS] = std::array::from_fn(|_| vec![0u8; MAX_DATAGRAM]);
        let mut meta = [RecvMeta::default(); UDP_BUFFERS];
        let mut scratch = Scratch::new();
        let mut batch = new_batch();
        let mut gro = GROTable::default();
        loop {
            let mut iovs = bufs.each_mut().map(|b| IoSliceMut::new(b));
            let n = match self.udp.recv_batch(&mut iovs, &mut meta).await {
                Ok(n) => n,
                Err(e) => {
                    // ICMP errors from the underlay surface here (ECONNREFUSED); not fatal.
                    tracing::trace!(error = %e, "udp recv error");
                    continue;
                }
            };
            self.decrypt(&iovs, &meta[..n], &mut scratch, &mut batch);
            while batch.len() < BUDGET {
                match self.udp.try_recv_batch(&mut iovs, &mut meta) {
                    Ok(n) => self.decrypt(&iovs, &meta[..n], &mut scratch, &mut batch),
                    Err(_) => break,
                }
            }
            self.flush(&mut batch, &mut gro).await;
        }
    }

    fn decrypt(
        &self,
        bufs: &[IoSliceMut<'_>],
        meta: &[RecvMeta],
        scratch: &mut Scratch,
        batch: &mut Batch,
    ) {
        for (buf, m) in bufs.iter().zip(meta) {
            let from = Udp::from_wire(m.addr);
            let stride = m.stride.max(1);
            for datagram in buf[..m.len].chunks(stride) {
                self.device.handle_datagram(from, datagram, scratch, batch);
            }
        }
    }

    /// Handshake retries, keepalives, rekeying, and the rate limiter's clock.
    pub async fn timers(self: Arc<Self>) {
        let mut scratch = Scratch::new();
        let mut batch = new_batch();
        let mut gro = GROTable::default();
        let mut tick = tokio::time::interval(TIMER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let per_reset = (RATE_LIMITER_RESET.as_millis() / TIMER_TICK.as_millis()).max(1) as u32;
        let mut n = 0u32;
        loop {
            tick.tick().await;
            self.device.tick(&mut scratch, &mut batch);
            n += 1;
            if n % per_reset == 0 {
                self.device.reset_rate_limiter();
            }
            self.flush(&mut batch, &mut gro).await;
        }
    }
}
