//! The daemon's connection to the registry as a state machine, quinn-style: `handle_*` feeds it
//! what the driver saw, `poll_*` says what to do; time is an argument.
//!
//! States:
//!
//! - `Connecting`: a connection attempt is under way (`Action::Connect` was given once).
//! - `Listing`: connected; the whole prefix is to be listed at one revision (`Action::List`).
//!   Entered at the first connection, after a compacted watch (events were lost), and after a
//!   reconnection when the mirror came from the snapshot file rather than from a list.
//! - `Watching { from }`: a watch from `from` (`Action::Watch`); events update the mirror.
//! - `Backoff { until }`: the connection broke; `Action::Wait` until `until`, then `Connecting`.
//!
//! Timers: the backoff ([`REGISTRY_BACKOFF_MIN`] doubling to [`REGISTRY_BACKOFF_MAX`], the wait
//! jittered between half and all of it, so daemons cut off together do not return together), and
//! the debounce of [`Connection::poll_publish`]: the mirror is published [`REGISTRY_DEBOUNCE_QUIET`]
//! after the last change, and at most [`REGISTRY_DEBOUNCE_MAX`] after the first, so a join's
//! record, claim and presence make one plan and a churning writer at most two a second.
//!
//! Nothing here tears anything down: whatever the state, the last published snapshot stays the
//! daemon's topology (the store failing never takes the mesh down).
//!
//! Call order: feed every driver result through its `handle_*`, then call
//! [`Connection::poll_action`] and [`Connection::poll_publish`], and sleep until [`Connection::poll_timeout`] or
//! the next driver result.

use super::mirror::{Event, Mirror};
use super::{Kv, Revision, Snapshot};
use crate::constants::{
    REGISTRY_BACKOFF_MAX, REGISTRY_BACKOFF_MIN, REGISTRY_DEBOUNCE_MAX, REGISTRY_DEBOUNCE_QUIET,
};
use std::time::{Duration, Instant};

/// What the driver should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Connect,
    /// List the prefix at one revision, in pages.
    List,
    /// Watch the prefix from this revision on.
    Watch {
        from: Revision,
    },
    /// Nothing until then (or until a driver result).
    Wait {
        until: Instant,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Listing,
    Watching { from: Revision },
    Backoff { until: Instant },
}

/// Changes not yet published.
#[derive(Debug, Clone, Copy)]
struct Dirty {
    first: Instant,
    last: Instant,
    /// Published at the next poll, without waiting (a start from the snapshot file).
    urgent: bool,
}

/// The connection and the mirror it keeps.
#[derive(Debug)]
pub struct Connection {
    state: State,
    /// Whether the current state's action was given to the driver.
    issued: bool,
    mirror: Mirror,
    /// Whether the mirror's revision came from etcd in this process (not from the file): only
    /// then can a watch resume from it.
    live: bool,
    backoff: Duration,
    dirty: Option<Dirty>,
}

impl Connection {
    /// A connection that starts from nothing.
    pub fn new(prefix: &str) -> Self {
        Self::with_mirror(Mirror::new(prefix), false)
    }

    /// A connection that starts from the snapshot file's mirror: it is published at the first
    /// [`Connection::poll_publish`], so the daemon plans at once, and relisted once connected.
    pub fn from_snapshot(mirror: Mirror, now: Instant) -> Self {
        let mut s = Self::with_mirror(mirror, false);
        s.dirty = Some(Dirty {
            first: now,
            last: now,
            urgent: true,
        });
        s
    }

    fn with_mirror(mirror: Mirror, live: bool) -> Self {
        Connection {
            state: State::Connecting,
            issued: false,
            mirror,
            live,
            backoff: REGISTRY_BACKOFF_MIN,
            dirty: None,
        }
    }

    fn enter(&mut self, state: State) {
        self.state = state;
        self.issued = false;
    }

