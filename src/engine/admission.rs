//! Handshake admission: what a handshake message must pass before it may cost a
//! Diffie-Hellman. Finding an initiation's sender (`parse_handshake_anon`) is one, making a
//! session for a guessed sender is another (`Tunn::new` computes the static-static secret), and
//! answering is three more; a flood of initiations with a valid MAC1 (MAC1 is keyed by our
//! *public* key, so anyone can make one) cost 52 µs of CPU per packet before this check, and
//! pings across the flooded node were lost.
//!
//! The rules, in order, for initiations and responses alike (WireGuard's cookie mechanism):
//! 1. MAC1 must be valid for one of our keys (one BLAKE2s per key); if not, the message is
//!    dropped as `decrypt_failure`. Garbage and forged MACs never get further, nor count.
//! 2. A message with a valid MAC1 takes a token from a bucket that refills at
//!    [`HANDSHAKE_RATE_LIMIT`] a second up to [`HANDSHAKE_BURST`]; with a token it is admitted.
//!    The bucket spreads what a flood gets through (one every millisecond) instead of letting a
//!    second's allowance through at once, which held the fast-lane thread for about 100 ms
//!    each second and lost pings.
//! 3. With the bucket empty ("under load"), a message must carry a valid MAC2, keyed by the
//!    cookie for its source address; one without it is answered with a cookie reply (64 bytes,
//!    smaller than what it answers, so no amplification) and dropped as `rate_limited`. A real
//!    peer keeps the cookie and sends its next initiation, at its retransmit timer, with MAC2;
//!    an attacker at a forged address never sees the cookie.
//! 4. A message admitted by its MAC2 takes a token from its source address's own bucket
//!    ([`HANDSHAKE_PER_SOURCE_RATE`] a second, [`HANDSHAKE_PER_SOURCE_BURST`] deep); without
//!    one it is dropped as `rate_limited`, unanswered: an address that receives its cookies
//!    can answer them, and must not buy a Diffie-Hellman per packet that way.
//! 5. The rest is admitted: only then is it demultiplexed, by a guessed sender or by its keys.
//!
//! Data packets and cookie replies pass untouched: they carry no MAC1, and what they cost is a
//! table lookup and one AEAD check.
//!
//! Time is an argument: the daemon's receive loops read the clock once per `recvmmsg`.

use super::counters::DropReason;
use super::own_keys::OwnKey;
use super::sink::Sink;
use crate::constants::{
    HANDSHAKE_BURST, HANDSHAKE_PER_SOURCE_BURST, HANDSHAKE_PER_SOURCE_RATE, HANDSHAKE_RATE_LIMIT,
    HANDSHAKE_SOURCES,
};
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::TunnResult;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// WireGuard's message types and lengths for the two handshake messages.
const INITIATION: (u32, usize) = (1, 148);
const RESPONSE: (u32, usize) = (2, 92);
/// A cookie reply's length (message type 3).
const COOKIE_REPLY_LEN: usize = 64;

/// The load decision and what admission counted (its drops are counted as drops).
#[derive(Debug)]
pub(super) struct Admission {
    bucket: Mutex<Bucket>,
    /// Under load, for messages admitted by MAC2: a bucket per source address.
    sources: Mutex<HashMap<IpAddr, Bucket>>,
    cookie_replies: AtomicU64,
}

/// Tokens for handshake messages, refilled with time.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was last refilled (`None` before the first time given).
    at: Option<Instant>,
}

impl Bucket {
    fn full(depth: u64) -> Self {
        Self {
            tokens: depth as f64,
            at: None,
        }
    }

    /// Refills for the time passed since the last call (`rate` a second, up to `depth`), then
    /// takes a token if one is left.
    fn take(&mut self, now: Instant, rate: u64, depth: u64) -> bool {
        if let Some(at) = self.at.filter(|at| now > *at) {
            let earned = now.duration_since(at).as_secs_f64() * rate as f64;
            self.tokens = (self.tokens + earned).min(depth as f64);
        }
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            bucket: Mutex::new(Bucket::full(HANDSHAKE_BURST)),
            sources: Mutex::new(HashMap::new()),
            cookie_replies: AtomicU64::new(0),
        }
    }
}

