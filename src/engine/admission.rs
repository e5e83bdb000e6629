//! Handshake admission: what a handshake message must pass before it may cost a
//! Diffie-Hellman. Finding an initiation's sender (`parse_handshake_anon`) is one, making a
//! session for a guessed sender is another (`Tunn::new` computes the static-static secret), and
//! answering is three more; a flood of initiations with a valid MAC1 (MAC1 is keyed by our
//! *public* key, so anyone can make one) cost 52 µs of CPU per packet before this check, and
//! pings across the flooded node were lost.
//!
//! The rules, in order, for initiations and responses alike (WireGuard's cookie mechanism):
//! 1. MAC1 must be valid for one of our keys (one BLAKE2s per key); if not, the message is
//!    dropped as `decrypt_failure`. Garbage and forged MACs never get further.
//! 2. Each message with a valid MAC1 counts on that key's limiter
//!    ([`HANDSHAKE_RATE_LIMIT`](crate::constants::HANDSHAKE_RATE_LIMIT) a second; the daemon's
//!    timers thread resets it every second through `Device::reset_rate_limiter`).
//! 3. Past the limit ("under load"), a message must carry a valid MAC2, keyed by the cookie
//!    for its source address; one without it is answered with a cookie reply (64 bytes,
//!    smaller than what it answers, so no amplification) and dropped as `rate_limited`. A real
//!    peer keeps the cookie and sends its next initiation, at its retransmit timer, with MAC2;
//!    an attacker at a forged address never sees the cookie.
//! 4. The rest is admitted: only then is it demultiplexed, by a guessed sender or by its keys.
//!
//! Data packets and cookie replies pass untouched: they carry no MAC1, and what they cost is a
//! table lookup and one AEAD check.

use super::drops::DropReason;
use super::identity::OwnKey;
use super::sink::Sink;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::TunnResult;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// WireGuard's message types and lengths for the two handshake messages.
const INITIATION: (u32, usize) = (1, 148);
const RESPONSE: (u32, usize) = (2, 92);
/// A cookie reply's length (message type 3).
const COOKIE_REPLY_LEN: usize = 64;

/// What admission counted: the cookie replies it sent (its drops are counted as drops).
#[derive(Debug, Default)]
pub(super) struct Admission {
    cookie_replies: AtomicU64,
}

impl Admission {
    /// Whether `datagram` may go on to be demultiplexed. A refused handshake message is
    /// answered with a cookie reply into `sink` where the rules above say so; the error is the
    /// reason to count it under. `keys`: ours, newest first.
    pub fn check(
        &self,
        keys: &[Arc<OwnKey>],
        from: SocketAddr,
        datagram: &[u8],
        sink: &mut impl Sink,
    ) -> Result<(), DropReason> {
        if !is_handshake(datagram) {
            return Ok(());
        }
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        for own in keys {
            match own
                .limiter
                .verify_packet(Some(from.ip()), datagram, &mut reply)
            {
                Ok(_) => return Ok(()),
                Err(TunnResult::WriteToNetwork(cookie)) => {
                    sink.send(from, cookie);
                    self.cookie_replies.fetch_add(1, Ordering::Relaxed);
                    return Err(DropReason::RateLimited);
                }
                // not for this key: maybe for the other one during a rotation
                Err(TunnResult::Err(WireGuardError::InvalidMac)) => {}
                Err(_) => return Err(DropReason::Decrypt),
            }
        }
        Err(DropReason::Decrypt)
    }

    /// Cookie replies sent since the device started.
    pub fn cookie_replies(&self) -> u64 {
        self.cookie_replies.load(Ordering::Relaxed)
    }
}

impl super::device::Device {
    /// [`Admission::check`] with this device's keys; a refused datagram is counted.
    pub(super) fn admit(&self, from: SocketAddr, datagram: &[u8], sink: &mut impl Sink) -> bool {
        let keys = &self.identity.load().keys;
        match self.admission.check(keys, from, datagram, sink) {
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
