//! Just enough IP header reading for routing decisions: source, destination, TTL.
//! Every accessor checks lengths, so a garbage packet yields `None`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Adds `data` to a running Internet checksum sum (RFC 1071), as 16-bit big-endian words; an
/// odd last byte is padded with zero.
pub fn checksum_add(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

/// Folds a running sum into the final one's-complement checksum.
pub fn checksum_fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    checksum_fold(checksum_add(data, 0))
}

/// Source and destination of an IPv4 or IPv6 packet.
pub fn addresses(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let src: [u8; 4] = packet[12..16].try_into().ok()?;
            let dst: [u8; 4] = packet[16..20].try_into().ok()?;
            Some((Ipv4Addr::from(src).into(), Ipv4Addr::from(dst).into()))
        }
        6 if packet.len() >= 40 => {
            let src: [u8; 16] = packet[8..24].try_into().ok()?;
            let dst: [u8; 16] = packet[24..40].try_into().ok()?;
            Some((Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into()))
        }
        _ => None,
    }
}

/// Destination address only.
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    addresses(packet).map(|(_, d)| d)
}

/// Decrements the TTL / hop limit of a packet being forwarded, fixing the IPv4 header checksum
/// incrementally (RFC 1624). Returns false when the packet must not be forwarded (TTL exhausted
/// or unreadable).
pub fn decrement_ttl(packet: &mut [u8]) -> bool {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => {
            if packet[8] <= 1 {
                return false;
            }
            packet[8] -= 1;
            // TTL is the high byte of the 16-bit word at offset 8: the word drops by 0x0100,
            // so the one's-complement checksum rises by 0x0100.
            let sum = u32::from(u16::from_be_bytes([packet[10], packet[11]])) + 0x0100;
            let folded = (sum & 0xffff) + (sum >> 16);
            packet[10..12].copy_from_slice(&(folded as u16).to_be_bytes());
            true
        }
        Some(6) if packet.len() >= 40 => {
            if packet[7] <= 1 {
                return false;
            }
            packet[7] -= 1;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_checksum(h: &[u8]) -> u16 {
        super::checksum(h)
    }

    fn header(ttl: u8) -> Vec<u8> {
        let mut h = vec![
            0x45, 0, 0, 20, 0x12, 0x34, 0x40, 0, ttl, 1, 0, 0, 10, 244, 1, 1, 10, 244, 2, 1,
        ];
        let c = ipv4_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn ttl_decrement_keeps_the_ipv4_checksum_valid() {
        for ttl in [2u8, 64, 128, 255] {
            let mut h = header(ttl);
            assert!(decrement_ttl(&mut h));
            assert_eq!(h[8], ttl - 1);
            assert_eq!(ipv4_checksum(&h), 0, "ttl {ttl}");
        }
    }

    #[test]
    fn an_exhausted_ttl_is_not_forwarded() {
        let mut h = header(1);
        assert!(!decrement_ttl(&mut h));
    }

    #[test]
    fn garbage_yields_nothing_and_never_panics() {
        for junk in [&[][..], &[0x45][..], &[0x60; 39][..], &[0xff; 64][..]] {
            assert_eq!(addresses(junk), None);
            assert!(!decrement_ttl(&mut junk.to_vec()));
        }
        let h = header(64);
        assert_eq!(
            addresses(&h),
            Some(("10.244.1.1".parse().unwrap(), "10.244.2.1".parse().unwrap()))
        );
    }
}
