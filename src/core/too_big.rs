//! "Packet too big" answers for packets that exceed a path's MTU: ICMPv4 type 3 code 4
//! (fragmentation needed, RFC 1191) and ICMPv6 type 2 (RFC 8201). The engine writes them back
//! into the tun device (or to the sending peer, on a hub), so the sender lowers its path MTU
//! at once instead of losing packets in a black hole.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::core::packet::{checksum_add as sum, checksum_fold as fold};

/// Whether a packet is too big for `mtu` and asks not to be fragmented (IPv4 DF; IPv6 always).
pub fn needed(pkt: &[u8], mtu: u16) -> bool {
    if pkt.len() <= usize::from(mtu) {
        return false;
    }
    match pkt.first().map(|b| b >> 4) {
        Some(4) => pkt.len() >= 20 && pkt[6] & 0x40 != 0,
        Some(6) => pkt.len() >= 40,
        _ => false,
    }
}

/// Whether the packet is itself an ICMP error, which must never be answered with another.
pub(crate) fn is_icmp_error(pkt: &[u8]) -> bool {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            pkt[9] == 1 && pkt.get(ihl).is_some_and(|t| !matches!(t, 0 | 8 | 13 | 14))
        }
        Some(6) => pkt[6] == 58 && pkt.get(40).is_some_and(|t| *t < 128),
        _ => true,
    }
}

/// The "too big" error for `pkt`, from `from` (the packet's own destination, so the error looks
/// as if it came from the path, and is never mistaken for a local martian) to its source. `None` when no error may be sent (families differ, or the
/// packet is an ICMP error itself).
pub fn error(pkt: &[u8], mtu: u16, from: IpAddr) -> Option<Vec<u8>> {
    if is_icmp_error(pkt) {
        return None;
    }
    let (src, _) = crate::core::packet::addresses(pkt)?;
    match (from, src) {
        (IpAddr::V4(from), IpAddr::V4(to)) => Some(too_big_v4(pkt, mtu, from, to)),
        (IpAddr::V6(from), IpAddr::V6(to)) => Some(too_big_v6(pkt, mtu, from, to)),
        _ => None,
    }
}

fn too_big_v4(pkt: &[u8], mtu: u16, from: Ipv4Addr, to: Ipv4Addr) -> Vec<u8> {
    let [hi, lo] = mtu.to_be_bytes();
    icmp_v4_error(pkt, (3, 4), [0, 0, hi, lo], from, to)
}

fn too_big_v6(pkt: &[u8], mtu: u16, from: Ipv6Addr, to: Ipv6Addr) -> Vec<u8> {
    icmp_v6_error(pkt, (2, 0), u32::from(mtu).to_be_bytes(), from, to)
}

/// An ICMPv4 error (type, code), its four bytes after the checksum `rest`, quoting `pkt`'s
/// header and the first 8 bytes of its payload, from `from` to `to`. Shared with the policy's
/// reject answers (`core/policy/reject.rs`).
pub(crate) fn icmp_v4_error(
    pkt: &[u8],
    (kind, code): (u8, u8),
    rest: [u8; 4],
    from: Ipv4Addr,
    to: Ipv4Addr,
) -> Vec<u8> {
    // the offending header and the first 8 bytes of its payload
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let quoted = &pkt[..(ihl + 8).min(pkt.len())];
    let mut icmp = vec![kind, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(quoted);
    let c = fold(sum(&icmp, 0));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut out = vec![0x45, 0xc0];
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
    out.extend_from_slice(&from.octets());
    out.extend_from_slice(&to.octets());
    let c = fold(sum(&out, 0));
    out[10..12].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&icmp);
    out
}

/// An ICMPv6 error (type, code) quoting as much of `pkt` as fits in the IPv6 minimum MTU;
/// see [`icmp_v4_error`].
pub(crate) fn icmp_v6_error(
    pkt: &[u8],
    (kind, code): (u8, u8),
    rest: [u8; 4],
    from: Ipv6Addr,
    to: Ipv6Addr,
) -> Vec<u8> {
    // as much of the packet as fits in the IPv6 minimum MTU (1280)
    let quoted = &pkt[..pkt.len().min(1280 - 48)];
    let mut icmp = vec![kind, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(quoted);
    let mut acc = sum(&from.octets(), 0);
    acc = sum(&to.octets(), acc);
    acc += icmp.len() as u32 + 58;
    let c = fold(sum(&icmp, acc));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut out = vec![0x60, 0, 0, 0];
    out.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    out.extend_from_slice(&[58, 64]);
    out.extend_from_slice(&from.octets());
    out.extend_from_slice(&to.octets());
    out.extend_from_slice(&icmp);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_packet(len: usize, df: bool, proto: u8) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = if df { 0x40 } else { 0 };
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 244, 1, 1]);
        p[16..20].copy_from_slice(&[10, 244, 2, 1]);
        p
    }

    #[test]
    fn an_oversized_df_packet_gets_a_valid_fragmentation_needed_with_the_mtu() {
        let pkt = v4_packet(1400, true, 17);
        assert!(needed(&pkt, 1340));
        let icmp = error(&pkt, 1340, "10.244.1.1".parse().unwrap()).unwrap();
        assert_eq!(fold(sum(&icmp[..20], 0)), 0, "IP header checksum");
        assert_eq!(fold(sum(&icmp[20..], 0)), 0, "ICMP checksum");
        assert_eq!((icmp[20], icmp[21]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1340);
        assert_eq!(&icmp[16..20], &[10, 244, 1, 1], "back to the sender");
        assert_eq!(&icmp[28..48], &pkt[..20], "quotes the offending header");
    }

    #[test]
    fn fitting_packets_and_packets_allowed_to_fragment_are_left_alone() {
        assert!(!needed(&v4_packet(1340, true, 17), 1340));
        assert!(!needed(&v4_packet(1400, false, 17), 1340));
        assert!(!needed(&[0xff; 3000], 1340));
    }

    #[test]
    fn an_icmp_error_is_never_answered_with_another() {
        let mut pkt = v4_packet(1400, true, 1);
        pkt[20] = 3; // destination unreachable
        assert!(error(&pkt, 1340, "10.244.1.1".parse().unwrap()).is_none());
        pkt[20] = 8; // echo request: answered
        assert!(error(&pkt, 1340, "10.244.1.1".parse().unwrap()).is_some());
    }

    #[test]
    fn ipv6_gets_packet_too_big_with_a_valid_checksum() {
        let mut pkt = vec![0u8; 1500];
        pkt[0] = 0x60;
        pkt[4..6].copy_from_slice(&1460u16.to_be_bytes());
        pkt[6] = 17;
        pkt[8..24].copy_from_slice(&"fd10:1::1".parse::<Ipv6Addr>().unwrap().octets());
        pkt[24..40].copy_from_slice(&"fd10:2::1".parse::<Ipv6Addr>().unwrap().octets());
        assert!(needed(&pkt, 1420));
        let from: Ipv6Addr = "fd10:2::1".parse().unwrap();
        let to: Ipv6Addr = "fd10:1::1".parse().unwrap();
        let out = error(&pkt, 1420, IpAddr::V6(from)).unwrap();
        assert!(out.len() <= 1280);
        let icmp = &out[40..];
        assert_eq!(icmp[0], 2);
        assert_eq!(u32::from_be_bytes(icmp[4..8].try_into().unwrap()), 1420);
        let mut acc = sum(&from.octets(), 0);
        acc = sum(&to.octets(), acc);
        acc += icmp.len() as u32 + 58;
        assert_eq!(fold(sum(icmp, acc)), 0);
    }
}
