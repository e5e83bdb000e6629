//! What this node knows about its own NAT (docs/nat.md, section 2). Peers reached at a public
//! address (hubs, public nodes of a full mesh) are asked, inside their sessions, which address
//! our datagrams reach them from: the NAT's mapping towards each. Two answers with one address
//! mean the mapping is endpoint-independent, so any peer could reach us there; different ports
//! mean it is endpoint-dependent ("symmetric"), and only a relay or the peer's own openness
//! gets a pair through. An answer that is one of our own configured addresses means no NAT.
//!
//! Asked in the tunnel, not by STUN on the WireGuard port: the answer is authenticated, so
//! nobody on the path can feed us a false address for peers to probe, and no second protocol
//! shares the socket (docs/nat.md gives the whole reasoning).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Each public peer is asked this often: a NAT's mapping can change under a node (a reboot of
/// the router, a flushed table, a new uplink).
pub const ASK_EVERY: Duration = Duration::from_secs(60);
/// An answer older than this no longer counts: the peer stopped answering, or was removed.
pub const ANSWER_KEPT: Duration = Duration::from_secs(180);

/// What the answers say about the NAT in front of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatType {
    /// Fewer than two answers (and none showing an own address): not known yet.
    Unknown,
    /// Our datagrams arrive from one of our own configured addresses.
    None,
    /// Every peer sees the same address: it can be given to any peer.
    Independent,
    /// Peers see different addresses: each destination gets its own mapping.
    Dependent,
}

impl NatType {
    pub fn as_str(self) -> &'static str {
        match self {
            NatType::Unknown => "unknown",
            NatType::None => "none",
            NatType::Independent => "independent",
            NatType::Dependent => "dependent",
        }
    }
}

/// One reading, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatView {
    pub nat: NatType,
    /// The address peers can reach us at, when the NAT shows the same one to all of them.
    pub reflexive: Option<SocketAddr>,
    /// Each peer's latest answer, by name.
    pub answers: Vec<(String, SocketAddr)>,
}

#[derive(Default)]
pub(super) struct Reflexive {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    answers: BTreeMap<String, (SocketAddr, Instant)>,
    /// When each peer (by base slot: no allocation on the tick) was last asked.
    asked: HashMap<u32, Instant>,
}

impl Reflexive {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the peer at base slot `peer` should be asked now (and notes that it is).
    pub fn ask_due(&self, peer: u32, now: Instant) -> bool {
        let mut s = self.state();
        let due = s
            .asked
            .get(&peer)
            .is_none_or(|t| now.saturating_duration_since(*t) >= ASK_EVERY);
        if due {
            s.asked.insert(peer, now);
        }
        due
    }

    pub fn answered(&self, peer: &str, addr: SocketAddr, now: Instant) {
        self.state().answers.insert(peer.to_string(), (addr, now));
    }

    /// The NAT as the fresh answers show it; `own` are this node's configured addresses.
    pub fn view(&self, own: &[SocketAddr], now: Instant) -> NatView {
        let mut s = self.state();
        s.answers
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < ANSWER_KEPT);
        let answers: Vec<(String, SocketAddr)> = s
            .answers
            .iter()
            .map(|(p, (a, _))| (p.clone(), *a))
            .collect();
        let (nat, reflexive) = classify(answers.iter().map(|(_, a)| *a), own);
        NatView {
            nat,
            reflexive,
            answers,
        }
    }
}

/// The NAT type and the shareable address, from the addresses peers see us at.
fn classify(
    seen: impl Iterator<Item = SocketAddr>,
    own: &[SocketAddr],
) -> (NatType, Option<SocketAddr>) {
    let seen: Vec<SocketAddr> = seen.collect();
    if seen.iter().any(|a| own.contains(a)) {
        return (NatType::None, None);
    }
    match seen.as_slice() {
        [] => (NatType::Unknown, None),
        [one] => (NatType::Unknown, Some(*one)),
        [first, rest @ ..] if rest.iter().all(|a| a == first) => {
            (NatType::Independent, Some(*first))
        }
        _ => (NatType::Dependent, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn two_answers_tell_the_mapping_apart() {
        let own = addrs(&["203.0.113.5:51820"]);
        let cases = [
            (vec![], NatType::Unknown, None),
            (
                vec!["198.51.100.7:40001"],
                NatType::Unknown,
                Some("198.51.100.7:40001"),
            ),
            (
                vec!["198.51.100.7:40001", "198.51.100.7:40001"],
                NatType::Independent,
                Some("198.51.100.7:40001"),
            ),
            (
                vec!["198.51.100.7:40001", "198.51.100.7:40002"],
                NatType::Dependent,
                None,
            ),
            (vec!["203.0.113.5:51820"], NatType::None, None),
        ];
        for (seen, nat, reflexive) in cases {
            let got = classify(addrs(&seen).into_iter(), &own);
            let want = (nat, reflexive.map(|r: &str| r.parse().unwrap()));
            assert_eq!(got, want, "{seen:?}");
        }
    }

    #[test]
    fn public_peers_see_a_node_without_nat_at_its_own_address() {
        use crate::engine::memory_tests::{ipv4, Net};
        let mut net = Net::new(
            "full",
            &[("a", "r", false), ("b", "r", false), ("c", "r", false)],
        );
        for i in 0..12u8 {
            net.run(Duration::from_millis(250), 1);
            net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 2, 1], &[i]));
            net.send("a", &ipv4([10, 244, 1, 1], [10, 244, 3, 1], &[i]));
        }
        let nat = net.devices["a"].nat(net.now);
        let own: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        assert_eq!(nat.answers, [("b".into(), own), ("c".into(), own)]);
        assert_eq!(nat.nat, NatType::None);
    }

    #[test]
    fn each_peer_is_asked_once_a_minute_and_old_answers_lapse() {
        let r = Reflexive::default();
        let t0 = Instant::now();
        assert!(r.ask_due(1, t0));
        assert!(!r.ask_due(1, t0 + ASK_EVERY / 2));
        assert!(r.ask_due(1, t0 + ASK_EVERY));
        let a: SocketAddr = "198.51.100.7:40001".parse().unwrap();
        r.answered("hub", a, t0);
        r.answered("hub2", a, t0);
        assert_eq!(r.view(&[], t0).nat, NatType::Independent);
        assert_eq!(r.view(&[], t0 + ANSWER_KEPT).nat, NatType::Unknown);
    }
}
