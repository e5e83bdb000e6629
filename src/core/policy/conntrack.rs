//! Connection tracking with bounded memory, sans-IO (`now` is an argument): which flows a
//! policy let open, so their other packets and their replies pass without the rules.
//!
//! **Layout.** `capacity` slots allocated once, in buckets of [`WAYS`] (set-associative): a
//! flow lives in the bucket its key hashes to, and both directions of a flow have one key (its
//! two ends in a fixed order). The hash is keyed by a seed the caller draws (the daemon: from
//! the OS), so a sender cannot aim its flows at one bucket.
//!
//! **States and timers** (each packet of the flow restarts its timer; constants in
//! `constants.rs`):
//! - `Opening`: opened, no reply yet: TCP 30 s, others 30 s.
//! - `Replied`: seen both ways: TCP 1 h, UDP and other protocols 180 s, ICMP echo 30 s.
//! - `Closing` (TCP FIN seen): 60 s. `Reset` (TCP RST seen): 10 s. A SYN from the opener
//!   reopens a closing flow.
//! - `Fragment`: a datagram whose first fragment passed; its later fragments pass: 10 s.
//! - `Revoked`: a flow a reload denied: all its packets are denied, 60 s.
//!
//! **Eviction and overflow (fails closed).** A new flow takes an empty or expired slot of its
//! bucket; else it evicts the bucket's entry that is not `Replied` and expires first (an
//! unanswered flow, a fragment, a closing or revoked flow); else — every slot holds an answered
//! flow — insertion fails and the caller denies the new flow. Nothing else ever allocates, so
//! the table never holds more than `capacity` entries, whatever arrives.

use super::flow::{Tuple, ACK, FIN, ICMP, ICMPV6, RST, SYN, TCP};
use crate::constants::{
    CONNTRACK_FRAGMENTS, CONNTRACK_REPLIED, CONNTRACK_REVOKED, CONNTRACK_TCP_CLOSING,
    CONNTRACK_TCP_ESTABLISHED, CONNTRACK_TCP_OPENING, CONNTRACK_TCP_RESET, CONNTRACK_UNREPLIED,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Slots per bucket: a new flow competes with 7 others for its bucket, so the table fills
/// evenly before any bucket overflows (with 8 ways and a good hash, a bucket overflows at
/// about 80 % of capacity for random keys).
pub const WAYS: usize = 8;

const TAG_V6: u8 = 1;
const TAG_FRAGMENT: u8 = 2;

/// A flow's identity: its two ends in a fixed order, so a reply finds its request's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    lo: u128,
    hi: u128,
    lo_port: u16,
    hi_port: u16,
    proto: u8,
    tag: u8,
}

fn number(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Key {
    /// The key of `t`'s flow, and whether `t` goes from the key's low end to its high end.
    pub fn of(t: &Tuple) -> (Key, bool) {
        let a = (number(t.src), t.src_port);
        let b = (number(t.dst), t.dst_port);
        let tag = if t.src.is_ipv6() { TAG_V6 } else { 0 };
        let forward = a <= b;
        let (lo, hi) = if forward { (a, b) } else { (b, a) };
        (
            Key {
                lo: lo.0,
                hi: hi.0,
                lo_port: lo.1,
                hi_port: hi.1,
                proto: t.proto,
                tag,
            },
            forward,
        )
    }

    /// The key of the fragments of datagram `id` from `t.src` to `t.dst`.
    pub fn fragment(t: &Tuple, id: u32) -> Key {
        Key {
            lo: number(t.src),
            hi: number(t.dst),
            lo_port: (id >> 16) as u16,
            hi_port: id as u16,
            proto: t.proto,
            tag: TAG_FRAGMENT | if t.src.is_ipv6() { TAG_V6 } else { 0 },
        }
    }

    fn addr(&self, n: u128) -> IpAddr {
        if self.tag & TAG_V6 != 0 {
            IpAddr::V6(Ipv6Addr::from(n))
        } else {
            IpAddr::V4(Ipv4Addr::from(n as u32))
        }
    }
}

/// Where a flow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Opening,
    Replied,
    Closing,
    Reset,
    Fragment,
    Revoked,
}

