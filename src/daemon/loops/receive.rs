//! Inbound: UDP → decrypt → tun (or the next peer, on a hub). `recvmmsg` with UDP GRO; each
//! datagram is decrypted; the packets for the tun device are coalesced again (tun GRO) and
//! written in a few calls. Small datagrams have a lane and a thread of their own.

use super::*;

/// Buffers for one `recvmmsg` from a receive lane, and their metadata.
pub struct UdpReader {
    bufs: [Vec<u8>; UDP_BUFFERS],
    meta: [RecvMeta; UDP_BUFFERS],
    /// The most datagrams one receive buffer held in the last read: 1 from a peer that does
    /// not send with GSO, up to ~45 from one that does.
    per_buffer: usize,
}

impl Default for UdpReader {
    fn default() -> Self {
        Self {
            bufs: std::array::from_fn(|_| vec![0u8; MAX_DATAGRAM]),
            meta: [RecvMeta::default(); UDP_BUFFERS],
            per_buffer: 1,
        }
    }
}

/// How many receive buffers one `recvmmsg` may fill when `room` datagrams are left in the
/// budget and a buffer held up to `per_buffer` of them last time. With GRO one buffer holds up
/// to ~45 datagrams, and all eight would pull ~350 off the socket at once: a ping arriving on
/// the fast lane meanwhile waited for all of them to be decrypted and written (traced: 0.75 ms
/// in one stretch of the inbound thread).
fn receive_width(room: usize, per_buffer: usize) -> usize {
    (room / per_buffer.max(1)).clamp(1, UDP_BUFFERS)
}

impl Io {
    /// Where the answer to a request arrives: the fast lane, where there is one.
    pub(super) fn answer_lane(&self) -> (Lane, &Mutex<UdpReader>) {
        if self.udp.has_fast_lane() {
            (Lane::Fast, &self.fast_reader)
        } else {
            (Lane::Bulk, &self.udp_reader)
        }
    }

    /// Bulk lane: UDP → decrypt → tun (or the next peer, on a hub), until [`Io::stop`].
    pub fn inbound(&self) {
        self.receive(Lane::Bulk, &self.udp_reader);
    }

    /// Fast lane: the same for small datagrams, on a thread of its own that runs above the
    /// others, so a ping or an ACK is handled as it arrives, not after the bulk batch another
    /// thread is working through (traced: up to 0.8 ms of decrypting and tun writes between
    /// two looks at a shared lane).
    ///
    /// While no bulk arrives it also sends the small packets of the tun device's second queue,
    /// with the outbound loop: it ran last where it delivered the previous answer, which is
    /// where the next request is written, so it wakes without an interprocessor interrupt and
    /// without waking a halted core (traced: 0.05-0.5 ms on this VM). Under bulk it leaves them
    /// to the other loops, where the ACKs a receiver sends would wake it for each batch
    /// (measured: 30 % of a core), and so it does a flood of small packets, which two threads
    /// reading one at a time sent at half the rate of one that batches.
    pub fn fast_lane(&self) {
        let (Some(queue), Some(udp)) = (&self.fast_tun, self.udp.lane_fd(Lane::Fast)) else {
            return self.receive(Lane::Fast, &self.fast_reader);
        };
        let mut w = Work::new();
        let mut spin = Spin::default();
        let mut flood_until = 0;
        while !self.stopped() {
            let got = {
                let mut r = self.fast_reader.lock().unwrap_or_else(|e| e.into_inner());
                self.read_udp(Lane::Fast, &mut r, &mut w)
            };
            let now = since_start();
            let quiet = now.saturating_sub(self.bulk_at.load(Ordering::Relaxed)) > BULK_QUIET
                && now >= flood_until;
            let mut sent = 0;
            if quiet {
                match self.read_tun(TunSource::Small(queue), &mut w, TunRead::Budget) {
                    Ok((n, _)) => sent = n,
                    Err(TunGone) => return,
                }
                // a flood of small packets is the outbound loop's, batched
                if sent > INTERACTIVE {
                    flood_until = now + BULK_QUIET;
                }
                let answered = now.saturating_sub(self.received_at.load(Ordering::Relaxed));
                if let Some(limit) = spin.after_send(sent, Duration::from_nanos(answered)) {
                    self.poll_for_answer(limit, &mut spin, &mut w);
                }
            }
            if got == 0 && sent == 0 {
                let both = [udp, tun_fd(queue)];
                let fds = if quiet { &both[..] } else { &both[..1] };
                if let Err(e) = ready::wait_any(fds, false, IDLE_WAKE) {
                    tracing::error!(error = %e, "fast lane poll failed; its loop stops");
                    return;
                }
            }
        }
    }

    pub(super) fn receive(&self, lane: Lane, reader: &Mutex<UdpReader>) {
        let mut w = Work::new();
        while !self.stopped() {
            let got = {
                let mut r = reader.lock().unwrap_or_else(|e| e.into_inner());
                self.read_udp(lane, &mut r, &mut w)
            };
            if got == 0 {
                if let Err(e) = self.udp.wait_lane(lane, IDLE_WAKE) {
                    tracing::error!(error = %e, ?lane, "udp poll failed; receive loop stops");
                    return;
                }
            }
        }
    }

