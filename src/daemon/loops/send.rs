//! Outbound: tun → encrypt → UDP. One tun read may be a TCP super-packet (TSO), split into
//! segments; each is encrypted straight into the batch; runs of equal-size datagrams to one
//! peer leave in one `sendmsg` (UDP GSO).

use super::*;
use crate::core::flush::PollStep;

impl<T: Tun, U: Underlay> DataPath<T, U> {
    /// tun → encrypt → UDP, until [`DataPath::stop`]. After sending a request, polls for its
    /// answer instead of sleeping, as [`Spin`] decides.
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
                let until = flush::outbound_read(self.fast_tun.is_some());
                match self.read_tun(TunSource::Bulk(&mut reader), &mut w, until) {
                    Ok((n, m)) => (sent, more) = (sent + n, more || m),
                    Err(TunGone) => return,
                }
            }
            if more {
                continue;
            }
            let quiet = since_start().saturating_sub(at(&self.received_at));
            if let Some(limit) = spin.after_send(sent, quiet) {
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
            Some(fast) => ready::wait_any(&[self.tun.dev.fd(), fast.fd()], false, timeout),
            None => ready::wait(self.tun.dev.fd(), false, timeout),
        }
    }

    /// Polls the UDP socket for up to `limit` for the answer to what was just sent, and
    /// handles it as a receive loop would. Stops early, with no verdict for [`Spin`], when the
    /// receive loop is reading already or, as [`flush::poll_step`] says, the tun device has
    /// more to send.
    pub(super) fn poll_for_answer(&self, limit: Duration, spin: &mut Spin, w: &mut Work) {
        let start = Instant::now();
        let (lane, reader) = self.answer_lane();
        loop {
            let Ok(mut r) = reader.try_lock() else {
                return;
            };
            let got = self.read_udp(lane, &mut r, w);
            drop(r);
            let tun_waiting = || matches!(self.wait_tun(Duration::ZERO), Ok(true));
            let elapsed = start.elapsed();
            match flush::poll_step(got, tun_waiting, elapsed, limit) {
                PollStep::Caught => return spin.caught(elapsed),
                PollStep::GiveWay => return,
                PollStep::Missed => return spin.missed(),
                PollStep::Again => std::hint::spin_loop(),
            }
        }
    }

    /// Reads, encrypts and sends what the tun queue `from` holds, flushing as [`TunDrain`]
    /// says, as far as `until` says. Returns how many datagrams and packets it sent, and
    /// whether it stopped with more to read.
    pub(super) fn read_tun(
        &self,
        from: TunSource<'_, T>,
        w: &mut Work,
        until: TunRead,
    ) -> Result<(usize, bool), TunGone> {
        let Work {
            scratch,
            batch,
            gro,
            small,
        } = w;
        let (dev, r, queue) = match from {
            TunSource::Bulk(r) => (&*self.tun.dev, r, TunQueueKind::Bulk),
            TunSource::Small(dev) => (dev, small, TunQueueKind::Small),
        };
        let mut drain = TunDrain::new(queue, until);
        let mut sent = 0;
        loop {
            match dev.recv_multiple(&mut r.original, &mut r.bufs, &mut r.sizes, 0) {
                Ok(n) => {
                    let small = self.encrypt(&r.bufs, &r.sizes[..n], scratch, batch);
                    match drain.after_read(batch.len(), small) {
                        AfterRead::Gather => {}
                        AfterRead::Flush => {
                            sent += batch.len();
                            self.flush(batch, gro);
                        }
                        AfterRead::FlushAndReturn => {
                            sent += batch.len();
                            self.flush(batch, gro);
                            return Ok((sent, true));
                        }
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
