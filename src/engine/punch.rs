//! Hole punching through an introducer (docs/nat.md, section 3).
//!
//! Two nodes behind NAT have no address for each other; their traffic goes through a relay
//! (`table.rs`). Each keeps asking to go direct: it sends `Introduce{peer}` to a relay of the
//! pair, a public node both keep sessions with. The relay knows where each one's datagrams come
//! from (their NATs' mappings towards it) and sends each a `Punch{other, at}` in the same
//! moment. Both then send a handshake initiation to the address they were given, every tick
//! for [`PUNCH_FOR`]: each side's datagrams open its own NAT towards the other's mapping, so
//! once both have sent, the next one through completes a handshake. Behind endpoint-independent
//! NATs the mapping a relay sees is the one the peer sees too, and the pair goes direct; behind
//! an endpoint-dependent ("symmetric") NAT it is not, the handshake never completes, and the
//! pair stays relayed, asking again with backoff ([`FIRST_RETRY`] doubling to [`MAX_RETRY`]).
//!
//! A punch moves nothing by itself. The handshake's answer is authenticated, so only the real
//! peer can complete one, and the endpoint follows it as roaming always did. The relay keeps the
//! traffic until the peer has answered steadily (liveness `Returning`, then `Up`), and a direct
//! path that stops answering goes `Down` and hands the traffic back to the relay within
//! seconds: the decision is made on answered traffic, never on a handshake alone.
//!
//! The initiation is made once per punch and the same bytes are resent: a fresh one every tick
//! would void the one before, whose answer may still be on its way on a long path. Copies the
//! peer receives after the first are refused as replays, harmlessly.

use super::control_message::Message;
use super::device::Device;
use super::peer::Peer;
use super::scratch::Scratch;
use super::sink::Sink;
use crate::core::key::PublicKey;
use crate::core::liveness::Health;
use boringtun::noise::TunnResult;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long initiations go to a punched address: time for both sides' punches to cross.
pub const PUNCH_FOR: Duration = Duration::from_secs(3);
/// The first ask is repeated after this long, doubling: the other side may not have reached
/// the introducer yet when the first ask arrives.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Asks never stop while the pair is relayed: NATs change and mappings time out.
pub const MAX_RETRY: Duration = Duration::from_secs(60);

/// Device part: the punching state of each relayed peer, by base slot. Kept here rather than
/// in every peer: nearly no peer is relayed, and a hub holds ten thousand idle ones
/// (`tests/scale_hub.rs` holds each under 4 KiB).
#[derive(Default)]
pub(super) struct Punches {
    state: Mutex<HashMap<u32, State>>,
}

#[derive(Default)]
struct State {
    attempts: u64,
    successes: u64,
    next_ask: Option<Instant>,
    backoff: Duration,
    /// The address a punch is sending to, the initiation it resends, and until when.
    target: Option<SocketAddr>,
    initiation: Vec<u8>,
    until: Option<Instant>,
    /// The address the last successful punch reached the peer at.
    punched: Option<SocketAddr>,
}

/// One reading, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PunchView {
    pub attempts: u64,
    pub successes: u64,
    pub punched: Option<SocketAddr>,
}

impl Punches {
    /// Runs `f` on the state of `slot`, made now if this is its first use.
    fn with<R>(&self, slot: u32, f: impl FnOnce(&mut State) -> R) -> R {
        let mut all = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(slot).or_default())
    }

    /// Runs `f` on the state of `slot` if it exists: reading never makes it.
    fn peek<R>(&self, slot: u32, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        let mut all = self.state.lock().unwrap_or_else(|e| e.into_inner());
        all.get_mut(&slot).map(f)
    }

    /// Forgets the peers no longer `relayed` (removed, or given an address by a reload) once
    /// states outnumber relayed peers: the tick pays a comparison, and a stale state waits
    /// for the next such sweep (it is a few counters).
    fn keep_only(&self, relayed: &[(Arc<Peer>, Vec<Arc<Peer>>)]) {
        let mut all = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() > relayed.len() {
            let keep: std::collections::HashSet<u32> =
                relayed.iter().map(|(p, _)| p.slot).collect();
            all.retain(|s, _| keep.contains(s));
        }
    }

    /// Whether to ask an introducer about `slot` now. `direct` says the peer answers directly:
    /// then asks stop, and the backoff starts over for the next time it does not.
    fn ask_due(&self, slot: u32, now: Instant, direct: bool) -> bool {
        if direct {
            self.peek(slot, |s| {
                s.next_ask = None;
                s.backoff = Duration::ZERO;
            });
            return false;
        }
        self.with(slot, |s| {
            if s.until.is_some() || s.next_ask.is_some_and(|t| now < t) {
                return false;
            }
            s.backoff = if s.backoff.is_zero() {
                FIRST_RETRY
            } else {
                (s.backoff * 2).min(MAX_RETRY)
            };
            s.next_ask = Some(now + s.backoff);
            true
        })
    }

    /// Whether a punch is under way at `now`: then another introducer's word only redirects it;
    /// a second initiation would void the first one's state while its answer may be on the way.
    fn under_way(&self, slot: u32, now: Instant) -> bool {
        self.peek(slot, |s| s.until.is_some_and(|u| now < u))
            .unwrap_or(false)
    }

    /// Sends the punch under way to `at` from now on.
    fn redirect(&self, slot: u32, at: SocketAddr) {
        self.peek(slot, |s| s.target = Some(at));
    }

    /// An introducer says the peer is at `at`: punch there with `initiation` from now.
    fn start(&self, slot: u32, at: SocketAddr, initiation: &[u8], now: Instant) {
        self.with(slot, |s| {
            s.target = Some(at);
            s.initiation.clear();
            s.initiation.extend_from_slice(initiation);
            s.until = Some(now + PUNCH_FOR);
            s.attempts += 1;
        });
    }

    /// One tick of a punch under way: `endpoint` is where the peer is sent to now. Calls
    /// `resend` with the target and the initiation while punching; ends the punch when the
    /// peer answered from there (the endpoint followed it) or the time is up.
    fn tick(
        &self,
        slot: u32,
        now: Instant,
        endpoint: Option<SocketAddr>,
        resend: impl FnOnce(SocketAddr, &[u8]),
    ) {
        self.peek(slot, |s| {
            let (Some(target), Some(until)) = (s.target, s.until) else {
                return;
            };
            if endpoint == Some(target) {
                s.punched = Some(target);
                s.until = None;
                s.successes += 1;
            } else if now >= until {
                s.until = None;
            } else {
                resend(target, &s.initiation);
            }
        });
    }

    fn view(&self, slot: u32) -> PunchView {
        self.peek(slot, |s| PunchView {
            attempts: s.attempts,
            successes: s.successes,
            punched: s.punched,
        })
        .unwrap_or_default()
    }
}

