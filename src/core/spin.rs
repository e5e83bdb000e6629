//! When the outbound thread keeps polling for an answer instead of sleeping.
//!
//! On a virtual machine an idle vCPU halts, and waking a thread there costs a halt exit on the
//! host: tens of microseconds per wake-up, several per request and reply, more than everything
//! the engine does for a small packet. After the outbound thread sends a few packets (a
//! request, not a bulk transfer), the answer usually comes back within a round trip; polling
//! the socket for it keeps the core awake and the thread that sends the answer into the tun
//! device already running. It is what the kernel's `busy_poll` does for sockets, decided here
//! per exchange:
//!
//! - only after a send of at most [`REQUEST_MAX_DATAGRAMS`] datagrams: a bulk sender's loops
//!   are busy anyway, and polling would take a core from the applications;
//! - for about twice the answer delay seen lately, within [`MIN`]–[`MAX`];
//! - only when nothing arrived for [`BUSY`]: with traffic coming in, the inbound thread is
//!   awake anyway, and a second reader would only take turns with it (a bulk receiver's ACKs
//!   are small sends too: polling after them cost 7 % of its throughput);
//! - after [`MISSES`] polls in a row that caught nothing, only one opportunity in [`PROBE`]
//!   polls, until one catches an answer again: traffic that gets no quick answers (a one-way
//!   stream, keepalives) costs almost nothing.

use std::time::Duration;

/// Most datagrams a send may carry and still count as a request worth waiting for.
pub const REQUEST_MAX_DATAGRAMS: usize = 4;
/// Inbound traffic more recent than this means the inbound thread is busy: no polling.
pub const BUSY: Duration = Duration::from_millis(1);
/// Shortest poll: below this, a wake-up is cheaper than the poll's own system calls.
pub const MIN: Duration = Duration::from_micros(50);
/// Longest poll: a core given up for longer than this costs the applications more than a
/// wake-up would cost the answer.
pub const MAX: Duration = Duration::from_micros(400);
/// Poll length before any answer was seen: a round trip between two hosts of one region.
pub const INITIAL: Duration = Duration::from_micros(300);
/// Polls in a row without an answer before polling becomes the exception.
pub const MISSES: u32 = 4;
/// While polls miss, one opportunity in this many still polls, to notice answers coming back.
pub const PROBE: u32 = 32;

/// The adaptive state: how long answers took lately and whether polling pays.
#[derive(Debug, Clone)]
pub struct Spin {
    /// Smoothed delay from the send to the answer (exponentially weighted, 1/4 per sample).
    answer: Duration,
    misses: u32,
    skipped: u32,
}

impl Default for Spin {
    fn default() -> Self {
        Self {
            answer: INITIAL / 2,
            misses: 0,
            skipped: 0,
        }
    }
}

impl Spin {
    /// After a send of `sent` datagrams, `quiet` after the last datagram came in: how long to
    /// poll for the answer, or `None` to sleep.
    pub fn after_send(&mut self, sent: usize, quiet: Duration) -> Option<Duration> {
        if sent == 0 || sent > REQUEST_MAX_DATAGRAMS || quiet < BUSY {
            return None;
        }
        if self.misses >= MISSES {
            self.skipped += 1;
            if self.skipped < PROBE {
                return None;
            }
            self.skipped = 0;
        }
        Some((self.answer * 2).clamp(MIN, MAX))
    }

    /// The poll caught an answer `after` the send.
    pub fn caught(&mut self, after: Duration) {
        self.answer = (self.answer * 3 + after) / 4;
        self.misses = 0;
        self.skipped = 0;
    }

    /// The poll ran out without an answer.
    pub fn missed(&mut self) {
        self.misses = self.misses.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Spin {
        fn after_send_idle(&mut self, sent: usize) -> Option<Duration> {
            self.after_send(sent, Duration::from_secs(1))
        }
    }

    #[test]
    fn no_polling_while_traffic_comes_in() {
        let mut s = Spin::default();
        assert_eq!(s.after_send(1, Duration::from_micros(200)), None);
        assert_eq!(s.after_send(1, BUSY), Some(INITIAL));
    }

    #[test]
    fn a_request_polls_and_a_bulk_send_or_nothing_does_not() {
        let mut s = Spin::default();
        assert_eq!(s.after_send_idle(0), None);
        assert_eq!(s.after_send_idle(REQUEST_MAX_DATAGRAMS + 1), None);
        assert_eq!(s.after_send_idle(1), Some(INITIAL));
    }

    #[test]
    fn the_poll_follows_the_answer_delay_within_its_bounds() {
        let mut s = Spin::default();
        for _ in 0..20 {
            s.caught(Duration::from_micros(100));
        }
        let d = s.after_send_idle(1).unwrap();
        assert!(
            d > Duration::from_micros(190) && d <= Duration::from_micros(210),
            "{d:?}"
        );
        for _ in 0..20 {
            s.caught(Duration::from_micros(5));
        }
        assert_eq!(s.after_send_idle(1), Some(MIN));
        for _ in 0..20 {
            s.caught(Duration::from_millis(3));
        }
        assert_eq!(s.after_send_idle(1), Some(MAX));
    }

    #[test]
    fn polls_that_miss_become_rare_probes_until_one_catches_again() {
        let mut s = Spin::default();
        for _ in 0..MISSES {
            assert!(s.after_send_idle(1).is_some());
            s.missed();
        }
        let polled = (0..PROBE * 4)
            .filter(|_| s.after_send_idle(1).is_some())
            .count();
        assert_eq!(polled, 4);
        s.caught(Duration::from_micros(150));
        assert!(s.after_send_idle(1).is_some());
        assert!(s.after_send_idle(1).is_some());
    }
}