    /// Receives and decrypts up to one [`BUDGET`] of datagrams from `lane` and delivers them;
    /// the fast lane delivers what each `recvmmsg` brought at once. Returns how many receive
    /// buffers were filled (0: the lane was empty).
    pub(super) fn read_udp(&self, lane: Lane, r: &mut UdpReader, w: &mut Work) -> usize {
        let mut got = 0;
        while w.batch.len() < BUDGET {
            let width = receive_width(BUDGET - w.batch.len(), r.per_buffer);
            let mut iovs = r.bufs.each_mut().map(|b| IoSliceMut::new(b));
            let (iovs, meta) = (&mut iovs[..width], &mut r.meta[..width]);
            match self.udp.try_recv(lane, iovs, meta) {
                Ok(n) => {
                    got += n;
                    r.per_buffer = meta[..n]
                        .iter()
                        .map(|m| m.len.div_ceil(m.stride.max(1)))
                        .max()
                        .unwrap_or(1);
                    let now = Instant::now();
                    self.decrypt(now, iovs, &meta[..n], &mut w.scratch, &mut w.batch);
                    if lane == Lane::Fast {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors from the underlay surface here (ECONNREFUSED); not fatal
                    tracing::trace!(error = %e, "udp recv error");
                    got += 1;
                    break;
                }
            }
        }
        if got > 0 {
            let now = since_start();
            self.received_at.store(now, Ordering::Relaxed);
            if lane == Lane::Bulk {
                self.bulk_at.store(now, Ordering::Relaxed);
            }
        }
        self.deliver(lane, w);
        got
    }

    /// Flushes the batch; then, if it wrote to the tun device, sends what the kernel answered
    /// meanwhile: the small-packet queue where there is one (an echo reply, ACKs); then, unless
    /// the outbound loop is at it already, the first queue, as far as [`TunRead`] allows the
    /// lane (bulk is the outbound loop's work).
    pub(super) fn deliver(&self, lane: Lane, w: &mut Work) {
        if w.batch.is_empty() {
            return;
        }
        let wrote = w.batch.tun_packets().next().is_some();
        self.flush(&mut w.batch, &mut w.gro);
        if !wrote {
            return;
        }
        if let Some(fast) = &self.fast_tun {
            let _ = self.read_tun(TunSource::Small(fast), w, TunRead::Budget);
        }
        let until = match (lane, &self.fast_tun) {
            (Lane::Bulk, _) => TunRead::Budget,
            (Lane::Fast, None) => TunRead::Answers,
            (Lane::Fast, Some(_)) => return,
        };
        if let Ok(mut reader) = self.tun.reader.try_lock() {
            let _ = self.read_tun(TunSource::Bulk(&mut reader), w, until);
        }
    }

    /// Hands each datagram to the engine; `now` (one clock read per receive call) times the
    /// admission of handshakes and control messages.
    pub(super) fn decrypt(
        &self,
        now: Instant,
        bufs: &[IoSliceMut<'_>],
        meta: &[RecvMeta],
        scratch: &mut Scratch,
        batch: &mut Batch,
    ) {
        for (buf, m) in bufs.iter().zip(meta) {
            let from = Udp::from_wire(m.addr);
            let stride = m.stride.max(1);
            for datagram in buf[..m.len].chunks(stride) {
                self.device
                    .handle_datagram(now, from, datagram, scratch, batch);
            }
        }
    }

    /// Handles what reached the socket before the loops started: initiations from peers that
    /// came up first. Answering them before sending our own first initiations means each such
    /// pair does one handshake, not two crossing ones.
    pub fn drain_early(&self) {
        let mut r = self.udp_reader.lock().unwrap_or_else(|e| e.into_inner());
        let UdpReader { bufs, meta, .. } = &mut *r;
        let mut scratch = Scratch::new();
        let mut batch = new_batch();
        let mut gro = GROTable::default();
        // bounded: peers keep sending while this runs
        for _ in 0..64 {
            let mut iovs = bufs.each_mut().map(|b| IoSliceMut::new(b));
            match self.udp.try_recv_batch(&mut iovs, meta) {
                Ok(n) => self.decrypt(Instant::now(), &iovs, &meta[..n], &mut scratch, &mut batch),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // an ICMP error queued on the socket: the next read goes on
                Err(_) => continue,
            }
            self.flush(&mut batch, &mut gro);
        }
        self.flush(&mut batch, &mut gro);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_takes_about_one_budget_of_coalesced_datagrams() {
        // no GRO: all buffers; GRO (~45 per buffer): one, then as many as fit the rest
        assert_eq!(receive_width(BUDGET, 1), UDP_BUFFERS);
        assert_eq!(receive_width(BUDGET, 45), 1);
        assert_eq!(receive_width(10, 45), 1);
        assert_eq!(receive_width(BUDGET, 16), 4);
        assert_eq!(receive_width(BUDGET, 0), UDP_BUFFERS);
    }
}
