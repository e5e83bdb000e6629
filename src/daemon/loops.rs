//! The I/O loops around the engine. Each loop reads what is ready (up to a batch), lets the
//! engine decide, then flushes the batch. Nothing here decides anything about packets.

use crate::constants::{RATE_LIMITER_RESET, TIMER_TICK};
use crate::engine::{Batch, Device, Scratch};
use crate::io::udp::Udp;
use std::sync::Arc;
use tun_rs::AsyncDevice;

/// Packets drained per wake-up before flushing; bounds the latency a burst adds to a ping.
const BATCH: usize = 64;

pub struct Io {
    pub device: Arc<Device>,
    pub tun: Arc<AsyncDevice>,
    pub udp: Arc<Udp>,
}

impl Io {
    pub async fn flush(&self, batch: &mut Batch) {
        for (to, d) in batch.datagrams() {
            if let Err(e) = self.udp.send_to(d, to).await {
                tracing::debug!(%to, error = %e, "send failed");
            }
        }
        for p in batch.tun_packets() {
            if let Err(e) = self.tun.send(p).await {
                tracing::debug!(error = %e, "tun write failed");
            }
        }
        batch.clear();
    }

    /// tun → encrypt → UDP.
    pub async fn outbound(self: Arc<Self>) {
        let mut buf = vec![0u8; 65_535];
        let mut scratch = Scratch::new();
        let mut batch = Batch::new();
        loop {
            let n = match self.tun.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "tun read failed; outbound loop stops");
                    return;
                }
            };
            self.device
                .handle_tun_packet(&buf[..n], &mut scratch, &mut batch);
            for _ in 1..BATCH {
                match self.tun.try_recv(&mut buf) {
                    Ok(n) => self
                        .device
                        .handle_tun_packet(&buf[..n], &mut scratch, &mut batch),
                    Err(_) => break,
                }
            }
            self.flush(&mut batch).await;
        }
    }

    /// UDP → decrypt → tun (or the next peer, on a hub).
    pub async fn inbound(self: Arc<Self>) {
        let mut buf = vec![0u8; crate::constants::MAX_DATAGRAM];
        let mut scratch = Scratch::new();
        let mut batch = Batch::new();
        loop {
            let (n, from) = match self.udp.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from the underlay surface here (ECONNREFUSED); they are not fatal.
                    tracing::trace!(error = %e, "udp recv error");
                    continue;
                }
            };
            self.device
                .handle_datagram(from, &buf[..n], &mut scratch, &mut batch);
            for _ in 1..BATCH {
                match self.udp.try_recv_from(&mut buf) {
                    Ok((n, from)) => {
                        self.device
                            .handle_datagram(from, &buf[..n], &mut scratch, &mut batch)
                    }
                    Err(_) => break,
                }
            }
            self.flush(&mut batch).await;
        }
    }

    /// Handshake retries, keepalives, rekeying, and the rate limiter's clock.
    pub async fn timers(self: Arc<Self>) {
        let mut scratch = Scratch::new();
        let mut batch = Batch::new();
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
            self.flush(&mut batch).await;
        }
    }
}
