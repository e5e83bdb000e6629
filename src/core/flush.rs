//! When a batch leaves: the flush and budget rules of the data-path loops
//! (`daemon/loops`), kept apart from the system calls so each rule has a table test.
//!
//! The loops read what is ready, let the engine fill a batch, and flush it. These rules decide
//! how much they gather first and what they read next; every one of them came out of a trace
//! of a ping behind a saturating flow (see `docs/ARCHITECTURE.md`, "Offloads and batching"):
//!
//! - **Budget.** A batch leaves at [`BUDGET`] packets, so a loop looks at the fast lane again
//!   after about that many decryptions; a receive takes about one budget
//!   ([`receive_width`]), the fast lane one `recvmmsg` at a time.
//! - **Early flushes.** A bulk tun read that brings a small packet sends the batch at once, at
//!   most [`EARLY_FLUSHES`] times per call ([`TunDrain`]); the small-packet queue never does.
//! - **How far a tun queue is read** ([`TunRead`]): to the end (the outbound loop with one
//!   queue), one budget (the outbound loop with two, the inbound loop), or while answers come
//!   (the fast lane).
//! - **After a delivery** ([`after_delivery`]): which tun queue a receive loop reads for the
//!   kernel's answers.
//! - **Small-packet lane** ([`SmallQueue`]): the fast-lane thread sends the small tun queue only
//!   while no bulk arrives and no flood of small packets is under way.
//! - **Answer polling** ([`poll_step`]): when a poll for an answer ends, and with what verdict
//!   for [`crate::core::spin::Spin`].
//!
//! Nothing here reads a clock: times are offsets from one origin, passed in.

use crate::core::spin::REQUEST_MAX_DATAGRAMS;
use std::time::Duration;

/// Packets gathered before a flush. It bounds how long a loop works before it looks at the
/// fast lane again, so the wait of a ping that arrives behind a saturating flow: about this
/// many decryptions (~1 µs each) and one tun write, in which the kernel's TCP receive path runs.
/// Same-run A/B against 128: ping under load p99 1.36 against 1.52 ms (within the rounds'
/// spread), throughput equal.
pub const BUDGET: usize = 64;

/// Early flushes for small packets per bulk tun read: beyond this (a flood of small packets)
/// they are batched like the rest.
pub const EARLY_FLUSHES: usize = 8;

/// UDP receive buffers per `recvmmsg`; each holds up to 64 KiB of GRO-coalesced datagrams.
pub const UDP_BUFFERS: usize = 8;

/// Time without a bulk datagram after which the fast-lane thread reads the small tun queue
/// too; also how long it leaves that queue alone after a flood.
pub const BULK_QUIET: Duration = Duration::from_millis(1);

/// One of the port's receive sockets: small datagrams (handshakes, keepalives, pings, ACKs)
/// have a lane of their own, read by a thread of its own, so they never queue behind bulk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Everything larger than [`crate::io::lanes::SMALL`]; everything, where there is one lane.
    Bulk,
    /// Datagrams of at most [`crate::io::lanes::SMALL`] bytes.
    Fast,
}

/// Which queue of the tun device a read takes packets from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunQueueKind {
    /// The first queue: everything, or bulk where small packets have a queue of their own.
    Bulk,
    /// The small-packet queue ([`crate::io::tun_lanes`]). It holds small packets only: they
    /// leave when it runs dry (at once for a lone ping), and a flood of them is batched, with
    /// no early flushes (those halved a 100-byte UDP flood's rate).
    Small,
}

/// How much of a tun queue one call reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunRead {
    /// Until it is empty: the outbound loop, where the device has one queue.
    All,
    /// One budget at most: the outbound loop with two queues, and the inbound loop, for the
    /// kernel's answers to what it delivered. A bulk sender's tun never runs dry, and that is
    /// the outbound loop's work.
    Budget,
    /// Until a read brings no small packet: the fast lane, which must be back at its socket
    /// soon. An echo reply or an ACK leaves at once; bulk, after the one read that found it, is
    /// left to the outbound loop.
    Answers,
}

