//! Path-MTU discovery for one peer, sans-IO (after quinn's `mtud`): the caller asks what to probe
//! with [`MtuDiscovery::poll_probe`], sends a padded, authenticated probe of that outer size
//! inside the tunnel, and reports [`MtuDiscovery::on_ack`]. Time is an argument; ICMP from the
//! underlay is never consulted, because clouds drop it.
//!
//! Sizes are *outer* IP packet sizes (what the underlay must carry); the tunnel MTU is the
//! result minus WireGuard's overhead.
//!
//! States and timers:
//! - `Searching { lo, hi }`: `lo` is confirmed, `hi` is the largest size not yet ruled out.
//!   A fresh search first probes `hi` itself (most paths carry the local underlay's MTU, and
//!   then one probe settles it); then each step probes the midpoint; an ack raises `lo`, [`PROBE_ATTEMPTS`] unanswered probes
//!   (each waiting [`PROBE_TIMEOUT`]) lower `hi`. Ends when `lo == hi`.
//! - `Settled { mtu }`: every [`CONFIRM_INTERVAL`] a probe at `mtu` checks the path still carries
//!   it; if it goes unanswered the search restarts below `mtu` (the path shrank). Every
//!   [`GROW_INTERVAL`] a probe one step above checks whether the path grew.
//! - A loss signal from the data path ([`MtuDiscovery::on_suspected_shrink`]) runs the confirm
//!   probe at once instead of waiting for the interval.

use std::time::{Duration, Instant};

/// How long a probe may go unanswered before it counts as lost.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(400);
/// Unanswered probes of one size before a settled size is given up (a single loss is not a
/// limit).
pub const PROBE_ATTEMPTS: u8 = 3;
/// Unanswered probes before a size is ruled out while searching. Fewer than when settled: a
/// black hole is deterministic, and an underestimate from a random loss is undone by growth.
pub const SEARCH_ATTEMPTS: u8 = 2;
/// How often a settled path is re-checked at its current size.
pub const CONFIRM_INTERVAL: Duration = Duration::from_secs(3);
/// How often a settled path below its ceiling tries to grow.
pub const GROW_INTERVAL: Duration = Duration::from_secs(30);

/// A probe the caller must send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Identifies the probe in the peer's acknowledgement.
    pub id: u32,
    /// Outer IP packet size the probe must have on the underlay.
    pub size: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Searching {
        lo: u16,
        hi: u16,
        /// Probe `hi` before bisecting: a fresh path usually carries the local underlay's
        /// MTU, and then one probe settles it instead of eight.
        top_first: bool,
    },
    Settled {
        mtu: u16,
        next_confirm: Instant,
        next_grow: Instant,
    },
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    probe: Probe,
    sent: Instant,
    attempt: u8,
    /// Why this probe was sent, to know what its loss means.
    purpose: Purpose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Search,
    Confirm,
    Grow,
}

/// What changed, for logs and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtuEvent {
    /// The search finished or the path was re-confirmed at a new value.
    Settled { mtu: u16 },
    /// A settled size stopped getting through; searching again below it.
    Shrunk { was: u16 },
    /// A larger size got through; searching again above it.
    Grew { was: u16 },
}

#[derive(Debug, Clone)]
pub struct MtuDiscovery {
    floor: u16,
    ceiling: u16,
    phase: Phase,
    in_flight: Option<InFlight>,
    next_id: u32,
    probes_sent: u64,
    confirmed_at: Option<Instant>,
    events: Vec<MtuEvent>,
}

impl MtuDiscovery {
    /// `floor`: a size assumed to always work (1280 for IPv6 underlays, the minimum the mesh
    /// supports); `ceiling`: the local underlay's MTU. Searching starts at once.
    pub fn new(floor: u16, ceiling: u16) -> Self {
        let ceiling = ceiling.max(floor);
        Self {
            floor,
            ceiling,
            phase: Phase::Searching {
                lo: floor,
                hi: ceiling,
                top_first: true,
            },
            in_flight: None,
            next_id: 1,
            probes_sent: 0,
            confirmed_at: None,
            events: Vec::new(),
        }
    }

    /// The largest outer size known to get through (the floor until something is confirmed).
    pub fn current(&self) -> u16 {
        match self.phase {
            Phase::Searching { lo, .. } => lo,
            Phase::Settled { mtu, .. } => mtu,
        }
    }

