//! The answer of a rule with `reject = true`: ICMP "communication administratively
//! prohibited" (ICMPv4 type 3 code 13, RFC 1812; ICMPv6 type 1 code 1, RFC 4443) to the
//! packet's sender, so a refused connection fails at once instead of timing out. It comes from
//! the packet's destination, as the path's "too big" answers do (`core/too_big.rs`): that is
//! the address the sender's stack matches the error to, and one from our own address would be
//! dropped by the kernel as a martian.

use super::flow::{Flow, Kind};
use crate::core::too_big::{icmp_v4_error, icmp_v6_error, is_icmp_error};
use std::net::IpAddr;

/// The answer to a rejected `pkt`; `None` when none may be sent: an ICMP error (never
/// answered with another), a later fragment (only a first fragment is answered), or a packet
/// that cannot be read.
pub fn answer(pkt: &[u8]) -> Option<Vec<u8>> {
    let flow = Flow::parse(pkt).ok()?;
    if is_icmp_error(pkt) || matches!(flow.kind, Kind::LaterFragment { .. }) {
        return None;
    }
    match (flow.tuple.dst, flow.tuple.src) {
        (IpAddr::V4(from), IpAddr::V4(to)) => Some(icmp_v4_error(pkt, (3, 13), [0; 4], from, to)),
        (IpAddr::V6(from), IpAddr::V6(to)) => Some(icmp_v6_error(pkt, (1, 1), [0; 4], from, to)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::packet::checksum;
    use crate::core::policy::flow::tests::{tcp, v4};
    use crate::core::policy::flow::{SYN, TCP, UDP};

    #[test]
    fn a_rejected_syn_is_answered_with_administratively_prohibited_that_quotes_it() {
        let syn = v4(
            [10, 244, 1, 1],
            [10, 244, 7, 1],
            TCP,
            &tcp(40000, 5432, SYN),
        );
        let icmp = answer(&syn).unwrap();
        assert_eq!(checksum(&icmp[..20]), 0, "IP header checksum");
        assert_eq!(checksum(&icmp[20..]), 0, "ICMP checksum");
        assert_eq!((icmp[20], icmp[21]), (3, 13));
        assert_eq!(
            &icmp[12..16],
            &[10, 244, 7, 1],
            "from the refused destination"
        );
        assert_eq!(&icmp[16..20], &[10, 244, 1, 1], "to the sender");
        assert_eq!(&icmp[28..56], &syn[..28], "quotes the header and 8 bytes");
        // the sender's side sees it as an error about its own flow
        let f = Flow::parse(&icmp).unwrap();
        assert_eq!(
            f.kind,
            Kind::IcmpError {
                quoted: Flow::parse(&syn).unwrap().tuple
            }
        );
    }

    #[test]
    fn ipv6_gets_communication_administratively_prohibited() {
        let mut p = vec![0x60, 0, 0, 0, 0, 20, TCP, 64];
        p.extend_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&tcp(1, 443, SYN));
        let icmp = answer(&p).unwrap();
        assert_eq!((icmp[6], icmp[40], icmp[41]), (58, 1, 1));
        assert_eq!(&icmp[8..24], &p[24..40], "from the destination");
    }

    #[test]
    fn errors_later_fragments_and_garbage_are_never_answered() {
        let err = answer(&v4([10, 244, 1, 1], [10, 244, 7, 1], TCP, &tcp(1, 2, SYN))).unwrap();
        assert_eq!(answer(&err), None);
        let mut later = v4([10, 244, 1, 1], [10, 244, 7, 1], UDP, &[0; 16]);
        later[7] = 8;
        assert_eq!(answer(&later), None);
        assert_eq!(answer(&[0x45, 1, 2]), None);
    }
}
