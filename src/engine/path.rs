//! Per-peer path state: whether the peer speaks wiremesh control messages, its path-MTU
//! discovery, and the tunnel MTU the data path uses for it.
//!
//! States: `Unknown` (hellos sent with back-off, MTU from the plan) → `Speaks` (the peer
//! answered or sent a hello; discovery runs). A stock WireGuard peer stays `Unknown` forever
//! and keeps the plan's MTU; it is never probed.

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
    pending_cause: Option<MtuCause>,
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
                pending_cause: None,
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

    /// A reload gave a new starting MTU; it applies only while nothing was discovered.
    pub fn set_start_mtu(&self, mtu: u16) {
        if self
            .state()
            .discovery
            .as_ref()
            .is_none_or(|d| !d.is_settled())
        {
            self.mtu.store(mtu, Ordering::Relaxed);
        }
    }

    pub fn speaks_control(&self) -> bool {
        self.state().speaks
    }

    /// When the discovered MTU was last confirmed by an acknowledged probe.
    pub fn confirmed_at(&self) -> Option<Instant> {
        self.state()
            .discovery
            .as_ref()
            .and_then(|d| d.confirmed_at())
    }

    /// Outer bytes of all probes sent to this peer.
    pub fn probe_bytes(&self) -> u64 {
        self.state().probe_bytes
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
        if let Some(d) = self.state().discovery.as_mut() {
            d.on_unanswered(size);
        }
    }

    /// A packet of outer `size` reached the peer (see [`MtuDiscovery::on_delivered`]).
    pub fn delivered(&self, size: u16, now: Instant) {
        if let Some(d) = self.state().discovery.as_mut() {
            d.on_delivered(size, now);
        }
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
        let p = s.discovery.as_mut()?.poll_probe(now)?;
        s.probe_bytes += u64::from(p.size);
        Some((p.id, usize::from(p.size.saturating_sub(overhead))))
    }

    pub fn on_ack(&self, id: u32, now: Instant) {
        if let Some(d) = self.state().discovery.as_mut() {
            d.on_ack(id, now);
        }
    }

    /// The data path saw a sign of a shrunk path: confirm the current size now.
    pub fn suspect_shrink(&self, now: Instant) {
        if let Some(d) = self.state().discovery.as_mut() {
            d.on_suspected_shrink(now);
        }
    }

    /// Applies what discovery concluded to the data path's MTU; returns (new, old, cause) once
    /// per change.
    pub fn poll_change(&self) -> Option<(u16, u16, MtuCause)> {
        let mut s = self.state();
        let overhead = s.overhead;
        let d = s.discovery.as_mut()?;
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
        let new = settled?.saturating_sub(overhead);
        let old = self.mtu.swap(new, Ordering::Relaxed);
        let cause = s.pending_cause.take().unwrap_or(MtuCause::Discovered);
        (new != old || cause == MtuCause::Discovered).then_some((new, old, cause))
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
