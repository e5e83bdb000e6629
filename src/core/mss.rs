//! TCP MSS clamping: the safety net under path-MTU discovery. A SYN crossing the tunnel has
//! its MSS option lowered to fit the path, so TCP never even tries segments that would not fit,
//! whatever ICMP does on the way.

/// Lowers the MSS option of a TCP SYN in `pkt` to fit `mtu`, fixing the TCP checksum
/// incrementally (RFC 1624). Returns true when it changed the packet.
pub fn clamp(pkt: &mut [u8], mtu: u16) -> bool {
    let (ip_len, proto, v6) = match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= 20 => {
            // only first fragments carry a TCP header
            if u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff != 0 {
                return false;
            }
            (usize::from(pkt[0] & 0x0f) * 4, pkt[9], false)
        }
        Some(6) if pkt.len() >= 40 => (40, pkt[6], true),
        _ => return false,
    };
    if proto != 6 || pkt.len() < ip_len + 20 {
        return false;
    }
    let tcp = &mut pkt[ip_len..];
    if tcp[13] & 0x02 == 0 {
        return false; // not a SYN
    }
    let max = mtu.saturating_sub(if v6 { 60 } else { 40 });
    let data_off = (usize::from(tcp[12] >> 4) * 4).min(tcp.len());
    let mut i = 20;
    while i + 1 < data_off {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(tcp[i + 1]);
                if len < 2 || i + len > data_off {
                    break;
                }
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if old <= max {
                        return false;
                    }
                    tcp[i + 2..i + 4].copy_from_slice(&max.to_be_bytes());
                    // HC' = ~(~HC + ~m + m')
                    let hc = u16::from_be_bytes([tcp[16], tcp[17]]);
                    let mut acc = u32::from(!hc) + u32::from(!old) + u32::from(max);
                    while acc >> 16 != 0 {
                        acc = (acc & 0xffff) + (acc >> 16);
                    }
                    tcp[16..18].copy_from_slice(&(!(acc as u16)).to_be_bytes());
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_checksum_ok(pkt: &[u8]) -> bool {
        let mut acc: u32 = 0;
        let add = |acc: &mut u32, d: &[u8]| {
            for c in d.chunks(2) {
                *acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
        };
        add(&mut acc, &pkt[12..20]);
        let tcp = &pkt[20..];
        acc += 6 + tcp.len() as u32;
        add(&mut acc, tcp);
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16 == 0xffff
    }

    /// An IPv4 TCP SYN with MSS 1460, window scale and SACK options and a correct checksum.
    fn syn(flags: u8) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 52, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 244, 1, 1, 10, 244, 2, 1,
        ];
        let mut t = vec![
            0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x80, flags, 0xff, 0xff, 0, 0, 0, 0,
        ];
        t.extend_from_slice(&[2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0]);
        p.extend_from_slice(&t);
        let mut acc: u32 = 0;
        for c in p[12..20].chunks(2).chain(p[20..].chunks(2)) {
            acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        acc += 6 + 32;
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        let c = !(acc as u16);
        p[36..38].copy_from_slice(&c.to_be_bytes());
        assert!(tcp_checksum_ok(&p));
        p
    }

    #[test]
    fn a_syn_is_clamped_to_the_path_and_keeps_a_valid_checksum() {
        let mut p = syn(0x02);
        assert!(clamp(&mut p, 1340));
        assert_eq!(u16::from_be_bytes([p[42], p[43]]), 1300);
        assert!(tcp_checksum_ok(&p));
        let mut synack = syn(0x12);
        assert!(clamp(&mut synack, 1400));
        assert_eq!(u16::from_be_bytes([synack[42], synack[43]]), 1360);
        assert!(tcp_checksum_ok(&synack));
    }

    #[test]
    fn segments_that_are_not_syns_or_already_fit_are_untouched() {
        let mut ack = syn(0x10);
        assert!(!clamp(&mut ack, 1340));
        let mut small = syn(0x02);
        assert!(!clamp(&mut small, 1500));
        let mut junk = vec![0x45; 30];
        assert!(!clamp(&mut junk, 1280));
    }
}
