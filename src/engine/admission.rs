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
//! 4. The rest is admitted: only then is it demultiplexed, by a guessed sender or by its keys.
//!
//! Data packets and cookie replies pass untouched: they carry no MAC1, and what they cost is a
//! table lookup and one AEAD check.
//!
//! Time is an argument: the daemon's receive loops read the clock once per `recvmmsg`. Without
//! one (`handle_datagram`), the bucket is not refilled.

use super::drops::DropReason;
use super::identity::OwnKey;
use super::sink::Sink;
use crate::constants::{HANDSHAKE_BURST, HANDSHAKE_RATE_LIMIT};
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::TunnResult;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    cookie_replies: AtomicU64,
}

/// Tokens for handshake messages, refilled with time.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was last refilled (`None` before the first time given).
    at: Option<Instant>,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                tokens: HANDSHAKE_BURST as f64,
                at: None,
            }),
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
        now: Option<Instant>,
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
        if self.take_token(now) {
            return Ok(());
        }
        match own
            .cookies
            .verify_packet(Some(from.ip()), datagram, &mut reply)
        {
            Ok(_) => Ok(()),
            Err(TunnResult::WriteToNetwork(cookie)) => {
                sink.send(from, cookie);
                self.cookie_replies.fetch_add(1, Ordering::Relaxed);
                Err(DropReason::RateLimited)
            }
            Err(_) => Err(DropReason::Decrypt),
        }
    }

    /// Refills the bucket for the time passed since the last call, then takes a token if one
    /// is left.
    fn take_token(&self, now: Option<Instant>) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(now) = now {
            if let Some(at) = b.at.filter(|at| now > *at) {
                let earned = now.duration_since(at).as_secs_f64() * HANDSHAKE_RATE_LIMIT as f64;
                b.tokens = (b.tokens + earned).min(HANDSHAKE_BURST as f64);
            }
            b.at = Some(b.at.map_or(now, |at| at.max(now)));
        }
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Cookie replies sent since the device started.
    pub fn cookie_replies(&self) -> u64 {
        self.cookie_replies.load(Ordering::Relaxed)
    }
}

impl super::device::Device {
    /// [`Admission::check`] with this device's keys; a refused datagram is counted.
    pub(super) fn admit(
        &self,
        now: Option<Instant>,
        from: SocketAddr,
        datagram: &[u8],
        sink: &mut impl Sink,
    ) -> bool {
        let keys = &self.identity.load().keys;
        match self.admission.check(keys, now, from, datagram, sink) {
            Ok(()) => true,
            Err(reason) => {
                self.drop_packet(reason);
                false
            }
        }
    }

    /// Handshake messages answered with a cookie reply instead of being handled (a flood).
    pub fn cookie_replies(&self) -> u64 {
        self.admission.cookie_replies()
    }
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
}
