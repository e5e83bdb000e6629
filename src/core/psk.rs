//! Pre-shared keys from a mesh secret: each pair of nodes gets its own PSK per epoch,
//! `HKDF-SHA256(secret; salt = "wiremesh psk v1", info = epoch ‖ lower key ‖ higher key)`, so a
//! node without the secret never completes a handshake even with a valid static key, and a
//! leaked PSK is worth one pair for one epoch.
//!
//! Epochs are wall-clock (`unix time / epoch length`): nodes agree without talking. A clock
//! skewed by up to one epoch is tolerated because a responder answers with the PSK of the
//! initiator's epoch (its low bits travel in the session slot, see `engine/session.rs`), as
//! long as that epoch is within one of its own.

use crate::core::key::PublicKey;
use std::time::Duration;

/// A mesh secret. Never printed: its `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct MeshSecret(Vec<u8>);

/// Fewest bytes a mesh secret may have.
pub const MIN_SECRET_LEN: usize = 16;

impl MeshSecret {
    /// `None` when shorter than [`MIN_SECRET_LEN`].
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= MIN_SECRET_LEN).then_some(Self(bytes))
    }
}

impl std::fmt::Debug for MeshSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MeshSecret({} bytes)", self.0.len())
    }
}

/// The epoch `since_unix` falls in, for epochs of `len`.
pub fn epoch_at(since_unix: Duration, len: Duration) -> u64 {
    since_unix.as_secs() / len.as_secs().max(1)
}

/// The epoch within one of `ours` whose two low bits are `low2`: the initiator's epoch as the
/// responder reads it from the initiator's session slot. `None` when no such epoch is near.
pub fn epoch_near(ours: u64, low2: u32) -> Option<u64> {
    [ours, ours + 1, ours.wrapping_sub(1)]
        .into_iter()
        .find(|e| (*e & 3) as u32 == low2 & 3)
}

struct Len32;
impl ring::hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// The PSK of the pair {`a`, `b`} in `epoch` (symmetric in `a` and `b`).
pub fn pair_psk(secret: &MeshSecret, epoch: u64, a: &PublicKey, b: &PublicKey) -> [u8; 32] {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"wiremesh psk v1");
    let prk = salt.extract(&secret.0);
    let epoch = epoch.to_be_bytes();
    let info = [&epoch[..], lo.as_bytes(), hi.as_bytes()];
    let mut out = [0u8; 32];
    prk.expand(&info, Len32)
        .and_then(|okm| okm.fill(&mut out))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> MeshSecret {
        MeshSecret::new(vec![b; 32]).unwrap()
    }

    #[test]
    fn a_pair_psk_is_symmetric_and_changes_with_epoch_secret_and_pair() {
        let (a, b, c) = (
            PublicKey::from_bytes([1; 32]),
            PublicKey::from_bytes([2; 32]),
            PublicKey::from_bytes([3; 32]),
        );
        let k = pair_psk(&secret(7), 10, &a, &b);
        assert_eq!(k, pair_psk(&secret(7), 10, &b, &a));
        for other in [
            pair_psk(&secret(7), 11, &a, &b),
            pair_psk(&secret(8), 10, &a, &b),
            pair_psk(&secret(7), 10, &a, &c),
        ] {
            assert_ne!(k, other);
        }
    }

    #[test]
    fn the_initiators_epoch_is_found_within_one_of_ours() {
        for (ours, low2, want) in [
            (100, 100 & 3, Some(100)),
            (100, 101 & 3, Some(101)),
            (100, 99 & 3, Some(99)),
            (100, 102 & 3, None),
        ] {
            assert_eq!(epoch_near(ours, low2), want, "{ours} {low2}");
        }
        let hour = Duration::from_secs(3600);
        assert_eq!(epoch_at(Duration::from_secs(7199), hour), 1);
        assert_eq!(epoch_at(Duration::from_secs(7200), hour), 2);
    }

    #[test]
    fn a_short_secret_is_refused_and_a_secret_never_prints() {
        assert!(MeshSecret::new(vec![1; 15]).is_none());
        assert_eq!(format!("{:?}", secret(0x41)), "MeshSecret(32 bytes)");
    }
}