impl State {
    fn timeout(self, proto: u8) -> Duration {
        match (self, proto) {
            (State::Opening, TCP) => CONNTRACK_TCP_OPENING,
            (State::Opening, _) => CONNTRACK_UNREPLIED,
            (State::Replied, TCP) => CONNTRACK_TCP_ESTABLISHED,
            (State::Replied, ICMP | ICMPV6) => CONNTRACK_UNREPLIED,
            (State::Replied, _) => CONNTRACK_REPLIED,
            (State::Closing, _) => CONNTRACK_TCP_CLOSING,
            (State::Reset, _) => CONNTRACK_TCP_RESET,
            (State::Fragment, _) => CONNTRACK_FRAGMENTS,
            (State::Revoked, _) => CONNTRACK_REVOKED,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: Key,
    /// Milliseconds after the table's epoch; 0: empty.
    expires: u64,
    /// The policy generation that last judged the flow.
    generation: u32,
    state: State,
    /// Whether the flow was opened from the key's low end.
    opened_by_lo: bool,
}

const EMPTY: Slot = Slot {
    key: Key {
        lo: 0,
        hi: 0,
        lo_port: 0,
        hi_port: 0,
        proto: 0,
        tag: 0,
    },
    expires: 0,
    generation: 0,
    state: State::Opening,
    opened_by_lo: true,
};

/// A live entry found for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub handle: Handle,
    pub state: State,
    pub generation: u32,
    /// Whether the packet goes against the direction that opened the flow.
    pub reply: bool,
}

/// A slot, valid until the next insertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(usize);

/// Why a new flow was not tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// What the table has done, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub inserted: u64,
    /// Unanswered entries pushed out by new flows.
    pub evicted: u64,
    /// New flows refused: their bucket held only answered flows.
    pub full: u64,
}

/// The table (see the module doc).
pub struct ConnTrack {
    slots: Box<[Slot]>,
    /// Buckets − 1 (buckets are a power of two).
    mask: usize,
    seed: [u64; 2],
    epoch: Instant,
    stats: Stats,
}

/// The high and low halves of a 128-bit product, folded: a fast keyed mix.
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a).wrapping_mul(u128::from(b));
    (p as u64) ^ ((p >> 64) as u64)
}

