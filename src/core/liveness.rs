//! Whether a peer answers, judged from traffic rather than from handshake age.
//!
//! A WireGuard session outlives its peer: the keys stay valid for 180 s after the last
//! handshake, and boringtun gives a silent peer up only after 90 s of retries. Routing by
//! handshake age therefore kept sending into a killed hub for 105 s. Here a peer is judged by
//! whether it answers what we send, which takes seconds.
//!
//! States and what moves them (checked once per [`tick`](Liveness::tick)):
//! - `Up` (the start): usable. Once something sent to the peer has gone unanswered for
//!   [`PROBE_AFTER`], a probe goes out every [`PROBE_EVERY`]: an in-tunnel message every
//!   wiremesh version answers, so one-way traffic (a UDP stream) is not mistaken for a dead
//!   peer. Still unanswered after [`DOWN_AFTER`], with at least [`DOWN_PROBES`] probes out: `Down`.
//! - `Down`: not used while another carrier is usable. Probed every [`PROBE_DOWN_EVERY`];
//!   anything heard (a probe's answer, a handshake the restarted peer sends): `Returning`.
//! - `Returning`: still not preferred. Probed every [`PROBE_EVERY`]; silence for
//!   [`DOWN_AFTER`] sends it back to `Down`; answering steadily for [`RETURN_AFTER`]: `Up`,
//!   and traffic returns to it. The hold keeps a peer that answers now and then from flapping.
//!
//! The driver reports, per tick, whether anything authenticated arrived from the peer and
//! whether anything was sent to it since the last tick; time is an argument.

use std::time::{Duration, Instant};

/// Unanswered sending for this long starts probing. A request/response flow answers within an
/// RTT; one second covers any sane RTT and a lost answer or two.
pub const PROBE_AFTER: Duration = Duration::from_secs(1);
/// Interval of probes while an answer is overdue, or while a returning peer is watched.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Unanswered sending (and probing) for this long makes a peer `Down`. With the 250 ms tick the
/// data path leaves a dead hub within about 2.75 s: the failover goal is 5 s.
pub const DOWN_AFTER: Duration = Duration::from_millis(2_500);
/// Probes that must have gone unanswered before a peer is `Down`.
pub const DOWN_PROBES: u32 = 2;
/// Interval of probes to a `Down` peer, to see it return.
pub const PROBE_DOWN_EVERY: Duration = Duration::from_secs(1);
/// A returning peer must answer steadily this long before traffic moves back.
pub const RETURN_AFTER: Duration = Duration::from_secs(5);
/// The hold of a peer heard for the first time (it started `Down`, nothing to send to, and
/// has never fallen): no record of flapping to guard against, so a punched path takes traffic
/// from the relay within a second.
pub const FIRST_RETURN_AFTER: Duration = Duration::from_secs(1);

/// A peer's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Up,
    Returning,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Returning => "returning",
            Health::Down => "down",
        }
    }
}

/// What one tick concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Send a probe now.
    pub probe: bool,
    /// The health changed from the first to the second.
    pub changed: Option<(Health, Health)>,
}

/// How an overdue answer can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// A session is up and the peer answers in-tunnel probes: ask before judging.
    Probes,
    /// No session is up: the handshake is the question, and an unanswered one is a miss.
    Handshake,
    /// A session is up, but the peer answers no probes (stock WireGuard): one-way traffic and a
    /// dead peer look alike, so it is not judged.
    Unknown,
}

/// One peer's liveness (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    health: Health,
    /// When something sent (data or a probe) first went unanswered; `None` once answered.
    waiting_since: Option<Instant>,
    /// Probes sent since the peer was last heard.
    unanswered_probes: u32,
    last_probe: Option<Instant>,
    returning_since: Option<Instant>,
    downs: u64,
}

impl Liveness {
    pub fn new() -> Self {
        Self::default()
    }