    fn changed(&mut self, now: Instant) {
        let (first, urgent) = self.dirty.map_or((now, false), |d| (d.first, d.urgent));
        self.dirty = Some(Dirty {
            first,
            last: now,
            urgent,
        });
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The connection is up: watch on from the mirror when it is etcd's own, else list.
    pub fn handle_connected(&mut self) {
        if self.live {
            let from = self.mirror.revision() + 1;
            self.enter(State::Watching { from });
        } else {
            self.enter(State::Listing);
        }
    }

    /// A full list at `revision`: the mirror is replaced and the watch starts after it.
    pub fn handle_list(&mut self, now: Instant, kvs: Vec<Kv>, revision: Revision) {
        self.mirror.handle_list(kvs, revision);
        self.live = true;
        self.backoff = REGISTRY_BACKOFF_MIN;
        self.changed(now);
        self.enter(State::Watching { from: revision + 1 });
    }

    /// A watch batch ending at `revision`.
    pub fn handle_events(&mut self, now: Instant, events: Vec<Event>, revision: Revision) {
        self.backoff = REGISTRY_BACKOFF_MIN;
        if self.mirror.handle_events(events, revision) {
            self.changed(now);
        }
    }

    /// A progress notice: the watch is alive and nothing changed up to `revision`.
    pub fn handle_progress(&mut self, revision: Revision) {
        self.backoff = REGISTRY_BACKOFF_MIN;
        self.mirror.handle_progress(revision);
    }

    /// The watch's revision was compacted away: events were lost, so list again (at once; the
    /// connection itself is fine).
    pub fn handle_compacted(&mut self) {
        self.enter(State::Listing);
    }

    /// The connection, list or watch failed. `jitter` in 0..=1 (from the driver's RNG) picks
    /// the wait between half and all of the current backoff.
    pub fn handle_broken(&mut self, now: Instant, jitter: f64) {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let wait = self.backoff.mul_f64(0.5 + 0.5 * jitter);
        self.backoff = (self.backoff * 2).min(REGISTRY_BACKOFF_MAX);
        self.enter(State::Backoff { until: now + wait });
    }

    /// What the driver should do now; `None` while an action is under way.
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        if let State::Backoff { until } = self.state {
            if now < until {
                return Some(Action::Wait { until });
            }
            self.enter(State::Connecting);
        }
        if self.issued {
            return None;
        }
        self.issued = true;
        Some(match self.state {
            State::Connecting | State::Backoff { .. } => Action::Connect,
            State::Listing => Action::List,
            State::Watching { from } => Action::Watch { from },
        })
    }

    /// The mirror to assemble, once the debounce allows.
    pub fn poll_publish(&mut self, now: Instant) -> Option<Snapshot> {
        let d = self.dirty?;
        let due = d.urgent
            || now >= d.last + REGISTRY_DEBOUNCE_QUIET
            || now >= d.first + REGISTRY_DEBOUNCE_MAX;
        if !due {
            return None;
        }
        self.dirty = None;
        Some(self.mirror.snapshot().clone())
    }