/// How many receive buffers the next `recvmmsg` from `lane` may fill, with `batched` packets
/// in the batch, after `reads` receives in this call, when a buffer held up to `per_buffer`
/// datagrams last time; `None`: the batch leaves first.
///
/// With GRO one buffer holds up to ~45 datagrams, and all eight would pull ~350 off the socket
/// at once: a ping arriving on the fast lane meanwhile waited for all of them to be decrypted
/// and written (traced: 0.75 ms in one stretch of the inbound thread). The fast lane delivers
/// what each `recvmmsg` brought at once.
pub fn receive_width(lane: Lane, batched: usize, reads: usize, per_buffer: usize) -> Option<usize> {
    if batched >= BUDGET || (lane == Lane::Fast && reads > 0) {
        return None;
    }
    Some(((BUDGET - batched) / per_buffer.max(1)).clamp(1, UDP_BUFFERS))
}

/// The outbound loop's read of the first tun queue: all of it where it is the only queue, one
/// budget where small packets wait in a queue of their own, read before each budget.
pub fn outbound_read(small_queue: bool) -> TunRead {
    if small_queue {
        TunRead::Budget
    } else {
        TunRead::All
    }
}

/// After a receive loop wrote packets to the tun device, how far it reads the first tun queue
/// for the kernel's answers (when no other loop holds it); `None`: not at all. The small
/// queue, where there is one, is read first, one budget, by every lane.
pub fn after_delivery(lane: Lane, small_queue: bool) -> Option<TunRead> {
    match (lane, small_queue) {
        (Lane::Bulk, _) => Some(TunRead::Budget),
        (Lane::Fast, false) => Some(TunRead::Answers),
        // the small queue held the answers; bulk is the outbound loop's
        (Lane::Fast, true) => None,
    }
}

/// What a tun-reading loop does after one read has been encrypted into the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRead {
    /// Read on, the batch kept.
    Gather,
    /// Send the batch, then read on.
    Flush,
    /// Send the batch and return: more is waiting, for the next turn.
    FlushAndReturn,
}

/// The flush rules of one call that reads a tun queue, as far as [`TunRead`] says. When the
/// queue runs dry the batch leaves, whatever it holds.
#[derive(Debug, Clone)]
pub struct TunDrain {
    until: TunRead,
    early_left: usize,
}

impl TunDrain {
    pub fn new(queue: TunQueueKind, until: TunRead) -> Self {
        let early_left = match queue {
            TunQueueKind::Bulk => EARLY_FLUSHES,
            TunQueueKind::Small => 0,
        };
        Self { until, early_left }
    }

    /// After a read left `batched` packets in the batch, `small` if one of the packets read was
    /// small (at most [`crate::constants::SMALL_PACKET`] bytes).
    pub fn after_read(&mut self, batched: usize, small: bool) -> AfterRead {
        let full = batched >= BUDGET;
        if full || (!small && self.until == TunRead::Answers) {
            if self.until == TunRead::All {
                AfterRead::Flush
            } else {
                AfterRead::FlushAndReturn
            }
        } else if small && self.early_left > 0 {
            self.early_left -= 1;
            AfterRead::Flush
        } else {
            AfterRead::Gather
        }
    }
}

/// When the fast-lane thread sends the small tun queue's packets too: while no bulk datagram
/// arrived for [`BULK_QUIET`] and no flood of small packets (more than
/// [`REQUEST_MAX_DATAGRAMS`] in one read) was seen within as long. Under bulk, a receiver's ACKs would
/// wake it for each batch (measured: 30 % of a core); a flood is sent faster by one thread
/// that batches than by two reading one at a time.
#[derive(Debug, Clone, Default)]
pub struct SmallQueue {
    flood_until: Duration,
}

impl SmallQueue {
    /// Whether the fast-lane thread reads the small tun queue `now`, the last bulk datagram
    /// having arrived at `bulk_at`.
    pub fn fast_lane_sends(&self, now: Duration, bulk_at: Duration) -> bool {
        now.saturating_sub(bulk_at) > BULK_QUIET && now >= self.flood_until
    }

