//! Which CIDRs are taken, and by whom, answering "does this CIDR overlap any taken one?" in
//! O(log n): validation asks it once per pinned pod CIDR and IPAM once per slot it probes, and a
//! scan over every earlier CIDR made both quadratic in the number of nodes.
//!
//! Two CIDRs overlap only when one contains the other, so the taken CIDRs overlapping a new one
//! are its supernets (at most one per prefix length, found by exact lookups) and its subnets
//! (those whose network address lies inside it: one range of a map ordered by address).

use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::BTreeMap;

/// A CIDR as numbers: network address (IPv4 in the low 32 bits) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cidr {
    pub(crate) start: u128,
    pub(crate) len: u8,
}

impl From<Ipv4Net> for Cidr {
    fn from(n: Ipv4Net) -> Self {
        Cidr {
            start: u128::from(u32::from(n.network())),
            len: n.prefix_len(),
        }
    }
}

impl From<Ipv6Net> for Cidr {
    fn from(n: Ipv6Net) -> Self {
        Cidr {
            start: u128::from(n.network()),
            len: n.prefix_len(),
        }
    }
}

/// Taken CIDRs of one address family (`width` 32 or 128 bits), each with what took it.
pub(crate) struct Claims<T> {
    width: u8,
    taken: BTreeMap<(u128, u8), T>,
}

impl<T> Claims<T> {
    pub(crate) fn v4() -> Self {
        Claims {
            width: 32,
            taken: BTreeMap::new(),
        }
    }

    pub(crate) fn v6() -> Self {
        Claims {
            width: 128,
            taken: BTreeMap::new(),
        }
    }

    fn host_bits(&self, len: u8) -> u32 {
        u32::from(self.width.saturating_sub(len))
    }

    fn last(&self, c: Cidr) -> u128 {
        c.start
            | u128::MAX
                .checked_shr(128 - self.host_bits(c.len))
                .unwrap_or(0)
    }

    /// Records `c` as taken by `by`; a CIDR taken twice keeps its first owner.
    pub(crate) fn insert(&mut self, c: impl Into<Cidr>, by: T) {
        let c = c.into();
        self.taken.entry((c.start, c.len)).or_insert(by);
    }

    /// Every owner of a taken CIDR that overlaps `c`.
    pub(crate) fn overlapping(&self, c: impl Into<Cidr>) -> impl Iterator<Item = &T> {
        let c = c.into();
        let supernets = (0..c.len).filter_map(move |len| {
            let start = c.start
                & !u128::MAX
                    .checked_shr(128 - self.host_bits(len))
                    .unwrap_or(0);
            self.taken.get(&(start, len))
        });
        let subnets = self
            .taken
            .range((c.start, c.len)..=(self.last(c), u8::MAX))
            .map(|(_, by)| by);
        supernets.chain(subnets)
    }

    /// Whether `c` overlaps a taken CIDR.
    pub(crate) fn overlaps(&self, c: impl Into<Cidr>) -> bool {
        self.overlapping(c).next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn overlap_is_containment_either_way_and_nothing_else() {
        let mut c = Claims::v4();
        c.insert(v4("10.1.0.0/16"), "a");
        c.insert(v4("10.2.3.0/24"), "b");
        let owners = |s: &str| c.overlapping(v4(s)).copied().collect::<Vec<_>>();
        assert_eq!(owners("10.1.5.0/24"), ["a"], "inside a");
        assert_eq!(owners("10.0.0.0/8"), ["a", "b"], "holds both");
        assert_eq!(owners("10.2.0.0/16"), ["b"], "holds b");
        assert_eq!(owners("10.2.3.128/25"), ["b"], "inside b");
        assert_eq!(owners("10.1.0.0/16"), ["a"], "equal");
        assert!(owners("10.2.4.0/24").is_empty());
        assert!(owners("10.3.0.0/16").is_empty());
        assert!(owners("11.0.0.0/8").is_empty());
        assert!(c.overlaps(v4("0.0.0.0/0")));
    }

    #[test]
    fn v6_spans_the_whole_width() {
        let mut c = Claims::v6();
        c.insert("fd00:1::/64".parse::<Ipv6Net>().unwrap(), 1);
        assert!(c.overlaps("::/0".parse::<Ipv6Net>().unwrap()));
        assert!(c.overlaps("fd00:1::/112".parse::<Ipv6Net>().unwrap()));
        assert!(!c.overlaps("fd00:2::/64".parse::<Ipv6Net>().unwrap()));
        c.insert("ffff::/16".parse::<Ipv6Net>().unwrap(), 2);
        assert!(c.overlaps("ffff:ffff::/128".parse::<Ipv6Net>().unwrap()));
    }
}
