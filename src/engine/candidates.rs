//! Which of a peer's endpoints the data path sends to (docs/nat.md, section 1).
//!
//! A peer may be reachable at several addresses, best first: inside a VPC both nodes share,
//! then on the internet. The first is used. When the peer stops answering there (liveness says
//! `Down`), the next is tried, one every [`TRY_NEXT_AFTER`], round the list, until one answers.
//! While a worse one is in use, every better one gets a probe every [`UPGRADE_EVERY`], inside
//! the session: the peer, seeing our packet arrive from a better address of ours, moves to
//! it, and its answer, arriving from its better address, moves us.
//!
//! Roaming (following a peer's authenticated packets to a new source address) is what makes a
//! NATed peer reachable at all, but one packet that took another way must not pull a VPC pair
//! onto the internet. So a packet from a worse address moves the endpoint only when the one in
//! use is public (unscoped), or its peer is `Down`, or the packet comes from another of the
//! peer's configured endpoints while nothing has been heard at the one in use for
//! [`PIN_QUIET`] (the peer lost the path and failed over first: following it at once halves
//! the outage, since our side would otherwise need its own seconds of silence to notice).
//! Otherwise it is refused and counted, and, not coming from the endpoint in use, it does not
//! count as the peer answering: if the peer really moved, the endpoint in use goes `Down`
//! within seconds and the next packet moves it. A packet from a better candidate always moves
//! it: it is authenticated, and a better path that works is the point.
//!
//! Each candidate keeps its own path-MTU discovery (`path_mtu.rs`): switching back to a path
//! already measured takes its MTU at once.
//!
//! The data path never comes here while packets arrive from the endpoint in use: it compares
//! one address under a read lock first (`peer.rs`).

use super::path_mtu::{PeerPath, SavedPath};
use crate::core::liveness::Health;
use crate::core::topology::{Candidate, Endpoint};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// While the peer is `Down`, the next candidate is tried after this long on one: liveness
/// probes a `Down` peer every second, so each candidate gets two or three probes.
pub const TRY_NEXT_AFTER: Duration = Duration::from_secs(3);
/// A pinned endpoint silent this long yields to a packet from another configured endpoint of
/// the peer. Four ticks: a flow in either direction, or keepalives, are heard well within it.
pub const PIN_QUIET: Duration = Duration::from_secs(1);
/// Interval of probes to the candidates better than the one in use.
pub const UPGRADE_EVERY: Duration = Duration::from_secs(10);

pub struct PeerCandidates {
    state: Mutex<State>,
    /// Packets from a worse address refused while a scoped endpoint was in use and answering.
    roam_refused: AtomicU64,
    /// Times failover moved to the next candidate.
    failovers: AtomicU64,
}

struct Slot {
    addr: SocketAddr,
    scope: Option<String>,
    /// Discovery's state of this candidate's path, while another one is in use.
    path: Option<SavedPath>,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    /// The slot in use; `None`: no endpoint, or an address learnt by roaming (a NAT's).
    chosen: Option<usize>,
    /// The path of an address learnt by roaming, while a slot is in use.
    learnt_path: Option<SavedPath>,
    /// When failover last moved to another candidate.
    tried_at: Option<Instant>,
    next_upgrade: Option<Instant>,
    /// The peer's heard counter at the last tick, and when it last moved: when the endpoint
    /// in use was last heard from (strays are not counted as heard).
    heard_seen: u64,
    heard_at: Option<Instant>,
}

/// One consistent reading, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidatesView {
    /// Every configured candidate, best first, with its scope.
    pub list: Vec<(SocketAddr, Option<String>)>,
    /// Index into `list` of the one in use; `None`: none, or an address learnt by roaming.
    pub chosen: Option<usize>,
    pub roam_refused: u64,
    pub failovers: u64,
}

impl CandidatesView {
    /// How the peer is reached, given its endpoint in use: `private <scope>` (a configured
    /// address in a scope both share), `public` (its configured unscoped one), `learnt` (an
    /// address its packets came from: a NAT's, or where it roamed), or `none` yet.
    pub fn path(&self, endpoint: Option<SocketAddr>) -> String {
        match (self.chosen, endpoint) {
            (Some(i), _) => match &self.list[i].1 {
                Some(scope) => format!("private {scope}"),
                None => "public".into(),
            },
            (None, Some(_)) => "learnt".into(),
            (None, None) => "none".into(),
        }
    }