    /// A peer not yet known to answer (nothing to send to): `Down` until heard from, without
    /// counting as a fall.
    pub fn starting_down() -> Self {
        Self {
            health: Health::Down,
            ..Self::default()
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// How many times the peer went `Down`.
    pub fn downs(&self) -> u64 {
        self.downs
    }

    /// One tick: `heard` is whether anything authenticated came from the peer since the last
    /// tick, `sent` whether anything was sent to it, `answers` how it can be asked.
    pub fn tick(&mut self, now: Instant, heard: bool, sent: bool, answers: Answers) -> Verdict {
        let before = self.health;
        if heard {
            self.waiting_since = None;
            self.unanswered_probes = 0;
        } else if sent && self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
        let waited = self.waiting_since.map(|t| now.saturating_duration_since(t));
        let overdue = waited.is_some_and(|w| w >= DOWN_AFTER)
            && match answers {
                Answers::Probes => self.unanswered_probes >= DOWN_PROBES,
                Answers::Handshake => true,
                Answers::Unknown => false,
            };
        let mut probe_every = None;
        match self.health {
            Health::Up => {
                if overdue {
                    self.go_down();
                } else if waited.is_some_and(|w| w >= PROBE_AFTER) {
                    probe_every = Some(PROBE_EVERY);
                }
            }
            Health::Down => {
                if heard {
                    self.health = Health::Returning;
                    self.returning_since = Some(now);
                } else {
                    probe_every = Some(PROBE_DOWN_EVERY);
                }
            }
            Health::Returning => {
                let hold = if self.downs == 0 {
                    FIRST_RETURN_AFTER
                } else {
                    RETURN_AFTER
                };
                let held = self
                    .returning_since
                    .is_some_and(|r| now.saturating_duration_since(r) >= hold);
                if overdue {
                    self.go_down();
                } else if held {
                    self.health = Health::Up;
                    self.returning_since = None;
                } else {
                    probe_every = Some(PROBE_EVERY);
                }
            }
        }
        let probe = answers == Answers::Probes
            && probe_every.is_some_and(|every| {
                self.last_probe
                    .is_none_or(|t| now.saturating_duration_since(t) >= every)
            });
        if probe {
            self.last_probe = Some(now);
            self.unanswered_probes += 1;
            self.waiting_since.get_or_insert(now);
        }
        Verdict {
            probe,
            changed: (before != self.health).then_some((before, self.health)),
        }
    }

    fn go_down(&mut self) {
        self.health = Health::Down;
        self.downs += 1;
        self.waiting_since = None;
        self.unanswered_probes = 0;
        self.returning_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(250);

    /// Runs ticks for `span`, the peer answering (or not) every tick, and traffic going out.
    /// Returns the probes sent and the time the health first changed, if it did.
    fn run(
        l: &mut Liveness,
        now: &mut Instant,
        span: Duration,
        answers: bool,
        sends: bool,
    ) -> (u32, Option<Duration>) {
        let start = *now;
        let mut probes = 0;
        let mut changed = None;
        let end = *now + span;
        while *now < end {
            *now += TICK;
            let v = l.tick(*now, answers, sends, Answers::Probes);
            probes += u32::from(v.probe);
            if v.changed.is_some() && changed.is_none() {
                changed = Some(*now - start);
            }
        }
        (probes, changed)
    }

    #[test]
    fn a_peer_that_answers_is_never_probed() {
        let mut l = Liveness::new();
        let mut now = Instant::now();
        let (probes, changed) = run(&mut l, &mut now, Duration::from_secs(60), true, true);
        assert_eq!((probes, changed, l.health()), (0, None, Health::Up));
    }

    #[test]
    fn an_idle_peer_is_neither_probed_nor_judged() {
        let mut l = Liveness::new();
        let mut now = Instant::now();
        let (probes, changed) = run(&mut l, &mut now, Duration::from_secs(600), false, false);
        assert_eq!((probes, changed, l.health()), (0, None, Health::Up));
    }

    #[test]
    fn a_silent_peer_goes_down_within_three_seconds_of_the_first_unanswered_send() {
        let mut l = Liveness::new();
        let mut now = Instant::now();
        run(&mut l, &mut now, Duration::from_secs(5), true, true);
        let (probes, changed) = run(&mut l, &mut now, Duration::from_secs(10), false, true);
        let after = changed.expect("went down");
        assert!(after <= Duration::from_secs(3), "{after:?}");
        assert!(after >= DOWN_AFTER, "{after:?}");
        assert_eq!(l.health(), Health::Down);
        assert_eq!(l.downs(), 1);
        assert!(probes >= DOWN_PROBES, "asked before judging: {probes}");
    }

    #[test]
    fn one_way_traffic_to_a_peer_that_answers_probes_keeps_it_up() {
        let mut l = Liveness::new();
        let mut now = Instant::now();
        let mut probes = 0;
        for _ in 0..400 {
            now += TICK;
            // the peer sends nothing back but the answer to a probe, one tick later
            let answered = std::mem::take(&mut probes) > 0;
            probes = u32::from(l.tick(now, answered, true, Answers::Probes).probe);
            assert_eq!(l.health(), Health::Up);
        }
    }

    #[test]
    fn a_returned_peer_is_used_again_only_after_answering_for_the_hold() {
        let mut l = Liveness::new();
        let mut now = Instant::now();
        run(&mut l, &mut now, Duration::from_secs(5), false, true);
        assert_eq!(l.health(), Health::Down);
        // while down, nothing is sent to it but probes, once a second
        let (probes, _) = run(&mut l, &mut now, Duration::from_secs(10), false, false);
        assert!((9..=11).contains(&probes), "{probes}");
        now += TICK;
        let v = l.tick(now, true, false, Answers::Probes);
        assert_eq!(v.changed, Some((Health::Down, Health::Returning)));
        let (_, changed) = run(&mut l, &mut now, Duration::from_secs(10), true, false);
        let back = changed.expect("up again");
        assert!(
            back + TICK >= RETURN_AFTER && back <= RETURN_AFTER + TICK,
            "{back:?}"
        );
        assert_eq!(l.health(), Health::Up);
    }

    #[test]
    fn a_peer_that_answers_once_and_falls_silent_again_does_not_flap() {
        let mut l = Liveness::new();
        let mut now = Instant::now();
        run(&mut l, &mut now, Duration::from_secs(5), false, true);
        for _ in 0..5 {
            now += TICK;
            l.tick(now, true, false, Answers::Probes);
            assert_eq!(l.health(), Health::Returning);
            let (_, changed) = run(&mut l, &mut now, Duration::from_secs(4), false, false);
            assert!(changed.is_some());
            assert_eq!(l.health(), Health::Down, "never back to Up");
        }
        assert_eq!(l.downs(), 6);
    }

    #[test]
    fn an_unanswered_handshake_is_a_miss_without_probes() {
        let mut l = Liveness::new();
        let t0 = Instant::now();
        let mut now = t0;
        let mut went_down = None;
        while now < t0 + Duration::from_secs(5) {
            now += TICK;
            let v = l.tick(now, false, now == t0 + TICK, Answers::Handshake);
            assert!(!v.probe, "no session to probe in");
            if v.changed.is_some() {
                went_down = Some(now - t0);
            }
        }
        assert_eq!(l.health(), Health::Down);
        assert!(went_down.unwrap() <= Duration::from_secs(3));
    }

    #[test]
    fn a_peer_that_cannot_be_probed_is_not_judged_on_one_way_traffic() {
        let mut l = Liveness::new();
        let mut now = Instant::now();
        for _ in 0..400 {
            now += TICK;
            let v = l.tick(now, false, true, Answers::Unknown);
            assert_eq!(v, Verdict::default());
        }
        assert_eq!(l.health(), Health::Up);
    }
}