    /// True once a search has finished at least once and no new search runs.
    pub fn is_settled(&self) -> bool {
        matches!(self.phase, Phase::Settled { .. })
    }

    /// When the current value was last confirmed by an acknowledged probe.
    pub fn confirmed_at(&self) -> Option<Instant> {
        self.confirmed_at
    }

    pub fn probes_sent(&self) -> u64 {
        self.probes_sent
    }

    /// Changes since the last call, oldest first.
    pub fn poll_event(&mut self) -> Option<MtuEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// When the caller should call [`poll_probe`](Self::poll_probe) again at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(f) = self.in_flight {
            return Some(f.sent + PROBE_TIMEOUT);
        }
        match self.phase {
            Phase::Searching { .. } => None, // wants a probe now
            Phase::Settled {
                next_confirm,
                next_grow,
                mtu,
            } => {
                if mtu < self.ceiling {
                    Some(next_confirm.min(next_grow))
                } else {
                    Some(next_confirm)
                }
            }
        }
    }

    /// The probe to send now, if any. Handles timeouts of the probe in flight.
    pub fn poll_probe(&mut self, now: Instant) -> Option<Probe> {
        if let Some(f) = self.in_flight {
            if now < f.sent + PROBE_TIMEOUT {
                return None;
            }
            let attempts = if f.purpose == Purpose::Search {
                SEARCH_ATTEMPTS
            } else {
                PROBE_ATTEMPTS
            };
            if f.attempt < attempts {
                return Some(self.send(f.probe.size, f.purpose, f.attempt + 1, now));
            }
            self.in_flight = None;
            self.on_lost(f, now);
        }
        match self.phase {
            Phase::Searching { lo, hi, top_first } => {
                if lo >= hi {
                    self.settle(lo, now);
                    return None;
                }
                let size = if top_first {
                    self.phase = Phase::Searching {
                        lo,
                        hi,
                        top_first: false,
                    };
                    hi
                } else {
                    lo + (hi - lo).div_ceil(2)
                };
                Some(self.send(size, Purpose::Search, 1, now))
            }
            Phase::Settled {
                mtu,
                next_confirm,
                next_grow,
            } => {
                if now >= next_confirm {
                    Some(self.send(mtu, Purpose::Confirm, 1, now))
                } else if mtu < self.ceiling && now >= next_grow {
                    Some(self.send(mtu + 1, Purpose::Grow, 1, now))
                } else {
                    None
                }
            }
        }
    }

    fn send(&mut self, size: u16, purpose: Purpose, attempt: u8, now: Instant) -> Probe {
        let probe = Probe {
            id: self.next_id,
            size,
        };
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.probes_sent += 1;
        self.in_flight = Some(InFlight {
            probe,
            sent: now,
            attempt,
            purpose,
        });
        probe
    }

    fn settle(&mut self, mtu: u16, now: Instant) {
        let was = self.current();
        let changed = !matches!(self.phase, Phase::Settled { mtu: m, .. } if m == mtu);
        self.phase = Phase::Settled {
            mtu,
            next_confirm: now + CONFIRM_INTERVAL,
            next_grow: now + GROW_INTERVAL,
        };
        if changed || was != mtu || self.confirmed_at.is_none() {
            self.events.push(MtuEvent::Settled { mtu });
        }
        self.confirmed_at = Some(now);
    }

    fn on_lost(&mut self, f: InFlight, now: Instant) {
        match (self.phase, f.purpose) {
            (Phase::Searching { lo, .. }, Purpose::Search) => {
                self.phase = Phase::Searching {
                    lo,
                    hi: f.probe.size - 1,
                    top_first: false,
                };
            }
            (Phase::Settled { mtu, .. }, Purpose::Confirm) => {
                self.events.push(MtuEvent::Shrunk { was: mtu });
                // it shrank to somewhere below: bisect
                self.phase = Phase::Searching {
                    lo: self.floor,
                    hi: mtu.saturating_sub(1).max(self.floor),
                    top_first: false,
                };
            }
            (
                Phase::Settled {
                    mtu, next_confirm, ..
                },
                Purpose::Grow,
            ) => {
                self.phase = Phase::Settled {
                    mtu,
                    next_confirm,
                    next_grow: now + GROW_INTERVAL,
                };
            }
            _ => {}
        }
    }

    /// The peer acknowledged probe `id`. Unknown or stale ids are ignored.
    pub fn on_ack(&mut self, id: u32, now: Instant) {
        let Some(f) = self.in_flight.filter(|f| f.probe.id == id) else {
            return;
        };
        self.in_flight = None;
        match (self.phase, f.purpose) {
            (Phase::Searching { hi, .. }, Purpose::Search) => {
                self.phase = Phase::Searching {
                    lo: f.probe.size,
                    hi,
                    top_first: false,
                };
                if f.probe.size >= hi {
                    self.settle(f.probe.size, now);
                }
            }
            (Phase::Settled { mtu, next_grow, .. }, Purpose::Confirm) => {
                self.phase = Phase::Settled {
                    mtu,
                    next_confirm: now + CONFIRM_INTERVAL,
                    next_grow,
                };
                self.confirmed_at = Some(now);
            }
            (Phase::Settled { mtu, .. }, Purpose::Grow) => {
                self.events.push(MtuEvent::Grew { was: mtu });
                // a path that grew most often grew back to the ceiling
                self.phase = Phase::Searching {
                    lo: f.probe.size,
                    hi: self.ceiling,
                    top_first: true,
                };
            }
            _ => {}
        }
    }

    /// A packet of outer `size` reached the peer outside the probe sequence (a padded hello
    /// was answered): a search that had that size still open ends or narrows without a probe.
    pub fn on_delivered(&mut self, size: u16, now: Instant) {
        let size = size.min(self.ceiling);
        match self.phase {
            Phase::Searching { lo, hi, top_first } if size > lo => {
                if self.in_flight.is_some_and(|f| f.probe.size <= size) {
                    self.in_flight = None;
                }
                if size >= hi {
                    self.settle(hi, now);
                } else {
                    self.phase = Phase::Searching {
                        lo: size,
                        hi,
                        top_first,
                    };
                }
            }
            Phase::Settled { mtu, next_grow, .. } if size == mtu => {
                self.phase = Phase::Settled {
                    mtu,
                    next_confirm: now + CONFIRM_INTERVAL,
                    next_grow,
                };
                self.confirmed_at = Some(now);
            }
            _ => {}
        }
    }

    /// A packet of outer `size` sent outside the probe sequence went unanswered (a padded
    /// hello, when a later unpadded one was answered): a search rules that size out, as it would
    /// a lost probe, and bisects from there.
    pub fn on_unanswered(&mut self, size: u16) {
        if let Phase::Searching { lo, hi, .. } = self.phase {
            if size > lo && size <= hi {
                self.phase = Phase::Searching {
                    lo,
                    hi: size - 1,
                    top_first: false,
                };
            }
        }
    }

    /// The data path saw signs of a black hole (large packets unanswered): confirm now.
    pub fn on_suspected_shrink(&mut self, now: Instant) {
        if let Phase::Settled { mtu, next_grow, .. } = self.phase {
            if self.in_flight.is_none() {
                self.phase = Phase::Settled {
                    mtu,
                    next_confirm: now,
                    next_grow,
                };
            }
        }
    }

    /// The local underlay MTU changed (interface reconfigured): search again within it.
    pub fn set_ceiling(&mut self, ceiling: u16) {
        self.ceiling = ceiling.max(self.floor);
        self.in_flight = None;
        self.phase = Phase::Searching {
            lo: self.floor,
            hi: self.ceiling,
            top_first: true,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs discovery against a simulated path that carries packets up to `limit` bytes and
    /// drops larger ones silently (a black hole: no ICMP). Returns (settled MTU, probes sent).
    fn run(d: &mut MtuDiscovery, limit: u16, start: Instant, for_time: Duration) -> Instant {
        let mut now = start;
        let end = start + for_time;
        while now < end {
            if let Some(p) = d.poll_probe(now) {
                if p.size <= limit {
                    d.on_ack(p.id, now + Duration::from_millis(1));
                }
                continue;
            }
            now = d
                .poll_timeout()
                .unwrap_or(now + Duration::from_millis(10))
                .max(now + Duration::from_millis(1));
        }
        now
    }

    #[test]
    fn settles_on_the_exact_path_limit_within_a_bounded_number_of_probes() {
        // (path limit, local underlay ceiling)
        let table = [
            (1500, 1500),
            (1460, 1500),
            (1420, 1500),
            (1400, 1500),
            (1280, 1500),
            (1380, 1500),
            (1460, 1460),
            (1400, 9000),
        ];
        for (limit, ceiling) in table {
            let mut d = MtuDiscovery::new(1280, ceiling);
            let t0 = Instant::now();
            run(&mut d, limit, t0, Duration::from_secs(10));
            assert!(d.is_settled(), "limit {limit}");
            assert_eq!(d.current(), limit, "limit {limit} ceiling {ceiling}");
            // the bisection's steps, plus the probe at the ceiling tried first
            let steps = (u32::from(ceiling - 1280) + 1).ilog2() + 2;
            let bound = u64::from(steps) * u64::from(SEARCH_ATTEMPTS);

            assert!(
                d.probes_sent() <= bound,
                "limit {limit}: {} probes > {bound}",
                d.probes_sent()
            );
        }
    }

    #[test]
    fn a_path_that_carries_the_ceiling_settles_on_the_first_probe() {
        let mut d = MtuDiscovery::new(1280, 1500);
        let now = Instant::now();
        let p = d.poll_probe(now).unwrap();
        assert_eq!(p.size, 1500);
        d.on_ack(p.id, now);
        assert!(d.is_settled());
        assert_eq!(d.poll_event(), Some(MtuEvent::Settled { mtu: 1500 }));
        assert_eq!(d.probes_sent(), 1);
    }

    #[test]
    fn a_delivered_packet_at_the_ceiling_settles_a_search_without_a_probe() {
        let mut d = MtuDiscovery::new(1280, 1500);
        let now = Instant::now();
        d.on_delivered(1500, now);
        assert!(d.is_settled());
        assert_eq!(d.current(), 1500);
        assert_eq!(d.probes_sent(), 0);
        // an unanswered one rules the ceiling out: the search bisects below it
        let mut d = MtuDiscovery::new(1280, 1500);
        d.on_unanswered(1500);
        assert_eq!(d.poll_probe(now).map(|p| p.size), Some(1390));
        // one below the ceiling only narrows the search
        let mut d = MtuDiscovery::new(1280, 1500);
        d.on_delivered(1400, now);
        assert!(!d.is_settled());
        assert_eq!(d.current(), 1400);
    }

    #[test]
    fn a_single_lost_probe_is_retried_not_taken_as_the_limit() {
        let mut d = MtuDiscovery::new(1280, 1500);
        let t0 = Instant::now();
        let first = d.poll_probe(t0).unwrap();
        // lost once, answered on retry
        let retry = d.poll_probe(t0 + PROBE_TIMEOUT).unwrap();
        assert_eq!(retry.size, first.size);
        d.on_ack(retry.id, t0 + PROBE_TIMEOUT);
        run(&mut d, 1500, t0 + PROBE_TIMEOUT, Duration::from_secs(10));
        assert_eq!(d.current(), 1500);
    }

    #[test]
    fn a_shrunk_path_is_detected_and_the_new_limit_found_within_ten_seconds() {
        let mut d = MtuDiscovery::new(1280, 1500);
        let t0 = Instant::now();
        let t1 = run(&mut d, 1500, t0, Duration::from_secs(1));
        assert_eq!(d.current(), 1500);
        while d.poll_event().is_some() {}
        let mut now = t1;
        while d.current() != 1360 || !d.is_settled() {
            now = run(&mut d, 1360, now, Duration::from_millis(100));
            assert!(
                now - t1 < Duration::from_secs(10),
                "not re-settled within 10 s"
            );
        }
        assert_eq!(d.current(), 1360);
        assert_eq!(d.poll_event(), Some(MtuEvent::Shrunk { was: 1500 }));
        assert_eq!(d.poll_event(), Some(MtuEvent::Settled { mtu: 1360 }));
    }

    #[test]
    fn a_grown_path_is_found_again() {
        let mut d = MtuDiscovery::new(1280, 1500);
        let t0 = Instant::now();
        let t1 = run(&mut d, 1400, t0, Duration::from_secs(10));
        assert_eq!(d.current(), 1400);
        run(&mut d, 1500, t1, GROW_INTERVAL + Duration::from_secs(3));
        assert_eq!(d.current(), 1500);
    }

    #[test]
    fn acks_for_unknown_probes_change_nothing() {
        let mut d = MtuDiscovery::new(1280, 1500);
        let t0 = Instant::now();
        let p = d.poll_probe(t0).unwrap();
        d.on_ack(p.id + 1000, t0);
        assert_eq!(d.current(), 1280);
        assert!(
            d.poll_probe(t0).is_none(),
            "the real probe is still in flight"
        );
    }
}
