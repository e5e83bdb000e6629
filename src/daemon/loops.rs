//! The I/O loops around the engine, one OS thread per direction, and one for the fast receive
//! lane (small datagrams, [`crate::io::lanes`]). Each loop reads what is ready
//! (up to a BUDGET), lets the engine decide, then flushes the batch. Nothing here decides
//! anything about packets.
//!
//! Outbound: one tun read may be a TCP super-packet (TSO), split into segments; each is
//! encrypted straight into the batch; runs of equal-size datagrams to one peer leave in one
//! `sendmsg` (UDP GSO). Inbound: `recvmmsg` with UDP GRO; each datagram is decrypted; the
//! packets for the tun device are coalesced again (tun GRO) and written in a few calls.
//! Every buffer is allocated once per loop; the per-packet path allocates nothing.
//!
//! The loops own their threads and block in `poll` on their own descriptor: the wake-up lands
//! on the thread that does the work, with no reactor thread and no task hand-off in between
//! (on two cores, those hops cost a quarter of the CPU).

use crate::constants::{MAX_DATAGRAM, RATE_LIMITER_RESET, TIMER_TICK};
use crate::core::spin::Spin;
use crate::engine::{Batch, Device, Scratch};
use crate::io::ready;
use crate::io::udp::{Lane, RecvMeta, Udp};
use std::io::{ErrorKind, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tun_rs::{GROTable, SyncDevice, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// Packets gathered before a flush. It bounds how long a loop works before it looks at the
/// fast lane again, so the wait of a ping that arrives behind a saturating flow: about this
/// many decryptions (~1 µs each) and one tun write, in which the kernel's TCP receive path runs.
/// Same-run A/B against 128: ping under load p99 1.36 against 1.52 ms (within the rounds'
/// spread), throughput equal.
const BUDGET: usize = 64;

/// Inner packets this small (a ping, an ACK, a DNS query) are sent without waiting for the rest
/// of a budget; encrypted, they take the peer's fast receive lane ([`crate::io::lanes`]).
const SMALL_PACKET: usize = crate::io::lanes::SMALL as usize - 32;

/// Early flushes for small packets per tun read: beyond this (a flood of small packets) they
/// are batched like the rest.
const EARLY_FLUSHES: usize = 8;

/// One tun segment: room for any tun MTU up to jumbo frames.
const TUN_SEGMENT: usize = 16 * 1024;

/// UDP receive buffers per `recvmmsg`; each holds up to 64 KiB of GRO-coalesced datagrams.
const UDP_BUFFERS: usize = 8;

/// How often an idle loop looks at the stop flag.
const IDLE_WAKE: Duration = Duration::from_millis(200);

pub struct Io {
    pub device: Arc<Device>,
    pub tun: Arc<SyncDevice>,
    pub udp: Arc<Udp>,
    /// Set on shutdown; the loops return within [`IDLE_WAKE`].
    pub stop: AtomicBool,
    /// The right to read the tun device, with its buffers. The outbound loop holds it while it
    /// reads; the inbound loop takes it, when free, right after writing to the tun device.
    /// What the kernel answers to what it just received (an echo reply, a TCP ACK) is then
    /// already waiting there, and leaves at once instead of after the outbound thread wakes
    /// up: one thread wake-up less per request and reply. One reader at a time keeps each
    /// flow's packets in order.
    pub reader: Mutex<TunReader>,
    /// The right to read the bulk receive lane (the only one, where the kernel refuses
    /// steering), with its buffers; the inbound loop holds it while it reads. One reader at a
    /// time keeps each flow in order.
    pub udp_reader: Mutex<UdpReader>,
    /// The same for the fast lane: the fast-lane loop holds it while it reads; the outbound
    /// loop takes it, when free, to poll for the answer to a request it just sent (see
    /// [`crate::core::spin`]).
    pub fast_reader: Mutex<UdpReader>,
    /// When a datagram last came in ([`since_start`] nanoseconds), for [`Spin`].
    pub received_at: AtomicU64,
}

/// Nanoseconds since the first call: a clock that fits an atomic.
fn since_start() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

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

/// Buffers for reading the tun device: a super-packet, and the segments it is split into.
pub struct TunReader {
    original: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
}

impl Default for TunReader {
    fn default() -> Self {
        Self {
            original: vec![0u8; VIRTIO_NET_HDR_LEN + 65_535],
            bufs: vec![vec![0u8; TUN_SEGMENT]; IDEAL_BATCH_SIZE],
            sizes: vec![0usize; IDEAL_BATCH_SIZE],
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

/// How much of the tun device's queue one call reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TunRead {
    /// Until it is empty: the outbound loop.
    All,
    /// One budget at most: the inbound loop, for the kernel's answers to what it delivered. A
    /// bulk sender's tun never runs dry, and that is the outbound loop's work.
    Budget,
    /// Until a read brings no small packet: the fast lane, which must be back at its socket
    /// soon. An echo reply or an ACK leaves at once; bulk, after the one read that found it, is
    /// left to the outbound loop.
    Answers,
}

/// Why reading the tun device stopped for good.
struct TunGone;

/// A batch whose tun packets leave room for the virtio-net header the tun driver writes.
pub fn new_batch() -> Batch {
    Batch::with_headroom(VIRTIO_NET_HDR_LEN)
}

impl Io {
    /// Sends the batch's datagrams (GSO runs), then writes its tun packets (coalesced), and
    /// empties it.
    pub fn flush(&self, batch: &mut Batch, gro: &mut GROTable) {
        self.udp.send_batch(batch);
        if batch.tun_packets().next().is_some() {
            let offset = batch.headroom();
            if let Err(e) = self.tun.send_multiple(gro, batch.tun_buffers_mut(), offset) {
                tracing::debug!(error = %e, "tun write failed");
            }
        }
        batch.clear();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn tun_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor lives as long as `self.tun`, which outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.tun.as_raw_fd()) }
    }

    /// tun → encrypt → UDP, until [`Io::stop`]. After sending a request, polls for its answer
    /// instead of sleeping, as [`Spin`] decides.
    pub fn outbound(&self) {
        let mut scratch = Scratch::new();
        let mut batch = new_batch();
        let mut gro = GROTable::default();
        let mut spin = Spin::default();
        while !self.stopped() {
            let sent = {
                let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
                match self.read_tun(
                    &mut reader,
                    &mut scratch,
                    &mut batch,
                    &mut gro,
                    TunRead::All,
                ) {
                    Ok(sent) => sent,
                    Err(TunGone) => return,
                }
            };
            let quiet = since_start().saturating_sub(self.received_at.load(Ordering::Relaxed));
            if let Some(limit) = spin.after_send(sent, Duration::from_nanos(quiet)) {
                self.poll_for_answer(limit, &mut spin, &mut scratch, &mut batch, &mut gro);
            }
            if let Err(e) = ready::wait(self.tun_fd(), false, IDLE_WAKE) {
                tracing::error!(error = %e, "tun poll failed; outbound loop stops");
                return;
            }
        }
    }

    /// Polls the UDP socket for up to `limit` for the answer to what was just sent, and
    /// handles it as the inbound loop would. Stops early, with no verdict for [`Spin`], when the
    /// inbound loop is reading already or the tun device has more to send.
    fn poll_for_answer(
        &self,
        limit: Duration,
        spin: &mut Spin,
        scratch: &mut Scratch,
        batch: &mut Batch,
        gro: &mut GROTable,
    ) {
        let start = Instant::now();
        let (lane, reader) = self.answer_lane();
        loop {
            let Ok(mut r) = reader.try_lock() else {
                return;
            };
            if self.read_udp(lane, &mut r, scratch, batch, gro) > 0 {
                spin.caught(start.elapsed());
                return;
            }
            drop(r);
            if matches!(ready::wait(self.tun_fd(), false, Duration::ZERO), Ok(true)) {
                return;
            }
            if start.elapsed() >= limit {
                spin.missed();
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// Reads, encrypts and sends what the tun device holds, flushing every [`BUDGET`]
    /// datagrams, as far as `until` says. Returns how many datagrams and packets it sent.
    fn read_tun(
        &self,
        r: &mut TunReader,
        scratch: &mut Scratch,
        batch: &mut Batch,
        gro: &mut GROTable,
        until: TunRead,
    ) -> Result<usize, TunGone> {
        let mut sent = 0;
        let mut early = 0;
        loop {
            match self
                .tun
                .recv_multiple(&mut r.original, &mut r.bufs, &mut r.sizes, 0)
            {
                Ok(n) => {
                    let small = self.encrypt(&r.bufs, &r.sizes[..n], scratch, batch);
                    let full = batch.len() >= BUDGET;
                    if full || (!small && until == TunRead::Answers) {
                        sent += batch.len();
                        self.flush(batch, gro);
                        if until != TunRead::All {
                            return Ok(sent);
                        }
                    } else if small && early < EARLY_FLUSHES {
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
                    return Ok(sent);
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
    fn encrypt(
        &self,
        bufs: &[Vec<u8>],
        sizes: &[usize],
        scratch: &mut Scratch,
        batch: &mut Batch,
    ) -> bool {
        let mut small = false;
        for (buf, &len) in bufs.iter().zip(sizes) {
            small |= len <= SMALL_PACKET;
            self.device.handle_tun_packet(&buf[..len], scratch, batch);
        }
        small
    }

    /// Where the answer to a request arrives: the fast lane, where there is one.
    fn answer_lane(&self) -> (Lane, &Mutex<UdpReader>) {
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
    /// bulk one, so a ping or an ACK is handled as it arrives, not after the bulk batch the
    /// inbound thread is working through (traced: up to 0.8 ms of decrypting and tun writes
    /// between two looks at a shared lane).
    pub fn fast_lane(&self) {
        self.receive(Lane::Fast, &self.fast_reader);
    }

    fn receive(&self, lane: Lane, reader: &Mutex<UdpReader>) {
        let mut scratch = Scratch::new();
        let mut batch = new_batch();
        let mut gro = GROTable::default();
        while !self.stopped() {
            let got = {
                let mut r = reader.lock().unwrap_or_else(|e| e.into_inner());
                self.read_udp(lane, &mut r, &mut scratch, &mut batch, &mut gro)
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
    fn read_udp(
        &self,
        lane: Lane,
        r: &mut UdpReader,
        scratch: &mut Scratch,
        batch: &mut Batch,
        gro: &mut GROTable,
    ) -> usize {
        let mut got = 0;
        while batch.len() < BUDGET {
            let width = receive_width(BUDGET - batch.len(), r.per_buffer);
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
                    self.decrypt(iovs, &meta[..n], scratch, batch);
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
            self.received_at.store(since_start(), Ordering::Relaxed);
        }
        self.deliver(lane, scratch, batch, gro);
        got
    }

    /// Flushes the batch; then, if it wrote to the tun device, sends what the kernel answered
    /// meanwhile (unless the outbound loop is at it already), as far as [`TunRead`] allows the
    /// lane.
    fn deliver(&self, lane: Lane, scratch: &mut Scratch, batch: &mut Batch, gro: &mut GROTable) {
        if batch.is_empty() {
            return;
        }
        let wrote = batch.tun_packets().next().is_some();
        self.flush(batch, gro);
        if wrote {
            if let Ok(mut reader) = self.reader.try_lock() {
                let until = match lane {
                    Lane::Bulk => TunRead::Budget,
                    Lane::Fast => TunRead::Answers,
                };
                let _ = self.read_tun(&mut reader, scratch, batch, gro, until);
            }
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
                Ok(n) => self.decrypt(&iovs, &meta[..n], &mut scratch, &mut batch),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // an ICMP error queued on the socket: the next read goes on
                Err(_) => continue,
            }
            self.flush(&mut batch, &mut gro);
        }
        self.flush(&mut batch, &mut gro);
    }

    /// Handshake retries, keepalives, rekeying, and the rate limiter's clock, until
    /// [`Io::stop`].
    pub fn timers(&self) {
        let mut scratch = Scratch::new();
        let mut batch = new_batch();
        let mut gro = GROTable::default();
        let per_reset = (RATE_LIMITER_RESET.as_millis() / TIMER_TICK.as_millis()).max(1) as u32;
        let mut n = 0u32;
        while !self.stopped() {
            std::thread::sleep(TIMER_TICK);
            self.device.tick(&mut scratch, &mut batch);
            n += 1;
            if n % per_reset == 0 {
                self.device.reset_rate_limiter();
            }
            self.flush(&mut batch, &mut gro);
        }
    }
}

/// Starts the loops on threads of their own; [`stop`] ends and joins them. The outbound loop
/// runs at real-time `priority` (0: the normal class) and the bulk inbound loop one above it:
/// a receiver kept off a core by a sender only lets a queue grow in front of it (same-run A/B:
/// ping under load p99 1.16 against 1.78 ms, throughput 0.97–1.01×). The fast lane, where the
/// port has one, runs above both: what it carries is small and waits for nothing (same-run
/// A/B: p99 0.58 against 1.43 ms, throughput 1.00–1.03×). The timers stay in the normal class,
/// since a tick over thousands of peers may run long and must not hold a core.
pub fn start(io: &Arc<Io>, priority: u8) -> Vec<std::thread::JoinHandle<()>> {
    let realtime = |above: u8| (priority > 0).then_some(priority + above);
    let spawn = |name: &'static str, f: fn(&Io), realtime: Option<u8>| {
        let io = io.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if let Some(priority) = realtime {
                    enter_realtime(name, priority);
                }
                f(&io)
            })
            .expect("spawning a data-path thread")
    };
    let mut threads = vec![
        spawn("wm-outbound", Io::outbound, realtime(0)),
        spawn("wm-inbound", Io::inbound, realtime(1)),
        spawn("wm-timers", Io::timers, None),
    ];
    if io.udp.has_fast_lane() {
        threads.push(spawn("wm-fastlane", Io::fast_lane, realtime(2)));
    }
    threads
}

fn enter_realtime(thread: &str, priority: u8) {
    match crate::io::sched::realtime(priority) {
        Ok(()) => tracing::debug!(thread, priority, "data path at real-time priority"),
        Err(e) => tracing::warn!(
            thread,
            priority,
            error = %e,
            "real-time priority refused (needs CAP_SYS_NICE); latency under load will be higher"
        ),
    }
}

/// Stops the loops and waits for them (at most one [`IDLE_WAKE`] or [`TIMER_TICK`]).
pub fn stop(io: &Io, threads: Vec<std::thread::JoinHandle<()>>) {
    io.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
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
