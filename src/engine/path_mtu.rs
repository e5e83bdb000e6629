//! Per-peer path state: whether the peer speaks wiremesh control messages, its path-MTU
//! discovery, and the tunnel MTU the data path uses for it.
//!
//! States: `Unknown` (hellos sent with back-off, MTU from the plan) → `Speaks` (the peer
//! answered or sent a hello; discovery runs). A stock WireGuard peer stays `Unknown` forever
//! and keeps the plan's MTU; it is never probed.
//!
//! The tunnel MTU changes in the same critical section as the discovery input that settled it
//! (an ack, a delivered hello, a timeout), and [`PeerPath::view`] reads it with the
//! confirmation time under that lock. Applying it later, at the next tick, let `status` and
//! `check` see a path confirmed with the plan's MTU still in force (up to a 250 ms tick after a
//! delivered hello): `check` then probed at the plan's size into a black hole.

use crate::core::mtu::{MtuDiscovery, MtuEvent};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First wait between hellos; doubled after each unanswered one, up to [`HELLO_MAX`]. As short
/// as a probe's timeout: when the first hello (padded to the ceiling) is lost in a black hole,
/// the unpadded second one starts the search below it without delay.
const HELLO_FIRST: Duration = crate::core::mtu::PROBE_TIMEOUT;
const HELLO_MAX: Duration = Duration::from_secs(60);

/// Why a peer's tunnel MTU changed, for the log line and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtuCause {
    /// The first discovery settled.
    Discovered,
    /// Probes at the old size went unanswered: the path shrank.
    Shrunk,
    /// A larger probe got through: the path grew.
    Grew,
    /// The peer is reached at another endpoint, whose path has its own MTU.
    Endpoint,
}

/// What discovery knew of one path while the peer is reached over another.
pub struct SavedPath {
    mtu: u16,
    discovery: Option<Box<MtuDiscovery>>,
}

/// A change the daemon must apply (route MTUs) and log once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEvent {
    pub peer: String,
    pub public_key: crate::core::key::PublicKey,
    /// New tunnel MTU (path MTU minus WireGuard's overhead).
    pub mtu: u16,
    pub was: u16,
    pub cause: MtuCause,
}

/// MTU changes waiting for the daemon (routes, logs), from every peer.
#[derive(Default)]
pub(super) struct PathEvents(Mutex<Vec<PathEvent>>);

impl PathEvents {
    pub fn push(&self, event: PathEvent) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }

    pub fn take(&self) -> Vec<PathEvent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

struct State {
    speaks: bool,
    /// Hellos sent so far; only the first is padded (see [`PeerPath::hellos_sent`]).
    hellos_sent: u32,
    hello_next: Option<Instant>,
    hello_backoff: Duration,
    /// Boxed: only peers that were awake and speak control messages ever have one.
    discovery: Option<Box<MtuDiscovery>>,
    /// Outer bytes added to an inner packet towards this peer (60 over IPv4, 80 over IPv6).
    overhead: u16,
    /// Discovery's outer floor and ceiling, to start it over on a path never measured.
    bounds: Option<(u16, u16)>,
    pending_cause: Option<MtuCause>,
    /// A change already applied to the MTU that [`PeerPath::poll_change`] has not reported.
    unreported: Option<Change>,
    /// Outer bytes of every probe sent so far: the cost of discovery on the underlay.
    probe_bytes: u64,
    /// Data packets sent to the peer when last looked at, and when that count last moved.
    last_tx: u64,
    last_active: Option<Instant>,
}

/// A settled path is re-confirmed only while traffic flows to the peer (or did within this
/// long): an idle peer costs no probe traffic, and the first packets after a pause are still
/// covered by the route MTU already in place.
pub const IDLE_AFTER: Duration = Duration::from_secs(10);

/// An MTU change applied but not yet reported: the MTU before the first of them, and why.
#[derive(Debug, Clone, Copy)]
struct Change {
    was: u16,
    cause: MtuCause,
}

/// One consistent reading of a peer's path, for status: the MTU and its confirmation come from
/// the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathView {
    /// The tunnel MTU the data path enforces.
    pub mtu: u16,
    /// When discovery last confirmed `mtu`; `None` while the plan's estimate applies.
    pub confirmed_at: Option<Instant>,
    /// Whether a discovery is settled now (false before the first and during a new search).
    pub settled: bool,
    pub speaks_control: bool,
    pub probes_sent: u64,
    pub probe_bytes: u64,
}