    /// The fast-lane thread sent `sent` packets from the small queue `now`.
    pub fn sent(&mut self, now: Duration, sent: usize) {
        if sent > REQUEST_MAX_DATAGRAMS {
            self.flood_until = now + BULK_QUIET;
        }
    }
}

/// What a poll for an answer does after one try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollStep {
    /// An answer came: tell [`crate::core::spin::Spin::caught`].
    Caught,
    /// The tun device has more to send: stop, with no verdict.
    GiveWay,
    /// Time is up: tell [`crate::core::spin::Spin::missed`].
    Missed,
    /// Try again.
    Again,
}

/// After a try of a poll for an answer that received `got` datagrams, `elapsed` into a poll of
/// at most `limit`. `tun_waiting` is asked only when nothing came (it costs a system call).
pub fn poll_step(
    got: usize,
    tun_waiting: impl FnOnce() -> bool,
    elapsed: Duration,
    limit: Duration,
) -> PollStep {
    if got > 0 {
        PollStep::Caught
    } else if tun_waiting() {
        PollStep::GiveWay
    } else if elapsed >= limit {
        PollStep::Missed
    } else {
        PollStep::Again
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AfterRead::*;

    #[test]
    fn a_receive_takes_about_one_budget_of_coalesced_datagrams() {
        // (lane, batched, reads so far, datagrams per buffer last time) → buffers
        let table = [
            // no GRO: all buffers; GRO (~45 per buffer): one, then as many as fit the rest
            ((Lane::Bulk, 0, 0, 1), Some(UDP_BUFFERS)),
            ((Lane::Bulk, 0, 0, 45), Some(1)),
            ((Lane::Bulk, BUDGET - 10, 1, 45), Some(1)),
            ((Lane::Bulk, 0, 0, 16), Some(4)),
            ((Lane::Bulk, 0, 0, 0), Some(UDP_BUFFERS)),
            ((Lane::Bulk, 60, 3, 1), Some(4)),
            // a full budget leaves before the next receive
            ((Lane::Bulk, BUDGET, 2, 1), None),
            ((Lane::Bulk, BUDGET + 30, 1, 45), None),
            // the fast lane delivers what each receive brought
            ((Lane::Fast, 0, 0, 1), Some(UDP_BUFFERS)),
            ((Lane::Fast, 1, 1, 1), None),
            ((Lane::Fast, BUDGET, 0, 1), None),
        ];
        for ((lane, batched, reads, per_buffer), want) in table {
            assert_eq!(
                receive_width(lane, batched, reads, per_buffer),
                want,
                "{lane:?} batched {batched} reads {reads} per buffer {per_buffer}"
            );
        }
    }

    /// Runs `reads` (packets in the batch after each read, whether one was small) through a
    /// drain, resetting the batch at each flush as the loop does; stops at a return.
    fn drain(queue: TunQueueKind, until: TunRead, reads: &[(usize, bool)]) -> Vec<AfterRead> {
        let mut d = TunDrain::new(queue, until);
        let mut out = Vec::new();
        for &(batched, small) in reads {
            let step = d.after_read(batched, small);
            out.push(step);
            if step == FlushAndReturn {
                break;
            }
        }
        out
    }

    #[test]
    fn a_tun_batch_leaves_when_full_and_the_call_returns_unless_it_reads_all() {
        let table = [
            (TunRead::All, vec![Gather, Flush, Gather, Flush]),
            (TunRead::Budget, vec![Gather, FlushAndReturn]),
            (TunRead::Answers, vec![FlushAndReturn]),
        ];
        for (until, want) in table {
            let reads = [
                (40, false),
                (BUDGET, false),
                (30, false),
                (BUDGET + 20, false),
            ];
            assert_eq!(drain(TunQueueKind::Bulk, until, &reads), want, "{until:?}");
        }
    }

    #[test]
    fn a_small_packet_flushes_early_at_most_eight_times_per_bulk_read() {
        let reads = vec![(2, true); EARLY_FLUSHES + 3];
        let mut want = vec![Flush; EARLY_FLUSHES];
        want.extend([Gather; 3]);
        assert_eq!(drain(TunQueueKind::Bulk, TunRead::All, &reads), want);
        // bulk reads in between neither flush nor use up the early flushes
        let mixed = [(30, false), (31, true), (20, false), (21, true)];
        assert_eq!(
            drain(TunQueueKind::Bulk, TunRead::Budget, &mixed),
            vec![Gather, Flush, Gather, Flush]
        );
    }

    #[test]
    fn the_small_queue_batches_a_flood_with_no_early_flush() {
        let reads: Vec<_> = (1..=BUDGET).map(|n| (n, true)).collect();
        let mut want = vec![Gather; BUDGET - 1];
        want.push(FlushAndReturn);
        assert_eq!(drain(TunQueueKind::Small, TunRead::Budget, &reads), want);
    }

    #[test]
    fn reading_for_answers_stops_at_the_first_read_without_a_small_packet() {
        let reads = [(1, true), (1, true), (5, false), (1, true)];
        assert_eq!(
            drain(TunQueueKind::Bulk, TunRead::Answers, &reads),
            vec![Flush, Flush, FlushAndReturn]
        );
    }

    #[test]
    fn the_outbound_loop_reads_one_budget_of_bulk_only_when_small_packets_wait_apart() {
        assert_eq!(outbound_read(true), TunRead::Budget);
        assert_eq!(outbound_read(false), TunRead::All);
    }

    #[test]
    fn after_a_delivery_each_lane_reads_the_kernels_answers_as_far_as_its_rule_says() {
        let table = [
            ((Lane::Bulk, true), Some(TunRead::Budget)),
            ((Lane::Bulk, false), Some(TunRead::Budget)),
            ((Lane::Fast, false), Some(TunRead::Answers)),
            ((Lane::Fast, true), None),
        ];
        for ((lane, small_queue), want) in table {
            assert_eq!(
                after_delivery(lane, small_queue),
                want,
                "{lane:?} {small_queue}"
            );
        }
    }

    #[test]
    fn the_fast_lane_sends_small_packets_only_while_bulk_and_floods_keep_away() {
        let ms = Duration::from_millis;
        let mut q = SmallQueue::default();
        // (now, last bulk) → sends
        let table = [
            ((ms(10), ms(10)), false),
            ((ms(10), ms(9)), false),
            ((ms(10), ms(8)), true),
            ((ms(10), Duration::ZERO), true),
        ];
        for ((now, bulk_at), want) in table {
            assert_eq!(q.fast_lane_sends(now, bulk_at), want, "{now:?} {bulk_at:?}");
        }
        // requests keep it sending; a flood hands the queue to the other loops for a while
        q.sent(ms(10), REQUEST_MAX_DATAGRAMS);
        assert!(q.fast_lane_sends(ms(10), Duration::ZERO));
        q.sent(ms(10), REQUEST_MAX_DATAGRAMS + 1);
        assert!(!q.fast_lane_sends(ms(10), Duration::ZERO));
        assert!(!q.fast_lane_sends(ms(10) + BULK_QUIET / 2, Duration::ZERO));
        assert!(q.fast_lane_sends(ms(10) + BULK_QUIET, Duration::ZERO));
    }

    #[test]
    fn a_poll_for_an_answer_ends_caught_giving_way_or_missed() {
        let us = Duration::from_micros;
        // (got, tun waiting, elapsed) with a 300 µs limit → step
        let table = [
            ((1, true, us(10)), PollStep::Caught),
            ((3, false, us(400)), PollStep::Caught),
            ((0, true, us(10)), PollStep::GiveWay),
            ((0, true, us(400)), PollStep::GiveWay),
            ((0, false, us(300)), PollStep::Missed),
            ((0, false, us(299)), PollStep::Again),
        ];
        for ((got, waiting, elapsed), want) in table {
            assert_eq!(
                poll_step(got, || waiting, elapsed, us(300)),
                want,
                "got {got} waiting {waiting} at {elapsed:?}"
            );
        }
        // the tun device is not asked once an answer came
        assert_eq!(
            poll_step(1, || unreachable!(), us(1), us(300)),
            PollStep::Caught
        );
    }
}