impl ConnTrack {
    /// A table of at least `capacity` entries (rounded up to a power-of-two number of buckets),
    /// hashing with `seed`; `now` is its epoch.
    pub fn new(capacity: usize, seed: [u64; 2], now: Instant) -> ConnTrack {
        let buckets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        ConnTrack {
            slots: vec![EMPTY; buckets * WAYS].into_boxed_slice(),
            mask: buckets - 1,
            // odd multipliers never zero a product
            seed: [seed[0] | 1, seed[1] | 1],
            epoch: now,
            stats: Stats::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Entries alive at `now` (a walk over the table: for metrics and tests, not per packet).
    pub fn live(&self, now: Instant) -> usize {
        let t = self.millis(now);
        self.slots.iter().filter(|s| s.expires > t).count()
    }

    fn millis(&self, now: Instant) -> u64 {
        // + 1: an entry made at the epoch must not look empty
        now.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    fn bucket(&self, key: &Key) -> std::ops::Range<usize> {
        let ports = (u64::from(key.lo_port) << 32)
            | (u64::from(key.hi_port) << 16)
            | (u64::from(key.proto) << 8)
            | u64::from(key.tag);
        let h = fold(
            key.lo as u64 ^ self.seed[0],
            (key.lo >> 64) as u64 ^ self.seed[1],
        );
        let h = fold(h ^ key.hi as u64, ((key.hi >> 64) as u64) ^ self.seed[0]);
        let h = fold(h ^ ports, self.seed[1]);
        let b = (h as usize) & self.mask;
        b * WAYS..(b + 1) * WAYS
    }

    /// The live entry of `key`; `forward`: the packet goes from the key's low end.
    pub fn find(&self, key: &Key, forward: bool, now: Instant) -> Option<Entry> {
        let t = self.millis(now);
        self.bucket(key).find_map(|i| {
            let s = &self.slots[i];
            (s.expires > t && s.key == *key).then_some(Entry {
                handle: Handle(i),
                state: s.state,
                generation: s.generation,
                reply: s.opened_by_lo != forward,
            })
        })
    }

    /// The tuple of the packet that opened the flow, as it was sent: what a new policy judges.
    pub fn opening(&self, h: Handle) -> Tuple {
        let s = &self.slots[h.0];
        let k = &s.key;
        let lo = (k.addr(k.lo), k.lo_port);
        let hi = (k.addr(k.hi), k.hi_port);
        let (from, to) = if s.opened_by_lo { (lo, hi) } else { (hi, lo) };
        Tuple {
            src: from.0,
            dst: to.0,
            proto: k.proto,
            src_port: from.1,
            dst_port: to.1,
        }
    }

    /// A packet of the flow at `now`: its state moves on and its timer restarts. `tcp_flags`
    /// for TCP segments.
    pub fn on_packet(&mut self, h: Handle, reply: bool, tcp_flags: Option<u8>, now: Instant) {
        let t = self.millis(now);
        let s = &mut self.slots[h.0];
        s.state = match (s.state, tcp_flags) {
            (State::Revoked | State::Fragment, _) => s.state,
            (_, Some(f)) if f & RST != 0 => State::Reset,
            (_, Some(f)) if f & FIN != 0 => State::Closing,
            (State::Closing | State::Reset, Some(f)) if !reply && f & SYN != 0 && f & ACK == 0 => {
                State::Opening
            }
            (State::Opening, _) if reply => State::Replied,
            (state, _) => state,
        };
        s.expires = t + s.state.timeout(s.key.proto).as_millis() as u64;
    }

    /// The flow was judged again by policy `generation` and is still allowed; a revoked flow
    /// allowed again opens anew.
    pub fn renew(&mut self, h: Handle, generation: u32) {
        let s = &mut self.slots[h.0];
        s.generation = generation;
        if s.state == State::Revoked {
            s.state = State::Opening;
        }
    }

    /// The flow was judged again by policy `generation` and is denied now: every packet of it
    /// is denied until it has been quiet for the revoked timeout.
    pub fn revoke(&mut self, h: Handle, generation: u32, now: Instant) {
        let t = self.millis(now);
        let s = &mut self.slots[h.0];
        s.generation = generation;
        s.state = State::Revoked;
        s.expires = t + State::Revoked.timeout(s.key.proto).as_millis() as u64;
    }

    /// Forgets an entry.
    pub fn remove(&mut self, h: Handle) {
        self.slots[h.0] = EMPTY;
    }

    /// Tracks a new flow (`forward` as in [`find`](Self::find)), judged by policy
    /// `generation`, in `state`. `Err(Full)` when its bucket holds only answered flows: the
    /// caller must deny it (fail closed).
    pub fn insert(
        &mut self,
        key: Key,
        forward: bool,
        state: State,
        generation: u32,
        now: Instant,
    ) -> Result<Handle, Full> {
        let t = self.millis(now);
        let bucket = self.bucket(&key);
        let mut free = None;
        let mut victim: Option<usize> = None;
        for i in bucket {
            let s = &self.slots[i];
            if s.key == key || s.expires <= t {
                // its own old entry, an empty or an expired slot
                free = Some(i);
                if s.key == key {
                    break;
                }
            } else if s.state != State::Replied
                && victim.is_none_or(|v| s.expires < self.slots[v].expires)
            {
                victim = Some(i);
            }
        }
        let i = match (free, victim) {
            (Some(i), _) => i,
            (None, Some(v)) => {
                self.stats.evicted += 1;
                v
            }
            (None, None) => {
                self.stats.full += 1;
                return Err(Full);
            }
        };
        self.stats.inserted += 1;
        self.slots[i] = Slot {
            key,
            expires: t + state.timeout(key.proto).as_millis() as u64,
            generation,
            state,
            opened_by_lo: forward,
        };
        Ok(Handle(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::flow::UDP;

    fn tuple(src: [u8; 4], src_port: u16, dst: [u8; 4], dst_port: u16, proto: u8) -> Tuple {
        Tuple {
            src: IpAddr::from(src),
            dst: IpAddr::from(dst),
            proto,
            src_port,
            dst_port,
        }
    }

    fn table(capacity: usize, now: Instant) -> ConnTrack {
        ConnTrack::new(
            capacity,
            [0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321],
            now,
        )
    }

    #[test]
    fn a_reply_finds_its_requests_entry_and_knows_it_is_a_reply() {
        let now = Instant::now();
        let mut ct = table(64, now);
        let out = tuple([10, 0, 0, 1], 40000, [10, 0, 1, 1], 443, TCP);
        let (key, fwd) = Key::of(&out);
        ct.insert(key, fwd, State::Opening, 1, now).unwrap();
        let (rkey, rfwd) = Key::of(&out.reversed());
        assert_eq!(rkey, key);
        let e = ct.find(&rkey, rfwd, now).unwrap();
        assert!(e.reply);
        assert_eq!(ct.opening(e.handle), out);
        ct.on_packet(e.handle, true, Some(SYN | ACK), now);
        assert_eq!(ct.find(&key, fwd, now).unwrap().state, State::Replied);
    }

    #[test]
    fn timers_follow_the_state_and_restart_with_each_packet() {
        let t0 = Instant::now();
        let mut ct = table(64, t0);
        let udp = tuple([10, 0, 0, 1], 5000, [10, 0, 1, 1], 53, UDP);
        let (key, fwd) = Key::of(&udp);
        let h = ct.insert(key, fwd, State::Opening, 1, t0).unwrap();
        assert!(ct.find(&key, fwd, t0 + Duration::from_secs(29)).is_some());
        assert!(ct.find(&key, fwd, t0 + Duration::from_secs(31)).is_none());
        ct.on_packet(h, true, None, t0 + Duration::from_secs(20));
        let later = t0 + Duration::from_secs(20 + 179);
        assert_eq!(ct.find(&key, fwd, later).unwrap().state, State::Replied);
        assert!(ct
            .find(&key, fwd, t0 + Duration::from_secs(20 + 181))
            .is_none());
        let tcp = tuple([10, 0, 0, 1], 5000, [10, 0, 1, 1], 22, TCP);
        let (key, fwd) = Key::of(&tcp);
        let h = ct.insert(key, fwd, State::Opening, 1, t0).unwrap();
        ct.on_packet(h, true, Some(SYN | ACK), t0);
        assert!(ct.find(&key, fwd, t0 + Duration::from_secs(3599)).is_some());
        ct.on_packet(h, false, Some(FIN | ACK), t0);
        assert!(ct.find(&key, fwd, t0 + Duration::from_secs(61)).is_none());
    }

    #[test]
    fn a_full_bucket_evicts_an_unanswered_flow_but_never_an_answered_one() {
        let now = Instant::now();
        // one bucket
        let mut ct = table(WAYS, now);
        let mut handles = Vec::new();
        for port in 0..WAYS as u16 {
            let (k, f) = Key::of(&tuple([10, 0, 0, 1], 1000 + port, [10, 0, 1, 1], 80, TCP));
            handles.push((k, f, ct.insert(k, f, State::Opening, 1, now).unwrap()));
        }
        // answer all but the first
        for (_, _, h) in &handles[1..] {
            ct.on_packet(*h, true, Some(SYN | ACK), now);
        }
        let (k, f) = Key::of(&tuple([10, 0, 0, 2], 1, [10, 0, 1, 1], 80, TCP));
        ct.insert(k, f, State::Opening, 1, now).unwrap();
        assert_eq!(ct.stats().evicted, 1);
        assert!(
            ct.find(&handles[0].0, handles[0].1, now).is_none(),
            "the unanswered one went"
        );
        // the newcomer is unanswered, so the next one evicts it; answer it first
        let e = ct.find(&k, f, now).unwrap();
        ct.on_packet(e.handle, true, Some(SYN | ACK), now);
        let (k2, f2) = Key::of(&tuple([10, 0, 0, 3], 1, [10, 0, 1, 1], 80, TCP));
        assert_eq!(ct.insert(k2, f2, State::Opening, 1, now), Err(Full));
        assert_eq!(ct.stats().full, 1);
        assert_eq!(ct.live(now), WAYS);
    }

    #[test]
    fn an_expired_entry_frees_its_slot_for_a_new_flow() {
        let t0 = Instant::now();
        let mut ct = table(WAYS, t0);
        for port in 0..WAYS as u16 {
            let (k, f) = Key::of(&tuple([10, 0, 0, 1], port, [10, 0, 1, 1], 80, UDP));
            let h = ct.insert(k, f, State::Opening, 1, t0).unwrap();
            ct.on_packet(h, true, None, t0);
        }
        let later = t0 + CONNTRACK_REPLIED + Duration::from_secs(1);
        let (k, f) = Key::of(&tuple([10, 0, 0, 9], 9, [10, 0, 1, 1], 80, UDP));
        assert!(ct.insert(k, f, State::Opening, 1, later).is_ok());
        assert_eq!((ct.stats().evicted, ct.stats().full), (0, 0));
        assert_eq!(ct.live(later), 1);
    }

    #[test]
    fn a_closed_tcp_flow_reopens_on_a_new_syn_from_its_opener() {
        let now = Instant::now();
        let mut ct = table(64, now);
        let (k, f) = Key::of(&tuple([10, 0, 0, 1], 4000, [10, 0, 1, 1], 80, TCP));
        let h = ct.insert(k, f, State::Opening, 1, now).unwrap();
        ct.on_packet(h, true, Some(RST), now);
        assert_eq!(ct.find(&k, f, now).unwrap().state, State::Reset);
        ct.on_packet(h, false, Some(SYN), now);
        assert_eq!(ct.find(&k, f, now).unwrap().state, State::Opening);
    }

    #[test]
    fn fragments_of_one_datagram_share_a_key_apart_from_the_flows() {
        let t = tuple([10, 0, 0, 1], 4000, [10, 0, 1, 1], 53, UDP);
        assert_eq!(Key::fragment(&t, 7), Key::fragment(&t, 7));
        assert_ne!(Key::fragment(&t, 7), Key::fragment(&t, 8));
        assert_ne!(Key::fragment(&t, 7), Key::of(&t).0);
    }
}