/// The tunnel MTU lives in an atomic so the data path reads it without the lock; it is only
/// ever written with the lock held, so a reading under the lock is consistent with the rest.
pub struct PeerPath {
    state: Mutex<State>,
    mtu: AtomicU16,
}

impl PeerPath {
    pub fn new(start_mtu: u16) -> Self {
        Self {
            state: Mutex::new(State {
                speaks: false,
                hellos_sent: 0,
                hello_next: None,
                hello_backoff: HELLO_FIRST,
                discovery: None,
                overhead: crate::constants::OVERHEAD_V4,
                bounds: None,
                pending_cause: None,
                unreported: None,
                probe_bytes: 0,
                last_tx: 0,
                last_active: None,
            }),
            mtu: AtomicU16::new(start_mtu),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tunnel MTU the data path enforces for this peer.
    pub fn mtu(&self) -> u16 {
        self.mtu.load(Ordering::Relaxed)
    }

    /// A reload gave a new starting MTU; it applies only while nothing was ever confirmed. A
    /// new search (the path shrank or grew) keeps the last measured size until it settles: the
    /// plan's is no better a guess, and status would call it confirmed.
    pub fn set_start_mtu(&self, mtu: u16) {
        let s = self.state();
        if s.discovery
            .as_ref()
            .is_none_or(|d| d.confirmed_at().is_none())
        {
            self.mtu.store(mtu, Ordering::Relaxed);
        }
    }

    /// The MTU, its confirmation and the probe counters, read at one instant.
    pub fn view(&self) -> PathView {
        let s = self.state();
        let d = s.discovery.as_deref();
        PathView {
            mtu: self.mtu(),
            confirmed_at: d.and_then(|d| d.confirmed_at()),
            settled: d.is_some_and(|d| d.is_settled()),
            speaks_control: s.speaks,
            probes_sent: d.map_or(0, |d| d.probes_sent()),
            probe_bytes: s.probe_bytes,
        }
    }

    pub fn probes_sent(&self) -> u64 {
        self.state()
            .discovery
            .as_ref()
            .map_or(0, |d| d.probes_sent())
    }

    /// Whether a hello is due now (and arms the next one).
    pub fn hello_due(&self, now: Instant) -> bool {
        let mut s = self.state();
        if s.speaks {
            return false;
        }
        match s.hello_next {
            Some(t) if now < t => false,
            _ => {
                s.hello_next = Some(now + s.hello_backoff);
                s.hello_backoff = (s.hello_backoff * 2).min(HELLO_MAX);
                s.hellos_sent += 1;
                true
            }
        }
    }

    /// Hellos sent so far. The first one is padded to the local ceiling: when it is the only
    /// one out and gets answered, the path carries the ceiling, and discovery is done without
    /// a probe (the answer carries no size, so a later, unpadded hello proves nothing).
    pub fn hellos_sent(&self) -> u32 {
        self.state().hellos_sent
    }

    /// A packet of outer `size` went unanswered (see [`MtuDiscovery::on_unanswered`]).
    pub fn unanswered(&self, size: u16) {
        let mut s = self.state();
        if let Some(d) = s.discovery.as_mut() {
            d.on_unanswered(size);
        }
        self.apply(&mut s);
    }

    /// A packet of outer `size` reached the peer (see [`MtuDiscovery::on_delivered`]).
    pub fn delivered(&self, size: u16, now: Instant) {
        let mut s = self.state();
        if let Some(d) = s.discovery.as_mut() {
            d.on_delivered(size, now);
        }
        self.apply(&mut s);
    }

    /// The peer speaks control messages: start discovery between `floor` and `ceiling`
    /// (outer sizes) over an underlay with `overhead` bytes of WireGuard overhead.
    pub fn start(&self, floor: u16, ceiling: u16, overhead: u16) {
        let mut s = self.state();
        if s.speaks {
            return;
        }
        s.speaks = true;
        s.overhead = overhead;
        s.bounds = Some((floor, ceiling));
        s.discovery = Some(Box::new(MtuDiscovery::new(floor, ceiling)));
    }

    /// The next probe to send: (probe id, inner packet size). `tx_packets` is the peer's data
    /// packet counter: a settled path whose peer gets no traffic is not re-probed.
    pub fn poll_probe(&self, now: Instant, tx_packets: u64) -> Option<(u32, usize)> {
        let mut s = self.state();
        if tx_packets != s.last_tx {
            s.last_tx = tx_packets;
            s.last_active = Some(now);
        }
        let idle = s
            .last_active
            .is_none_or(|t| now.saturating_duration_since(t) > IDLE_AFTER);
        if idle && s.discovery.as_ref().is_some_and(|d| d.is_settled()) {
            return None;
        }
        let overhead = s.overhead;
        // a timeout handled here may settle a search, or end a settled size
        let p = s.discovery.as_mut().and_then(|d| d.poll_probe(now));
        self.apply(&mut s);
        let p = p?;
        s.probe_bytes += u64::from(p.size);
        Some((p.id, usize::from(p.size.saturating_sub(overhead))))
    }

    pub fn on_ack(&self, id: u32, now: Instant) {
        let mut s = self.state();
        if let Some(d) = s.discovery.as_mut() {
            d.on_ack(id, now);
        }
        self.apply(&mut s);
    }

    /// The peer is now reached at another of its endpoints, over another path: returns what
    /// discovery knew of the old one, to keep, and takes `next`'s, or for a path never used
    /// starts over from `start_mtu` (the plan's). A VPC path may carry more than the
    /// internet's, so one measurement cannot stand for both (docs/nat.md, section 1).
    pub fn switch(&self, next: Option<SavedPath>, start_mtu: u16) -> SavedPath {
        let mut s = self.state();
        let (mtu, discovery) = match next {
            Some(p) => (p.mtu, p.discovery),
            None => (
                start_mtu,
                s.bounds.map(|(f, c)| Box::new(MtuDiscovery::new(f, c))),
            ),
        };
        let old = self.mtu.swap(mtu, Ordering::Relaxed);
        let saved = SavedPath {
            mtu: old,
            discovery: std::mem::replace(&mut s.discovery, discovery),
        };
        if mtu != old {
            let was = s.unreported.map_or(old, |c| c.was);
            s.unreported = Some(Change {
                was,
                cause: MtuCause::Endpoint,
            });
        }
        saved
    }

    /// The data path saw a sign of a shrunk path: confirm the current size now.
    pub fn suspect_shrink(&self, now: Instant) {
        if let Some(d) = self.state().discovery.as_mut() {
            d.on_suspected_shrink(now);
        }
    }

    /// Applies what discovery concluded to the data path's MTU at once, while the caller still
    /// holds the lock it fed discovery under; the change waits for [`Self::poll_change`].
    fn apply(&self, s: &mut State) {
        let Some(d) = s.discovery.as_mut() else {
            return;
        };
        let mut settled = None;
        let mut cause = None;
        while let Some(ev) = d.poll_event() {
            match ev {
                MtuEvent::Settled { mtu } => settled = Some(mtu),
                MtuEvent::Shrunk { .. } => cause = Some(MtuCause::Shrunk),
                MtuEvent::Grew { .. } => cause = Some(MtuCause::Grew),
            }
        }
        if let Some(c) = cause {
            s.pending_cause = Some(c);
        }
        let Some(outer) = settled else {
            return;
        };
        let new = outer.saturating_sub(s.overhead);
        let old = self.mtu.swap(new, Ordering::Relaxed);
        let cause = s.pending_cause.take().unwrap_or(MtuCause::Discovered);
        s.unreported = Some(match s.unreported {
            // several changes between two polls: one, from the first MTU, and a first
            // discovery stays one (it is logged and counted as such)
            Some(first) if first.cause == MtuCause::Discovered => first,
            Some(first) => Change {
                was: first.was,
                cause,
            },
            None => Change { was: old, cause },
        });
    }

    /// The MTU change since the last call, once: (new, old, cause). A first discovery is
    /// reported even when it found the plan's MTU; any other change only when the MTU moved.
    pub fn poll_change(&self) -> Option<(u16, u16, MtuCause)> {
        let mut s = self.state();
        let change = s.unreported.take()?;
        let new = self.mtu();
        drop(s);
        (new != change.was || change.cause == MtuCause::Discovered).then_some((
            new,
            change.was,
            change.cause,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_back_off_until_the_peer_answers() {
        let p = PeerPath::new(1420);
        let t0 = Instant::now();
        assert!(p.hello_due(t0));
        assert!(!p.hello_due(t0 + HELLO_FIRST / 2));
        assert!(p.hello_due(t0 + HELLO_FIRST));
        assert!(
            !p.hello_due(t0 + HELLO_FIRST * 2),
            "the second wait is twice the first"
        );
        assert!(p.hello_due(t0 + HELLO_FIRST * 3));
        p.start(1280, 1500, 60);
        assert!(!p.hello_due(t0 + Duration::from_secs(100)));
    }

    #[test]
    fn an_idle_settled_path_is_not_probed_until_traffic_resumes() {
        let p = PeerPath::new(1420);
        p.start(1280, 1500, 60);
        let mut now = Instant::now();
        for _ in 0..50 {
            if let Some((id, _)) = p.poll_probe(now, 1) {
                p.on_ack(id, now);
            }
            now += Duration::from_millis(100);
        }
        assert_eq!(p.poll_change().map(|c| c.0), Some(1440));
        let sent = p.probes_sent();
        // no new data for longer than IDLE_AFTER: confirmations stop
        now += IDLE_AFTER + Duration::from_secs(30);
        assert_eq!(p.poll_probe(now, 1), None);
        assert_eq!(p.probes_sent(), sent);
        // data flows again: the path is confirmed at once
        assert!(p.poll_probe(now, 2).is_some());
    }

    /// Drives discovery against a path that silently drops outer packets above `limit`,
    /// without ever calling `poll_change` (the daemon's tick has not come round yet), until the
    /// first confirmation.
    fn settle_without_polling_changes(p: &PeerPath, limit: u16, mut now: Instant) -> Instant {
        for _ in 0..200 {
            if p.view().confirmed_at.is_some() {
                return now;
            }
            if let Some((id, inner)) = p.poll_probe(now, 1) {
                if inner + 60 <= usize::from(limit) {
                    p.on_ack(id, now);
                }
            }
            now += Duration::from_millis(100);
        }
        panic!("no confirmation against a {limit}-byte path");
    }

    #[test]
    fn a_read_between_confirmation_and_the_next_tick_sees_the_discovered_mtu() {
        // plan 1440 over a path with a black hole above 1380 bytes (outer)
        let p = PeerPath::new(1440);
        p.start(1280, 1500, 60);
        settle_without_polling_changes(&p, 1380, Instant::now());
        // what the control socket reads for `status` and `check`
        let view = p.view();
        assert!(view.confirmed_at.is_some());
        assert_eq!(
            view.mtu, 1320,
            "the path is reported confirmed, so its MTU must be the discovered one"
        );
        assert_eq!(
            p.mtu(),
            1320,
            "and the data path enforces it from the same instant"
        );
        // the change is still reported once, for the routes and the log
        assert_eq!(p.poll_change(), Some((1320, 1440, MtuCause::Discovered)));
        assert_eq!(p.poll_change(), None);
    }

    #[test]
    fn a_reload_during_a_new_search_keeps_the_discovered_mtu() {
        let p = PeerPath::new(1440);
        p.start(1280, 1500, 60);
        let mut now = settle_without_polling_changes(&p, 1380, Instant::now());
        assert_eq!(p.poll_change().map(|c| c.0), Some(1320));
        // the path shrinks under traffic: confirmations go unanswered until the search
        // restarts below
        let mut tx = 1;
        while p.view().settled {
            tx += 1;
            if let Some((id, inner)) = p.poll_probe(now, tx) {
                if inner + 60 <= 1360 {
                    p.on_ack(id, now);
                }
            }
            now += Duration::from_millis(100);
        }
        // a reload with a new plan MTU must not put a size back that was never measured
        p.set_start_mtu(1400);
        assert_eq!(p.mtu(), 1320);
        assert!(p.view().confirmed_at.is_some());
        // before anything was confirmed, the plan's value applies
        let fresh = PeerPath::new(1440);
        fresh.start(1280, 1500, 60);
        fresh.set_start_mtu(1400);
        assert_eq!(fresh.mtu(), 1400);
    }

    #[test]
    fn a_settled_discovery_sets_the_tunnel_mtu_minus_overhead_once() {
        let p = PeerPath::new(1420);
        p.start(1280, 1500, 60);
        let mut now = Instant::now();
        for _ in 0..50 {
            if let Some((id, inner)) = p.poll_probe(now, 0) {
                if inner + 60 <= 1400 {
                    p.on_ack(id, now);
                }
            }
            now += Duration::from_millis(100);
        }
        assert_eq!(p.poll_change(), Some((1340, 1420, MtuCause::Discovered)));
        assert_eq!(p.mtu(), 1340);
        assert_eq!(p.poll_change(), None);
    }
}
