//! The I/O loops around the engine: one OS thread per direction ([`send`], [`receive`]), one
//! for the fast receive lane (small datagrams, [`crate::io::lanes`]) and one for the timers.
//! Each loop reads what is ready (up to a [`flush::BUDGET`]), lets the engine decide, then
//! flushes the batch. Nothing here decides anything about packets. Every buffer is allocated
//! once per loop; the per-packet path allocates nothing.
//!
//! Small packets keep apart from bulk all the way: a tun queue of their own
//! ([`crate::io::tun_lanes`]), read first; never in a GSO send with others; a receive lane and
//! a thread of their own at the peer. Traced under a saturating transfer, each place where
//! they shared a queue with bulk added up to a millisecond to a ping.
//!
//! The loops own their threads and block in `poll` on their own descriptors: the wake-up
//! lands on the thread that does the work, with no reactor thread and no task hand-off in
//! between (on two cores, those hops cost a quarter of the CPU).
//!
//! When a batch leaves and what is read next, the loops ask [`crate::core::flush`]; they are
//! generic over the tun device ([`Tun`]) and the UDP port ([`Underlay`]), monomorphised to
//! [`SyncDevice`] and [`Udp`] in the daemon and to an in-memory pair in the unit tests.
//! The engine is called in three places only: [`DataPath::encrypt`], [`DataPath::decrypt`] and
//! [`DataPath::timers`].