impl Admission {
    /// Whether `datagram` may go on to be demultiplexed. A refused handshake message is
    /// answered with a cookie reply into `sink` where the rules above say so; the error is the
    /// reason to count it under. `keys`: ours, newest first.
    pub fn check(
        &self,
        keys: &[Arc<OwnKey>],
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        sink: &mut impl Sink,
    ) -> Result<(), DropReason> {
        if !is_handshake(datagram) {
            return Ok(());
        }
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        let mut ours = None;
        for own in keys {
            match own.mac1_only.verify_packet(None, datagram, &mut reply) {
                Ok(_) => {
                    ours = Some(own);
                    break;
                }
                // not for this key: maybe for the other one during a rotation
                Err(TunnResult::Err(WireGuardError::InvalidMac)) => {}
                Err(_) => return Err(DropReason::Decrypt),
            }
        }
        let own = ours.ok_or(DropReason::Decrypt)?;
        let taken = lock(&self.bucket).take(now, HANDSHAKE_RATE_LIMIT, HANDSHAKE_BURST);
        if taken {
            return Ok(());
        }
        match own
            .cookies
            .verify_packet(Some(from.ip()), datagram, &mut reply)
        {
            Ok(_) if self.source_allows(from.ip(), now) => Ok(()),
            Ok(_) => Err(DropReason::RateLimited),
            Err(TunnResult::WriteToNetwork(cookie)) => {
                sink.send(from, cookie);
                self.cookie_replies.fetch_add(1, Ordering::Relaxed);
                Err(DropReason::RateLimited)
            }
            Err(_) => Err(DropReason::Decrypt),
        }
    }

    /// Takes a token from `ip`'s own bucket (made full for a new address).
    fn source_allows(&self, ip: IpAddr, now: Instant) -> bool {
        let mut sources = lock(&self.sources);
        if !sources.contains_key(&ip) && sources.len() >= HANDSHAKE_SOURCES {
            // a bucket quiet for a second is full again: forgetting it changes nothing
            let full_after = HANDSHAKE_PER_SOURCE_BURST as f64 / HANDSHAKE_PER_SOURCE_RATE as f64;
            sources.retain(|_, b| {
                b.at.is_none_or(|at| now.saturating_duration_since(at).as_secs_f64() < full_after)
            });
            if sources.len() >= HANDSHAKE_SOURCES {
                return false;
            }
        }
        sources
            .entry(ip)
            .or_insert(Bucket::full(HANDSHAKE_PER_SOURCE_BURST))
            .take(now, HANDSHAKE_PER_SOURCE_RATE, HANDSHAKE_PER_SOURCE_BURST)
    }

    /// Cookie replies sent since the device started.
    pub fn cookie_replies(&self) -> u64 {
        self.cookie_replies.load(Ordering::Relaxed)
    }
}

/// A lock that a panicking holder left usable: a bucket is consistent after every statement.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `datagram` is shaped as a handshake initiation or response (type and exact length,
/// as boringtun parses them), without parsing it.
fn is_handshake(datagram: &[u8]) -> bool {
    let Some(head) = datagram.first_chunk::<4>() else {
        return false;
    };
    let kind = (u32::from_le_bytes(*head), datagram.len());
    kind == INITIATION || kind == RESPONSE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_two_handshake_messages_at_their_exact_lengths_are_handshakes() {
        let table: [(&[u8], usize, bool); 7] = [
            (&[1, 0, 0, 0], 148, true),
            (&[2, 0, 0, 0], 92, true),
            (&[1, 0, 0, 0], 149, false),
            (&[2, 0, 0, 0], 148, false),
            (&[3, 0, 0, 0], 64, false),
            (&[4, 0, 0, 0], 92, false),
            (&[1, 0, 0, 1], 148, false),
        ];
        for (head, len, want) in table {
            let mut d = head.to_vec();
            d.resize(len, 0);
            assert_eq!(is_handshake(&d), want, "{head:?} of {len} bytes");
        }
        assert!(!is_handshake(&[1, 0, 0]));
    }

    #[test]
    fn the_per_source_buckets_stay_bounded_and_forget_quiet_addresses_first() {
        let admission = Admission::default();
        let t0 = Instant::now();
        let ip = |i: usize| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        for i in 0..HANDSHAKE_SOURCES {
            assert!(admission.source_allows(ip(i), t0));
        }
        let newcomer = ip(HANDSHAKE_SOURCES);
        assert!(
            !admission.source_allows(newcomer, t0),
            "a full table took a new address"
        );
        assert!(admission.source_allows(newcomer, t0 + Duration::from_secs(1)));
        assert_eq!(
            lock(&admission.sources).len(),
            1,
            "the quiet ones were forgotten"
        );
        // one address: its burst at once, then one per 1/rate
        let one = ip(0);
        let t1 = t0 + Duration::from_secs(2);
        let allowed = (0..10).filter(|_| admission.source_allows(one, t1)).count();
        assert_eq!(allowed as u64, HANDSHAKE_PER_SOURCE_BURST);
        let next = t1 + Duration::from_secs(1) / HANDSHAKE_PER_SOURCE_RATE as u32;
        assert!(admission.source_allows(one, next));
        assert!(!admission.source_allows(one, next));
    }
}
