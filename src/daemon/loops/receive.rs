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

impl<T: Tun, U: Underlay> DataPath<T, U> {
    /// Where the answer to a request arrives: the fast lane, where there is one.
    pub(super) fn answer_lane(&self) -> (Lane, &Mutex<UdpReader>) {
        if self.udp.has_fast_lane() {
            (Lane::Fast, &self.fast_reader)
        } else {
            (Lane::Bulk, &self.udp_reader)
        }
    }

    /// Bulk lane: UDP → decrypt → tun (or the next peer, on a hub), until [`DataPath::stop`].
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
        let mut small = flush::SmallQueue::default();
        while !self.stopped() {
            let got = {
                let mut r = self.fast_reader.lock().unwrap_or_else(|e| e.into_inner());
                self.read_udp(Lane::Fast, &mut r, &mut w)
            };
            let now = since_start();
            let quiet = small.fast_lane_sends(now, at(&self.bulk_at));
            let mut sent = 0;
            if quiet {
                match self.read_tun(TunSource::Small(queue), &mut w, TunRead::Budget) {
                    Ok((n, _)) => sent = n,
                    Err(TunGone) => return,
                }
                // a flood of small packets is the outbound loop's, batched
                small.sent(now, sent);
                let answered = now.saturating_sub(at(&self.received_at));
                if let Some(limit) = spin.after_send(sent, answered) {
                    self.poll_for_answer(limit, &mut spin, &mut w);
                }
            }
            if got == 0 && sent == 0 {
                let both = [udp, queue.fd()];
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

    /// Receives and decrypts up to one [`flush::BUDGET`] of datagrams from `lane` and delivers
    /// them, as [`flush::receive_width`] says. Returns how many receive buffers were filled
    /// (0: the lane was empty).
    pub(super) fn read_udp(&self, lane: Lane, r: &mut UdpReader, w: &mut Work) -> usize {
        let mut got = 0;
        let mut reads = 0;
        while let Some(width) = flush::receive_width(lane, w.batch.len(), reads, r.per_buffer) {
            let mut iovs = r.bufs.each_mut().map(|b| IoSliceMut::new(b));
            let (iovs, meta) = (&mut iovs[..width], &mut r.meta[..width]);
            match self.udp.try_recv(lane, iovs, meta) {
                Ok(n) => {
                    got += n;
                    reads += 1;
                    r.per_buffer = meta[..n]
                        .iter()
                        .map(|m| m.len.div_ceil(m.stride.max(1)))
                        .max()
                        .unwrap_or(1);
                    let now = Instant::now();
                    self.decrypt(now, iovs, &meta[..n], &mut w.scratch, &mut w.batch);
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
            stamp(&self.received_at, now);
            if lane == Lane::Bulk {
                stamp(&self.bulk_at, now);
            }
        }
        self.deliver(lane, w);
        got
    }

    /// Flushes the batch; then, if it wrote to the tun device, sends what the kernel answered
    /// meanwhile: the small-packet queue where there is one (an echo reply, ACKs); then, unless
    /// the outbound loop is at it already, the first queue, as far as
    /// [`flush::after_delivery`] allows the lane (bulk is the outbound loop's work).
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
        let Some(until) = flush::after_delivery(lane, self.fast_tun.is_some()) else {
            return;
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
            let from = self.udp.sender(m.addr);
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