    /// The candidates as `address` or `address (scope)`, best first.
    pub fn listed(&self) -> Vec<String> {
        self.list
            .iter()
            .map(|(a, s)| match s {
                Some(s) => format!("{a} ({s})"),
                None => a.to_string(),
            })
            .collect()
    }
}

/// The candidates with an address now; a DNS name is followed by the resolver instead, as the
/// one endpoint it was before candidates (it is never a failover target).
fn slots_of(list: &[Candidate]) -> Vec<Slot> {
    list.iter()
        .filter_map(|c| match &c.endpoint {
            Endpoint::Addr(a) => Some(Slot {
                addr: *a,
                scope: c.scope.clone(),
                path: None,
            }),
            Endpoint::Dns { .. } => None,
        })
        .collect()
}

impl PeerCandidates {
    pub fn new(list: &[Candidate], current: Option<SocketAddr>) -> Self {
        let slots = slots_of(list);
        let chosen = current.and_then(|c| slots.iter().position(|s| s.addr == c));
        Self {
            state: Mutex::new(State {
                slots,
                chosen,
                ..State::default()
            }),
            roam_refused: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reload gave a new list; paths already measured stay with their addresses.
    pub fn configure(&self, list: &[Candidate], current: Option<SocketAddr>) {
        let mut s = self.state();
        let mut slots = slots_of(list);
        for slot in &mut slots {
            if let Some(old) = s.slots.iter_mut().find(|o| o.addr == slot.addr) {
                slot.path = old.path.take();
            }
        }
        s.chosen = current.and_then(|c| slots.iter().position(|x| x.addr == c));
        s.slots = slots;
    }

    /// Notes, once a tick, whether the endpoint in use was heard from: `heard` is the peer's
    /// counter of authenticated packets that count as answers.
    pub fn heard(&self, heard: u64, now: Instant) {
        let mut s = self.state();
        if heard != s.heard_seen {
            s.heard_seen = heard;
            s.heard_at = Some(now);
        }
    }

    /// Whether an authenticated packet from `from`, which is not the endpoint in use, may move
    /// the endpoint there at `now` (see the module doc); a refusal is counted.
    pub fn admits(&self, from: SocketAddr, health: Health, now: Instant) -> bool {
        let s = self.state();
        let at = s.slots.iter().position(|x| x.addr == from);
        let better = match (at, s.chosen) {
            (Some(k), Some(c)) => k < c,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let pinned = s.chosen.is_some_and(|c| s.slots[c].scope.is_some());
        let quiet = s
            .heard_at
            .is_none_or(|t| now.saturating_duration_since(t) >= PIN_QUIET);
        let admitted = better || !pinned || health == Health::Down || (at.is_some() && quiet);
        if !admitted {
            self.roam_refused.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// The endpoint moved to `to`: it becomes the one in use, and the data path takes its
    /// path's MTU (`start_mtu`, the plan's, for a path never measured).
    pub fn moved(&self, to: SocketAddr, path: &PeerPath, start_mtu: u16) {
        let mut s = self.state();
        let next = s.slots.iter().position(|x| x.addr == to);
        if next == s.chosen {
            // a NAT gave the learnt address another port: the same path
            return;
        }
        let incoming = match next {
            Some(i) => s.slots[i].path.take(),
            None => s.learnt_path.take(),
        };
        let outgoing = path.switch(incoming, start_mtu);
        match s.chosen {
            Some(i) => s.slots[i].path = Some(outgoing),
            None => s.learnt_path = Some(outgoing),
        }
        s.chosen = next;
    }

    /// One tick: while the peer is `Down`, the next candidate to try, when it is time.
    pub fn failover(&self, now: Instant, health: Health) -> Option<SocketAddr> {
        let mut s = self.state();
        if health != Health::Down {
            s.tried_at = None;
            return None;
        }
        if s.tried_at
            .is_some_and(|t| now.saturating_duration_since(t) < TRY_NEXT_AFTER)
        {
            return None;
        }
        let n = s.slots.len();
        let next = s.chosen.map_or(0, |c| (c + 1) % n.max(1));
        if n == 0 || (n == 1 && s.chosen == Some(0)) {
            return None;
        }
        s.tried_at = Some(now);
        self.failovers.fetch_add(1, Ordering::Relaxed);
        Some(s.slots[next].addr)
    }

    /// The better candidates to probe now, while a worse one is in use and answering.
    pub fn upgrade_due(&self, now: Instant, health: Health) -> Vec<SocketAddr> {
        let mut s = self.state();
        let better = s.chosen.unwrap_or(s.slots.len());
        if better == 0 || health != Health::Up {
            s.next_upgrade = None;
            return Vec::new();
        }
        match s.next_upgrade {
            None => {
                // the first probe waits a round: a path just left is not tried again at once
                s.next_upgrade = Some(now + UPGRADE_EVERY);
                Vec::new()
            }
            Some(t) if now < t => Vec::new(),
            Some(_) => {
                s.next_upgrade = Some(now + UPGRADE_EVERY);
                s.slots[..better].iter().map(|x| x.addr).collect()
            }
        }
    }

    /// Whether the endpoint in use is one of the peer's configured public addresses: then
    /// what it sees of us is what the internet sees (`reflexive.rs`).
    pub fn on_public(&self) -> bool {
        let s = self.state();
        s.chosen.is_some_and(|c| s.slots[c].scope.is_none())
    }

    pub fn view(&self) -> CandidatesView {
        let s = self.state();
        CandidatesView {
            list: s.slots.iter().map(|x| (x.addr, x.scope.clone())).collect(),
            chosen: s.chosen,
            roam_refused: self.roam_refused.load(Ordering::Relaxed),
            failovers: self.failovers.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(addr: &str, scope: Option<&str>) -> Candidate {
        Candidate {
            endpoint: Endpoint::Addr(addr.parse().unwrap()),
            scope: scope.map(String::from),
        }
    }

    #[test]
    fn the_path_in_use_is_named_by_the_candidate_it_is() {
        let list = [
            candidate("10.0.1.2:51820", Some("aws:vpc-1")),
            candidate("203.0.113.2:51820", None),
        ];
        let (private, public) = (list[0].endpoint.clone(), list[1].endpoint.clone());
        let at = |e: &Endpoint| match e {
            Endpoint::Addr(a) => *a,
            Endpoint::Dns { .. } => unreachable!(),
        };
        let c = PeerCandidates::new(&list, Some(at(&private)));
        assert_eq!(c.view().path(Some(at(&private))), "private aws:vpc-1");
        let c = PeerCandidates::new(&list, Some(at(&public)));
        assert_eq!(c.view().path(Some(at(&public))), "public");
        let nat: SocketAddr = "198.51.100.7:40001".parse().unwrap();
        let c = PeerCandidates::new(&list, Some(nat));
        assert_eq!(c.view().path(Some(nat)), "learnt");
        assert_eq!(PeerCandidates::new(&[], None).view().path(None), "none");
        assert_eq!(
            c.view().listed(),
            ["10.0.1.2:51820 (aws:vpc-1)", "203.0.113.2:51820"]
        );
    }

    #[test]
    fn a_down_peer_is_tried_round_its_candidates_one_every_few_seconds() {
        let list = [
            candidate("10.0.1.2:51820", Some("aws:vpc-1")),
            candidate("203.0.113.2:51820", None),
        ];
        let c = PeerCandidates::new(&list, Some("10.0.1.2:51820".parse().unwrap()));
        let t0 = Instant::now();
        assert_eq!(c.failover(t0, Health::Up), None);
        let next = c.failover(t0, Health::Down).unwrap();
        assert_eq!(next.to_string(), "203.0.113.2:51820");
        let path = PeerPath::new(1420);
        c.moved(next, &path, 1420);
        assert_eq!(c.failover(t0 + TRY_NEXT_AFTER / 2, Health::Down), None);
        let back = c.failover(t0 + TRY_NEXT_AFTER, Health::Down).unwrap();
        assert_eq!(back.to_string(), "10.0.1.2:51820", "round the list");
        assert_eq!(c.view().failovers, 2);
    }
}