use crate::constants::{MAX_DATAGRAM, SMALL_PACKET, TIMER_TICK};
use crate::core::flush::{self, AfterRead, Lane, TunDrain, TunQueueKind, TunRead, UDP_BUFFERS};
use crate::core::spin::Spin;
use crate::engine::{Batch, Device, Scratch};
use crate::io::ready;
use crate::io::tun::Tun;
use crate::io::udp::{RecvMeta, Udp, Underlay};
use std::io::{ErrorKind, IoSliceMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tun_rs::{GROTable, SyncDevice, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

mod receive;
mod send;
#[cfg(test)]
mod tests;

pub use receive::UdpReader;

/// One tun segment: room for any tun MTU up to jumbo frames.
const TUN_SEGMENT: usize = 16 * 1024;

/// How often an idle loop looks at the stop flag.
const IDLE_WAKE: Duration = Duration::from_millis(200);

/// Everything the data-path loops share: the engine's device, the tun queues and the UDP port
/// it is wired to, the rights to read them, the stop flag and when datagrams last came in.
pub struct DataPath<T: Tun = SyncDevice, U: Underlay = Udp> {
    pub device: Arc<Device>,
    /// The tun device's first queue: everything, or bulk where small packets have a queue of
    /// their own. All writes go here.
    pub tun: TunQueue<T>,
    /// The queue for small outgoing packets ([`crate::io::tun_lanes`]), where there is one.
    /// Every loop reads it, each with buffers of its own and without taking turns: a thread
    /// that held the right to it and lost its core would keep an echo reply waiting (traced:
    /// up to 1.2 ms). Two readers may swap two small packets of one flow; the receiver's replay
    /// window takes that, and so do the flows small packets carry (pings, ACKs, queries).
    pub fast_tun: Option<T>,
    pub udp: Arc<U>,
    /// Set on shutdown; the loops return within [`IDLE_WAKE`].
    pub stop: AtomicBool,
    /// The right to read the bulk receive lane (the only one, where the kernel refuses
    /// steering), with its buffers; the inbound loop holds it while it reads. One reader at a
    /// time keeps each flow in order.
    pub udp_reader: Mutex<UdpReader>,
    /// The same for the fast lane: the fast-lane loop holds it while it reads; a loop that
    /// just sent a request takes it, when free, to poll for the answer (see
    /// [`crate::core::spin`]).
    pub fast_reader: Mutex<UdpReader>,
    /// When a datagram last came in ([`since_start`] nanoseconds), for [`Spin`].
    pub received_at: AtomicU64,
    /// When a bulk datagram last came in: while none does, the fast-lane thread reads the
    /// small tun queue too.
    pub bulk_at: AtomicU64,
}

/// One queue of the tun device, and the right to read it, with its buffers. Its own loop holds
/// the right while it reads; a receive loop takes it, when free, right after writing to the
/// tun device: what the kernel answers to what it just received (an echo reply, a TCP ACK) is
/// then already waiting, and leaves at once instead of after another thread wakes up. One
/// reader at a time keeps each flow's packets in order.
pub struct TunQueue<T: Tun = SyncDevice> {
    pub dev: Arc<T>,
    pub reader: Mutex<TunReader>,
}

impl<T: Tun> TunQueue<T> {
    pub fn new(dev: Arc<T>) -> Self {
        Self {
            dev,
            reader: Mutex::default(),
        }
    }
}

/// What one loop works with, allocated once: scratch space, the batch it fills, the tun GRO
/// table, and buffers for the small-packet tun queue.
struct Work {
    scratch: Scratch,
    batch: Batch,
    gro: GROTable,
    small: TunReader,
}

impl Work {
    fn new() -> Self {
        Self {
            scratch: Scratch::new(),
            batch: new_batch(),
            gro: GROTable::default(),
            small: TunReader::small(),
        }
    }
}

/// Time since the first call: the one origin of the loops' clock ([`DataPath::received_at`],
/// [`DataPath::bulk_at`]) and of the times [`crate::core::flush`] compares.
fn since_start() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// A time [`stamp`]ed into an atomic.
fn at(clock: &AtomicU64) -> Duration {
    Duration::from_nanos(clock.load(Ordering::Relaxed))
}

/// Stores `now` ([`since_start`]) in an atomic, in nanoseconds.
fn stamp(clock: &AtomicU64, now: Duration) {
    clock.store(now.as_nanos() as u64, Ordering::Relaxed);
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

impl TunReader {
    /// For the small-packet queue, which never carries a super-packet.
    fn small() -> Self {
        Self {
            original: vec![0u8; VIRTIO_NET_HDR_LEN + TUN_SEGMENT],
            bufs: vec![vec![0u8; TUN_SEGMENT]],
            sizes: vec![0usize],
        }
    }
}

/// Which tun queue a read takes packets from ([`TunQueueKind`]), with whose buffers.
enum TunSource<'a, T> {
    /// The first queue, with the buffers that come with the right to read it.
    Bulk(&'a mut TunReader),
    /// The small-packet queue, with the loop's own buffers ([`Work::small`]).
    Small(&'a T),
}

/// Why reading the tun device stopped for good.
struct TunGone;

/// A batch whose tun packets leave room for the virtio-net header the tun driver writes, and
/// room behind each for a whole coalesced super-packet: tun-rs's GRO appends a flow's next
/// segments to the first one's buffer only when its capacity holds them, so with
/// packet-sized buffers nothing coalesced and every decrypted segment cost a tun write (and
/// the kernel a packet to route or forward).
pub fn new_batch() -> Batch {
    Batch::with_tun_room(VIRTIO_NET_HDR_LEN, usize::from(u16::MAX))
}

impl<T: Tun, U: Underlay> DataPath<T, U> {
    /// The engine's `device` wired to the tun device's first queue `tun`, its small-packet
    /// queue `fast_tun` where there is one, and the UDP port `udp`; loops not yet started.
    pub fn new(device: Arc<Device>, tun: Arc<T>, fast_tun: Option<T>, udp: Arc<U>) -> Self {
        Self {
            device,
            tun: TunQueue::new(tun),
            fast_tun,
            udp,
            stop: AtomicBool::default(),
            udp_reader: Mutex::default(),
            fast_reader: Mutex::default(),
            received_at: AtomicU64::default(),
            bulk_at: AtomicU64::default(),
        }
    }

    /// Sends the batch's datagrams (GSO runs), then writes its tun packets (coalesced), and
    /// empties it.
    pub fn flush(&self, batch: &mut Batch, gro: &mut GROTable) {
        self.udp.send_batch(batch);
        if batch.tun_packets().next().is_some() {
            let offset = batch.headroom();
            if let Err(e) = self
                .tun
                .dev
                .send_multiple(gro, batch.tun_buffers_mut(), offset)
            {
                tracing::debug!(error = %e, "tun write failed");
            }
        }
        batch.clear();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Handshake retries, keepalives and rekeying, until
    /// [`DataPath::stop`].
    pub fn timers(&self) {
        let mut scratch = Scratch::new();
        let mut batch = new_batch();
        let mut gro = GROTable::default();
        while !self.stopped() {
            std::thread::sleep(TIMER_TICK);
            let (now, wall) = (std::time::Instant::now(), std::time::SystemTime::now());
            self.device.tick(now, wall, &mut scratch, &mut batch);
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
pub fn start<T, U>(io: &Arc<DataPath<T, U>>, priority: u8) -> Vec<std::thread::JoinHandle<()>>
where
    T: Tun + 'static,
    U: Underlay + 'static,
{
    let realtime = |above: u8| (priority > 0).then_some(priority + above);
    let spawn = |name: &'static str, f: fn(&DataPath<T, U>), realtime: Option<u8>| {
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
        spawn("wm-outbound", DataPath::outbound, realtime(0)),
        spawn("wm-inbound", DataPath::inbound, realtime(1)),
        spawn("wm-timers", DataPath::timers, None),
    ];
    if io.udp.has_fast_lane() {
        threads.push(spawn("wm-fastlane", DataPath::fast_lane, realtime(2)));
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
pub fn stop<T: Tun, U: Underlay>(io: &DataPath<T, U>, threads: Vec<std::thread::JoinHandle<()>>) {
    io.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
}
