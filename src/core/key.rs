//! WireGuard keys as checked types: Curve25519 keys in standard base64, the format `wg` uses.
//!
//! A [`PrivateKey`] never prints itself: its `Debug` is redacted, it has no `Display`, and it is
//! zeroed on drop by the underlying `x25519` type.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use boringtun::x25519;
use std::fmt;
use std::str::FromStr;

/// Why a key string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not valid base64")]
    Base64,
    #[error("decodes to {0} bytes, a WireGuard key has 32")]
    Length(usize),
    #[error(
        "a low-order Curve25519 point (all zeros or another of the few points of order at most \
         8): every Diffie-Hellman with it gives zero, so no handshake with it can succeed"
    )]
    LowOrder,
}

/// The u-coordinates of the points of order 1, 2, 4 and 8 on Curve25519 and its twist, little
/// endian, in every encoding below 2^255: 0, 1, the two of order 8, p-1, and p and p+1 (0 and 1
/// unreduced). The tests check each against a real Diffie-Hellman.
const LOW_ORDER: [[u8; 32]; 7] = [
    small(0),
    small(1),
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    near_p(0xec),
    near_p(0xed),
    near_p(0xee),
];

/// The 32-byte little-endian encoding of a number below 256.
const fn small(v: u8) -> [u8; 32] {
    let mut b = [0; 32];
    b[0] = v;
    b
}

/// All ones but bit 255 and the lowest byte, `low`: p - 1, p and p + 1 (p = 2^255 - 19) for
/// 0xec, 0xed and 0xee.
const fn near_p(low: u8) -> [u8; 32] {
    let mut b = [0xff; 32];
    b[0] = low;
    b[31] = 0x7f;
    b
}

fn decode32(s: &str) -> Result<[u8; 32], KeyError> {
    let bytes = STANDARD.decode(s.trim()).map_err(|_| KeyError::Base64)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length(bytes.len()))
}

/// A peer's static public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_x25519(self) -> x25519::PublicKey {
        x25519::PublicKey::from(self.0)
    }

    /// Lowercase hex, the encoding of the UAPI protocol.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the UAPI's hex. Unlike the base64 parser it takes any 32 bytes, low-order points
    /// included: the UAPI mirrors `wg`, which (like the kernel and wireguard-go) accepts any 32
    /// bytes as a peer's key, and `get` answers must read back whatever was set.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(s).map_err(|_| KeyError::Base64)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| KeyError::Length(bytes.len()))
    }

    /// Whether the key is a point of order 1, 2, 4 or 8 (on the curve or its twist): all zeros
    /// and a dozen other encodings. X25519 clamps every private key to a multiple of 8, so the
    /// shared secret with such a point is zero whatever the private key: no handshake with it
    /// can complete (boringtun refuses the zero secret), and were one made, anyone could compute
    /// its keys. A lookup in the list of these points rather than the test \[8\]P = identity:
    /// that test (curve25519-dalek's ladder and an inversion) took 8.9 µs a key in a release
    /// build, 89 of the 162 ms of loading a 10,000-node topology.
    pub fn is_low_order(&self) -> bool {
        let mut u = self.0;
        u[31] &= 0x7f; // X25519 ignores bit 255, so each point has a second encoding
        LOW_ORDER.contains(&u)
    }

    /// Short, stable tag for logs and tables: the first 8 base64 characters, as `wg` users know them.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(8);
        s
    }
}

/// The parser of keys people write (topology files): besides the base64 and the length, it
/// refuses a low-order point, all zeros being the likely one (a placeholder left in a file).
impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let key = Self(decode32(s)?);
        if key.is_low_order() {
            return Err(KeyError::LowOrder);
        }
        Ok(key)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self)
    }
}

/// A node's static private key.
#[derive(Clone)]
pub struct PrivateKey(x25519::StaticSecret);

