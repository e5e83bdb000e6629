//! Outbound: tun → encrypt → UDP. One tun read may be a TCP super-packet (TSO), split into
//! segments; each is encrypted straight into the batch; runs of equal-size datagrams to one
//! peer leave in one `sendmsg` (UDP GSO).

use super::*;

impl Io {
    /// tun → encrypt → UDP, until [`Io::stop`]. After sending a request, polls for its answer
    /// instead of sleeping, as [`Spin`] decides.
    pub fn outbound(&self) {
        let mut w = Work::new();
        let mut spin = Spin::default();
        while !self.stopped() {
            let mut sent = 0;
            let mut more = false;
            // small packets first, then one budget of bulk (all of it, with one queue)
            if let Some(fast) = &self.fast_tun {
                match self.read_tun(TunSource::Small(fast), &mut w, TunRead::Budget) {
                    Ok((n, m)) => (sent, more) = (n, m),
                    Err(TunGone) => return,
                }
            }
            {
                let mut reader = self.tun.reader.lock().unwrap_or_else(|e| e.into_inner());
                let until = match self.fast_tun {
                    Some(_) => TunRead::Budget,
                    None => TunRead::All,
                };
                match self.read_tun(TunSource::Bulk(&mut reader), &mut w, until) {
                    Ok((n, m)) => (sent, more) = (sent + n, more || m),
                    Err(TunGone) => return,
                }
            }
            if more {
                continue;
            }
            let quiet = since_start().saturating_sub(self.received_at.load(Ordering::Relaxed));
            if let Some(limit) = spin.after_send(sent, Duration::from_nanos(quiet)) {
                self.poll_for_answer(limit, &mut spin, &mut w);
            }
            if let Err(e) = self.wait_tun(IDLE_WAKE) {
                tracing::error!(error = %e, "tun poll failed; outbound loop stops");
                return;
            }
        }
    }

    /// Waits up to `timeout` for a packet on any queue of the tun device.
    pub(super) fn wait_tun(&self, timeout: Duration) -> std::io::Result<bool> {
        match &self.fast_tun {
            Some(fast) => ready::wait_any(&[self.tun.fd(), tun_fd(fast)], false, timeout),
            None => ready::wait(self.tun.fd(), false, timeout),
        }
    }

    /// Polls the UDP socket for up to `limit` for the answer to what was just sent, and
    /// handles it as a receive loop would. Stops early, with no verdict for [`Spin`], when the
    /// receive loop is reading already or the tun device has more to send.
    pub(super) fn poll_for_answer(&self, limit: Duration, spin: &mut Spin, w: &mut Work) {
        let start = Instant::now();
        let (lane, reader) = self.answer_lane();
        loop {
            let Ok(mut r) = reader.try_lock() else {
                return;
            };
            if self.read_udp(lane, &mut r, w) > 0 {
                spin.caught(start.elapsed());
                return;
            }
            drop(r);
            if matches!(self.wait_tun(Duration::ZERO), Ok(true)) {
                return;
            }
            if start.elapsed() >= limit {
                spin.missed();
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// Reads, encrypts and sends what the tun queue `from` holds, flushing every [`BUDGET`]
    /// datagrams, as far as `until` says. Returns how many datagrams and packets it sent, and
    /// whether it stopped with more to read.
    pub(super) fn read_tun(
        &self,
        from: TunSource<'_>,
        w: &mut Work,
        until: TunRead,
    ) -> Result<(usize, bool), TunGone> {
        let Work {
            scratch,
            batch,
            gro,
            small,
        } = w;
        let (dev, r, early_flushes) = match from {
            TunSource::Bulk(r) => (&*self.tun.dev, r, EARLY_FLUSHES),
            TunSource::Small(dev) => (dev, small, 0),
        };
        let mut sent = 0;
        let mut early = 0;
        loop {
            match dev.recv_multiple(&mut r.original, &mut r.bufs, &mut r.sizes, 0) {
                Ok(n) => {
                    let small = self.encrypt(&r.bufs, &r.sizes[..n], scratch, batch);
                    let full = batch.len() >= BUDGET;
                    if full || (!small && until == TunRead::Answers) {
                        sent += batch.len();
                        self.flush(batch, gro);
                        if until != TunRead::All {
                            return Ok((sent, true));
                        }
                    } else if small && early < early_flushes {
                        early += 1;
                        sent += batch.len();
                        self.flush(batch, gro);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if !batch.is_empty() {
                        sent += batch.len();
                        self.flush(batch, gro);
                    }
                    return Ok((sent, false));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::Other => {
                    // a malformed super-packet (bad virtio header): skip it
                    tracing::debug!(error = %e, "tun read skipped");
                }
                Err(e) => {
                    tracing::error!(error = %e, "tun read failed; outbound loop stops");
                    return Err(TunGone);
                }
            }
        }
    }

    /// Encrypts the packets into the batch; true if one of them was small (at most
    /// [`SMALL_PACKET`] bytes), which then leaves with what is batched so far instead of
    /// waiting for a full budget.
    pub(super) fn encrypt(
        &self,
        bufs: &[Vec<u8>],
        sizes: &[usize],
        scratch: &mut Scratch,
        batch: &mut Batch,
    ) -> bool {
        let mut small = false;
        // one clock read per batch of reads: the engine never reads one itself
        let now = std::time::Instant::now();
        for (buf, &len) in bufs.iter().zip(sizes) {
            small |= len <= SMALL_PACKET;
            self.device
                .handle_tun_packet(now, &buf[..len], scratch, batch);
        }
        small
    }
}