    /// The next moment a `poll_*` may have something new without a driver result.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let publish = self.dirty.map(|d| match d.urgent {
            true => d.first,
            false => (d.last + REGISTRY_DEBOUNCE_QUIET).min(d.first + REGISTRY_DEBOUNCE_MAX),
        });
        let backoff = match self.state {
            State::Backoff { until } => Some(until),
            _ => None,
        };
        publish.into_iter().chain(backoff).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/wiremesh/prod/";

    fn kv(key: &str, rev: Revision) -> Kv {
        Kv {
            key: format!("{P}{key}"),
            value: b"{}".to_vec(),
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_start_connects_lists_then_watches_after_the_list() {
        let t0 = Instant::now();
        let mut s = Connection::new(P);
        assert_eq!(s.poll_action(t0), Some(Action::Connect));
        assert_eq!(s.poll_action(t0), None, "one attempt at a time");
        s.handle_connected();
        assert_eq!(s.poll_action(t0), Some(Action::List));
        s.handle_list(t0, vec![kv("settings", 5)], 7);
        assert_eq!(s.poll_action(t0), Some(Action::Watch { from: 8 }));
        assert_eq!(s.poll_action(t0), None);
    }

    #[test]
    fn a_batch_is_published_once_quiet_for_100_ms() {
        let t0 = Instant::now();
        let mut s = Connection::new(P);
        s.handle_list(t0, vec![], 7);
        assert!(s.poll_publish(t0 + ms(99)).is_none());
        assert_eq!(s.poll_timeout(), Some(t0 + ms(100)));
        let published = s.poll_publish(t0 + ms(100)).unwrap();
        assert_eq!(published.revision, 7);
        assert!(s.poll_publish(t0 + ms(1000)).is_none(), "nothing new");
        // a join's record, claim and presence, 30 ms apart: one publication
        for (i, key) in ["node/n/record", "claims/n", "node/n/presence"]
            .iter()
            .enumerate()
        {
            let at = t0 + ms(1000 + 30 * i as u64);
            s.handle_events(at, vec![Event::Put(kv(key, 8 + i as i64))], 8 + i as i64);
            assert!(s.poll_publish(at).is_none());
        }
        assert!(s.poll_publish(t0 + ms(1159)).is_none());
        assert_eq!(s.poll_publish(t0 + ms(1160)).unwrap().kvs.len(), 3);
    }

    #[test]
    fn a_churning_writer_is_published_at_most_every_500_ms() {
        let t0 = Instant::now();
        let mut s = Connection::new(P);
        s.handle_list(t0, vec![], 1);
        let mut published = Vec::new();
        for i in 0..100u64 {
            let at = t0 + ms(20 * i);
            s.handle_events(
                at,
                vec![Event::Put(kv("node/x/record", 2 + i as i64))],
                2 + i as i64,
            );
            if s.poll_publish(at).is_some() {
                published.push(20 * i);
            }
        }
        assert_eq!(published, [500, 1020, 1540]);
    }

    #[test]
    fn replayed_events_publish_nothing() {
        let t0 = Instant::now();
        let mut s = Connection::new(P);
        s.handle_list(t0, vec![kv("claims/a", 5)], 9);
        s.poll_publish(t0 + ms(100)).unwrap();
        s.handle_events(t0 + ms(200), vec![Event::Put(kv("claims/a", 5))], 9);
        assert!(s.poll_publish(t0 + ms(1000)).is_none());
    }

    #[test]
    fn a_broken_connection_backs_off_doubling_to_30_s_then_reconnects_and_watches_on() {
        let t0 = Instant::now();
        let mut s = Connection::new(P);
        s.poll_action(t0);
        s.handle_connected();
        s.poll_action(t0);
        s.handle_list(t0, vec![], 41);
        s.poll_action(t0);
        s.poll_publish(t0 + ms(100)).unwrap();
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            s.handle_broken(now, 1.0);
            let Some(Action::Wait { until }) = s.poll_action(now) else {
                panic!("backing off");
            };
            waits.push((until - now).as_millis());
            now = until;
            assert_eq!(s.poll_action(now), Some(Action::Connect));
        }
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        s.handle_connected();
        assert_eq!(s.poll_action(now), Some(Action::Watch { from: 42 }));
        // a healthy watch resets the backoff; jitter 0 waits half of it
        s.handle_progress(50);
        s.handle_broken(now, 0.0);
        assert_eq!(
            s.poll_action(now),
            Some(Action::Wait {
                until: now + ms(250)
            })
        );
        assert_eq!(s.poll_timeout(), Some(now + ms(250)));
    }

    #[test]
    fn jitter_out_of_range_never_panics_and_stays_within_the_backoff() {
        let t0 = Instant::now();
        for jitter in [f64::NAN, f64::INFINITY, -5.0, 7.0] {
            let mut s = Connection::new(P);
            s.handle_broken(t0, jitter);
            let Some(Action::Wait { until }) = s.poll_action(t0) else {
                panic!("backing off");
            };
            assert!(until - t0 <= REGISTRY_BACKOFF_MIN, "{jitter}");
        }
    }

    #[test]
    fn a_compacted_watch_relists_and_the_relist_drops_what_was_deleted_meanwhile() {
        let t0 = Instant::now();
        let mut s = Connection::new(P);
        s.handle_connected();
        s.handle_list(t0, vec![kv("claims/a", 3), kv("claims/b", 4)], 10);
        s.poll_publish(t0 + ms(100)).unwrap();
        s.poll_action(t0);
        s.handle_compacted();
        assert_eq!(s.poll_action(t0), Some(Action::List));
        s.handle_list(t0 + ms(200), vec![kv("claims/b", 4)], 90);
        assert_eq!(s.poll_action(t0), Some(Action::Watch { from: 91 }));
        let published = s.poll_publish(t0 + ms(300)).unwrap();
        assert_eq!(published.kvs.len(), 1);
        assert_eq!(published.revision, 90);
    }

    #[test]
    fn a_start_from_the_snapshot_file_publishes_at_once_and_relists_when_connected() {
        let t0 = Instant::now();
        let mut mirror = Mirror::new(P);
        mirror.handle_list(vec![kv("settings", 2)], 20);
        let mut s = Connection::from_snapshot(mirror, t0);
        assert_eq!(s.poll_publish(t0).unwrap().revision, 20);
        assert_eq!(s.poll_action(t0), Some(Action::Connect));
        s.handle_connected();
        assert_eq!(s.poll_action(t0), Some(Action::List));
    }
}