impl Device {
    /// The punches towards `peer` so far (status, metrics).
    pub fn punch_view(&self, peer: &Peer) -> PunchView {
        self.punches.view(peer.slot)
    }

    /// Asks for and carries on the punches of every peer with relays (see the module doc).
    /// Those peers may hold no session yet: the table lists them, awake or not.
    pub(super) fn tick_punch(&self, now: Instant, scratch: &mut Scratch, sink: &mut impl Sink) {
        let table = self.peers.load();
        self.punches.keep_only(table.relayed());
        for (peer, relays) in table.relayed() {
            self.punches
                .tick(peer.slot, now, peer.endpoint(), |to, initiation| {
                    sink.send(to, initiation)
                });
            let usable =
                |r: &&Arc<Peer>| r.liveness.health() == Health::Up && r.path.view().speaks_control;
            let Some(introducer) = relays.iter().find(usable) else {
                continue;
            };
            let direct = peer.liveness.health() == Health::Up;
            if self.punches.ask_due(peer.slot, now, direct) {
                let ask = Message::Introduce {
                    peer: peer.public_key(),
                };
                self.send_control(introducer, &ask, 0, scratch.packet_mut(), sink);
            }
        }
    }

    /// `asker` wants to reach `target` directly: tell each where the other's datagrams reach
    /// us from, at once. Only between two peers with sessions here; anything else is ignored.
    pub(super) fn handle_introduce(
        &self,
        asker: &Peer,
        target: PublicKey,
        out: &mut [u8],
        sink: &mut impl Sink,
    ) {
        let table = self.peers.load();
        let Some(other) = table.by_key(&target) else {
            return;
        };
        if std::ptr::eq(&**other, asker) {
            return;
        }
        let (Some(asker_at), Some(other_at)) = (asker.endpoint(), other.endpoint()) else {
            return;
        };
        let to_other = Message::Punch {
            peer: asker.public_key(),
            addr: asker_at,
        };
        self.send_control(other, &to_other, 0, out, sink);
        let to_asker = Message::Punch {
            peer: other.public_key(),
            addr: other_at,
        };
        self.send_control(asker, &to_asker, 0, out, sink);
    }

    /// An introducer says `target` is at `at`: start punching, if `target` is a peer we have
    /// relays for and do not reach directly. Trusted only from a peer we reach at its public
    /// address (an introducer), never from one behind NAT like us.
    pub(super) fn handle_punch(
        &self,
        introducer: &Peer,
        target: PublicKey,
        at: SocketAddr,
        now: Instant,
        out: &mut [u8],
        sink: &mut impl Sink,
    ) {
        if !introducer.candidates.on_public() {
            return;
        }
        let table = self.peers.load();
        let Some(peer) = table
            .relayed()
            .iter()
            .find(|(p, _)| p.keys().accepted().contains(&target))
            .map(|(p, _)| p.clone())
        else {
            return;
        };
        let fresh = peer
            .handshake_age()
            .is_some_and(|a| a < crate::constants::SESSION_FRESH);
        if fresh && peer.endpoint() == Some(at) {
            // already reached there (the other side's punch got through first)
            return;
        }
        if self.punches.under_way(peer.slot, now) {
            self.punches.redirect(peer.slot, at);
            return;
        }
        let mut session = self.wake(&peer);
        if let TunnResult::WriteToNetwork(d) = session.format_handshake_initiation(out, true) {
            sink.send(at, d);
            self.punches.start(peer.slot, at, d, now);
        }
    }
}