impl PrivateKey {
    /// A fresh key from `rng`. The caller brings the randomness, so the core draws none of
    /// its own: the binary passes the operating system's (`io::keyfile::generate`).
    pub fn from_rng(rng: &mut impl rand_core::CryptoRngCore) -> Self {
        Self(x25519::StaticSecret::random_from_rng(rng))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(x25519::StaticSecret::from(bytes))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519::PublicKey::from(&self.0).to_bytes())
    }

    pub fn secret(&self) -> &x25519::StaticSecret {
        &self.0
    }

    /// Standard base64, for the key file only. Deliberately not `Display`.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    /// Lowercase hex, for the UAPI `get` answer only.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        decode32(s).map(Self::from_bytes)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(<redacted>, public {})", self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 section 6.1 test vector (Alice), in the base64 form `wg pubkey` reads and writes.
    #[test]
    fn public_key_matches_rfc7748_vector() {
        let private: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let key = PrivateKey::from_bytes(private);
        assert_eq!(
            key.public_key().to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn base64_round_trips_and_bad_keys_are_refused() {
        let key = crate::io::keyfile::generate();
        let text = key.public_key().to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key.public_key());
        assert_eq!("abc".parse::<PublicKey>().unwrap_err(), KeyError::Base64);
        assert_eq!(
            "AAAA".parse::<PublicKey>().unwrap_err(),
            KeyError::Length(3)
        );
    }

    /// Every encoding of a low-order point: the list, and each entry with bit 255 set.
    fn low_order_keys() -> Vec<PublicKey> {
        LOW_ORDER
            .iter()
            .flat_map(|&u| {
                let mut high = u;
                high[31] |= 0x80;
                [PublicKey::from_bytes(u), PublicKey::from_bytes(high)]
            })
            .collect()
    }

    #[test]
    fn every_low_order_point_is_refused_and_gives_a_zero_shared_secret() {
        let ours = crate::io::keyfile::generate();
        for key in low_order_keys() {
            let shared = ours.secret().diffie_hellman(&key.to_x25519());
            assert!(!shared.was_contributory(), "{key:?}: the table is wrong");
            assert!(key.is_low_order(), "{key:?}");
            assert_eq!(
                key.to_string().parse::<PublicKey>(),
                Err(KeyError::LowOrder),
                "{key:?}"
            );
        }
        assert_eq!(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".parse::<PublicKey>(),
            Err(KeyError::LowOrder)
        );
    }

    #[test]
    fn the_check_agrees_with_a_real_diffie_hellman_on_real_keys_and_simple_patterns() {
        let ours = crate::io::keyfile::generate();
        let mut keys: Vec<PublicKey> = (0..200)
            .map(|_| crate::io::keyfile::generate().public_key())
            .collect();
        // keys tests and examples make up (some on the twist): repeated bytes and small numbers,
        // among which 0 and 1 are low order
        keys.extend((1..=255u8).map(|b| PublicKey::from_bytes([b; 32])));
        keys.extend((0..1000u32).map(|n| {
            let mut b = [0; 32];
            b[..4].copy_from_slice(&n.to_le_bytes());
            PublicKey::from_bytes(b)
        }));
        for key in keys {
            let contributory = ours
                .secret()
                .diffie_hellman(&key.to_x25519())
                .was_contributory();
            assert_eq!(key.is_low_order(), !contributory, "{key:?}");
            if contributory {
                assert_eq!(key.to_string().parse::<PublicKey>(), Ok(key));
            }
        }
    }

    #[test]
    fn the_uapi_hex_parser_still_takes_the_zero_key() {
        let zero = "0".repeat(64);
        assert_eq!(
            PublicKey::from_hex(&zero),
            Ok(PublicKey::from_bytes([0; 32]))
        );
    }

    #[test]
    fn private_key_debug_never_shows_the_secret() {
        let key = crate::io::keyfile::generate();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.to_base64()));
        assert!(shown.contains("redacted"));
    }
}
