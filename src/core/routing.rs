//! Longest-prefix match from a destination address to a value (a peer slot, a route).
//!
//! One hash map per prefix length, searched from the longest length present down. A lookup costs
//! at most one hash probe per *distinct* prefix length in the table (usually one to three in a
//! mesh), independent of how many prefixes there are, so 10,000 peers cost the same as ten.

use ipnet::IpNet;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// Hashes a masked address with one folded multiply instead of SipHash: a lookup hashes once
/// per prefix length on every packet, and SipHash was most of its cost. Keys are prefixes from
/// the topology, never chosen by a sender, so a keyed hash buys nothing here; the fold (the
/// high half of the 128-bit product XORed into the low half) spreads the zero host bits of a
/// network address over the bucket index.
#[derive(Default)]
struct PrefixHasher(u64);

const FOLD_SEED: [u64; 2] = [0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344];

fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a).wrapping_mul(u128::from(b));
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for PrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = fold(self.0 ^ u64::from_le_bytes(b) ^ FOLD_SEED[0], FOLD_SEED[1]);
        }
    }
    fn write_u128(&mut self, x: u128) {
        self.0 = fold((x as u64) ^ FOLD_SEED[0], ((x >> 64) as u64) ^ FOLD_SEED[1]);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Level<V> = HashMap<u128, V, BuildHasherDefault<PrefixHasher>>;

#[derive(Debug, Clone)]
struct Family<V> {
    /// (prefix length, masked network → value), longest length first.
    levels: Vec<(u8, Level<V>)>,
}

impl<V> Default for Family<V> {
    fn default() -> Self {
        Self { levels: Vec::new() }
    }
}

fn mask(bits: u32, len: u8, addr: u128) -> u128 {
    if len == 0 {
        return 0;
    }
    let host_bits = bits - u32::from(len);
    let m = if host_bits >= 128 {
        0
    } else {
        !0u128 << host_bits
    };
    // only the low `bits` bits are meaningful
    addr & m & if bits == 128 { !0 } else { (1u128 << bits) - 1 }
}

impl<V> Family<V> {
    fn insert(&mut self, bits: u32, net: u128, len: u8, value: V) -> Option<V> {
        let key = mask(bits, len, net);
        match self.levels.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(i) => self.levels[i].1.insert(key, value),
            Err(i) => {
                let mut map = Level::default();
                map.insert(key, value);
                self.levels.insert(i, (len, map));
                None
            }
        }
    }

    fn remove(&mut self, bits: u32, net: u128, len: u8) -> Option<V> {
        let key = mask(bits, len, net);
        let i = self.levels.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        let removed = self.levels[i].1.remove(&key);
        if self.levels[i].1.is_empty() {
            self.levels.remove(i);
        }
        removed
    }

    fn lookup(&self, bits: u32, addr: u128) -> Option<(u8, &V)> {
        self.levels
            .iter()
            .find_map(|(len, map)| map.get(&mask(bits, *len, addr)).map(|v| (*len, v)))
    }

    fn get(&self, bits: u32, net: u128, len: u8) -> Option<&V> {
        let i = self.levels.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        self.levels[i].1.get(&mask(bits, len, net))
    }
}

/// A longest-prefix-match table over IPv4 and IPv6 prefixes.
#[derive(Debug, Clone)]
pub struct PrefixTable<V> {
    v4: Family<V>,
    v6: Family<V>,
    len: usize,
}

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        Self {
            v4: Family::default(),
            v6: Family::default(),
            len: 0,
        }
    }
}

impl<V> PrefixTable<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts or replaces; returns the value it replaced.
    pub fn insert(&mut self, net: IpNet, value: V) -> Option<V> {
        let old = match net {
            IpNet::V4(n) => {
                self.v4
                    .insert(32, u32::from(n.network()).into(), n.prefix_len(), value)
            }
            IpNet::V6(n) => self
                .v6
                .insert(128, u128::from(n.network()), n.prefix_len(), value),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, net: IpNet) -> Option<V> {
        let old = match net {
            IpNet::V4(n) => self
                .v4
                .remove(32, u32::from(n.network()).into(), n.prefix_len()),
            IpNet::V6(n) => self.v6.remove(128, u128::from(n.network()), n.prefix_len()),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The exact prefix's value, not a longest match.
    pub fn get(&self, net: IpNet) -> Option<&V> {
        match net {
            IpNet::V4(n) => self
                .v4
                .get(32, u32::from(n.network()).into(), n.prefix_len()),
            IpNet::V6(n) => self.v6.get(128, u128::from(n.network()), n.prefix_len()),
        }
    }

    /// The value of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&V> {
        self.lookup_with_len(addr).map(|(_, v)| v)
    }

    /// Like [`lookup`](Self::lookup), also giving the matched prefix length.
    pub fn lookup_with_len(&self, addr: IpAddr) -> Option<(u8, &V)> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(32, u32::from(a).into()),
            IpAddr::V6(a) => self.v6.lookup(128, u128::from(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_longest_matching_prefix_wins() {
        let mut t = PrefixTable::new();
        t.insert(net("10.244.0.0/16"), "cluster");
        t.insert(net("10.244.3.0/24"), "node3");
        t.insert(net("0.0.0.0/0"), "default");
        t.insert(net("fd00::/8"), "v6");
        t.insert(net("fd00:1::/64"), "v6-node");
        let cases = [
            ("10.244.3.9", Some("node3")),
            ("10.244.4.9", Some("cluster")),
            ("192.0.2.1", Some("default")),
            ("fd00:1::5", Some("v6-node")),
            ("fd00:2::5", Some("v6")),
            ("2001:db8::1", None),
        ];
        for (addr, want) in cases {
            assert_eq!(t.lookup(ip(addr)).copied(), want, "{addr}");
        }
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn removing_a_prefix_falls_back_to_the_shorter_one() {
        let mut t = PrefixTable::new();
        t.insert(net("10.0.0.0/8"), 1);
        t.insert(net("10.1.0.0/16"), 2);
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&2));
        assert_eq!(t.remove(net("10.1.0.0/16")), Some(2));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&1));
        assert_eq!(t.remove(net("10.1.0.0/16")), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn host_routes_and_the_default_route_work_in_both_families() {
        let mut t = PrefixTable::new();
        t.insert(net("10.0.0.1/32"), "host");
        t.insert(net("::/0"), "v6default");
        t.insert(net("::1/128"), "v6host");
        assert_eq!(t.lookup(ip("10.0.0.1")), Some(&"host"));
        assert_eq!(t.lookup(ip("10.0.0.2")), None);
        assert_eq!(t.lookup(ip("::1")), Some(&"v6host"));
        assert_eq!(t.lookup(ip("::2")), Some(&"v6default"));
    }

    #[test]
    fn ten_thousand_prefixes_each_find_their_own_value() {
        let mut t = PrefixTable::new();
        for i in 0..10_000u32 {
            let n = ipnet::Ipv4Net::new((0x0a00_0000 | (i << 8)).into(), 24).unwrap();
            t.insert(IpNet::V4(n), i);
        }
        for i in (0..10_000u32).step_by(97) {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8) | 7);
            assert_eq!(t.lookup(IpAddr::V4(a)), Some(&i));
        }
    }
}
