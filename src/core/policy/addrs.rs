//! Sets of addresses as a rule's `from` or `to` resolves them: any address, or a list of
//! prefixes. Lists are kept normalised (sorted, no prefix inside another), which makes
//! "which of these prefixes lie inside that one" a binary search: the index pushes rules down
//! to longer prefixes with it, and the lints ask whether one set covers another.

use ipnet::IpNet;
use std::net::IpAddr;

/// The addresses a selector stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addrs {
    Any,
    /// Normalised by [`normalise`]; empty when the selector picks nothing.
    Prefixes(Vec<IpNet>),
}

/// A prefix's place in the sort: family, network, length. A prefix sorts before every prefix
/// inside it.
pub fn sort_key(net: &IpNet) -> (bool, u128, u8) {
    match net {
        IpNet::V4(n) => (false, u128::from(u32::from(n.network())), n.prefix_len()),
        IpNet::V6(n) => (true, u128::from(n.network()), n.prefix_len()),
    }
}

/// The last address of a prefix, as its sort key's number.
fn last(net: &IpNet) -> u128 {
    match net {
        IpNet::V4(n) => u128::from(u32::from(n.broadcast())),
        IpNet::V6(n) => u128::from(n.broadcast()),
    }
}

/// Sorted, duplicates and prefixes inside another dropped: the same addresses, fewest prefixes.
pub fn normalise(mut nets: Vec<IpNet>) -> Vec<IpNet> {
    nets.sort_by_key(sort_key);
    let mut out: Vec<IpNet> = Vec::with_capacity(nets.len());
    for n in nets {
        // kept prefixes are disjoint and sorted, so only the last can hold the next one
        if !out.last().is_some_and(|k| k.contains(&n)) {
            out.push(n);
        }
    }
    out
}

/// The indices of the prefixes of `sorted` (sorted by [`sort_key`]) that lie inside `outer`.
pub fn inside(sorted: &[IpNet], outer: &IpNet) -> std::ops::Range<usize> {
    let (v6, start, len) = sort_key(outer);
    let end = last(outer);
    let from = sorted.partition_point(|n| sort_key(n) < (v6, start, len));
    let to = sorted.partition_point(|n| {
        let (f, a, _) = sort_key(n);
        (f, a) <= (v6, end)
    });
    from..to.max(from)
}

impl Addrs {
    pub fn contains(&self, addr: IpAddr) -> bool {
        match self {
            Addrs::Any => true,
            Addrs::Prefixes(p) => p.iter().any(|n| n.contains(&addr)),
        }
    }

    /// Whether every address of `other` is in `self`. Prefix by prefix: a prefix of `other`
    /// covered only by several of `self`'s together does not count (the lints say so).
    pub fn covers(&self, other: &Addrs) -> bool {
        match (self, other) {
            (Addrs::Any, _) => true,
            (Addrs::Prefixes(_), Addrs::Any) => false,
            (Addrs::Prefixes(mine), Addrs::Prefixes(theirs)) => theirs.iter().all(|t| {
                // the last of mine sorting at or before `t` is the only one that can hold it
                let i = mine.partition_point(|m| sort_key(m) <= sort_key(t));
                i > 0 && mine[i - 1].contains(t)
            }),
        }
    }

    /// Whether no address is in the set.
    pub fn is_empty(&self) -> bool {
        matches!(self, Addrs::Prefixes(p) if p.is_empty())
    }

    /// Whether some address is in both.
    pub fn overlaps(&self, other: &Addrs) -> bool {
        match (self, other) {
            (Addrs::Any, o) | (o, Addrs::Any) => !o.is_empty(),
            (Addrs::Prefixes(a), Addrs::Prefixes(b)) => a
                .iter()
                .any(|x| b.iter().any(|y| x.contains(y) || y.contains(x))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn normalising_drops_duplicates_and_prefixes_inside_others() {
        let n = normalise(nets(&[
            "10.244.2.0/24",
            "10.0.0.0/8",
            "fd00::/64",
            "10.244.2.0/24",
            "192.0.2.0/24",
            "fd00::/8",
        ]));
        assert_eq!(n, nets(&["10.0.0.0/8", "192.0.2.0/24", "fd00::/8"]));
    }

    #[test]
    fn inside_finds_exactly_the_prefixes_within_one() {
        let sorted = normalise(nets(&["10.244.1.0/24", "10.244.2.0/24", "10.245.0.0/24"]));
        let all = {
            let mut v = sorted.clone();
            v.extend(nets(&["0.0.0.0/0", "10.244.0.0/16"]));
            v.sort_by_key(sort_key);
            v
        };
        let got = |outer: &str| -> Vec<String> {
            all[inside(&all, &outer.parse().unwrap())]
                .iter()
                .map(|n| n.to_string())
                .collect()
        };
        assert_eq!(
            got("10.244.0.0/16"),
            ["10.244.0.0/16", "10.244.1.0/24", "10.244.2.0/24"]
        );
        assert_eq!(got("10.244.2.0/24"), ["10.244.2.0/24"]);
        assert_eq!(got("10.244.3.0/24"), Vec::<String>::new());
        assert_eq!(got("0.0.0.0/0").len(), all.len());
        assert_eq!(got("::/0"), Vec::<String>::new());
    }

    #[test]
    fn covering_is_prefix_by_prefix() {
        let wide = Addrs::Prefixes(normalise(nets(&["10.244.0.0/16", "fd00::/8"])));
        let narrow = Addrs::Prefixes(nets(&["10.244.7.0/24", "fd00:1::/64"]));
        assert!(wide.covers(&narrow));
        assert!(!narrow.covers(&wide));
        assert!(Addrs::Any.covers(&wide));
        assert!(!wide.covers(&Addrs::Any));
        let halves = Addrs::Prefixes(nets(&["10.244.7.0/25", "10.244.7.128/25"]));
        assert!(!halves.covers(&Addrs::Prefixes(nets(&["10.244.7.0/24"]))));
        assert!(wide.overlaps(&narrow) && !Addrs::Prefixes(vec![]).overlaps(&Addrs::Any));
    }
}
