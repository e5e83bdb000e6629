//! What policy and connection tracking judge a packet by: addresses, protocol, ports (TCP, UDP),
//! the identifier of an ICMP echo, the packet an ICMP error quotes, fragments. Addresses come
//! from `core/packet.rs`; everything here checks lengths, so a garbage packet is an `Err`,
//! never a panic.

use crate::core::packet;
use std::net::IpAddr;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// TCP flags the tracker reads.
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

/// IPv6 extension headers walked to find the transport header, at most this many.
const MAX_EXTENSION_HEADERS: usize = 8;

/// Addresses, protocol and ports of a packet. For an ICMP echo the identifier stands in for a
/// port on the requester's side (request: `src_port`, reply: `dst_port`), so a reply's tuple is
/// its request's reversed, as for TCP and UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IP protocol number (ICMP 1, ICMPv6 58).
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

impl Tuple {
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
}

/// What a packet is, beyond its tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp {
        flags: u8,
    },
    Udp,
    /// ICMP or ICMPv6 echo.
    Echo {
        request: bool,
    },
    /// An ICMP error (destination unreachable and fragmentation needed, packet too big, time
    /// exceeded, parameter problem) and the tuple of the packet it quotes, as that packet was
    /// sent.
    IcmpError {
        quoted: Tuple,
    },
    /// Any other ICMP message.
    Icmp {
        kind: u8,
        code: u8,
    },
    /// Any other protocol: no ports.
    Other,
    /// A fragment after the first: no transport header, so no ports. `id` is the IPv4
    /// identification or the IPv6 fragment identification.
    LaterFragment {
        id: u32,
    },
}

/// A packet as policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub tuple: Tuple,
    pub kind: Kind,
    /// `Some(id)` for the first fragment of a fragmented datagram: once it passes, its later
    /// fragments may.
    pub first_fragment: Option<u32>,
}

/// Why a packet cannot be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("not an IPv4 or IPv6 packet")]
    NotIp,
    #[error("the transport header is cut short")]
    Truncated,
}

impl Flow {
    /// Reads a packet as it leaves or enters the tun device.
    pub fn parse(pkt: &[u8]) -> Result<Flow, Unreadable> {
        let ip = ip_header(pkt)?;
        let tuple = |src_port, dst_port| Tuple {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            src_port,
            dst_port,
        };
        if let Some(id) = ip.later_fragment {
            return Ok(Flow {
                tuple: tuple(0, 0),
                kind: Kind::LaterFragment { id },
                first_fragment: None,
            });
        }
        let l4 = &pkt[ip.header_len..];
        let (kind, src_port, dst_port) = match ip.proto {
            TCP => {
                let h = l4.get(..14).ok_or(Unreadable::Truncated)?;
                let (s, d) = ports(h);
                (Kind::Tcp { flags: h[13] }, s, d)
            }
            UDP => {
                let h = l4.get(..8).ok_or(Unreadable::Truncated)?;
                let (s, d) = ports(h);
                (Kind::Udp, s, d)
            }
            ICMP | ICMPV6 => {
                let h = l4.get(..8).ok_or(Unreadable::Truncated)?;
                let v6 = ip.proto == ICMPV6;
                let (kind, code) = (h[0], h[1]);
                let id = u16::from_be_bytes([h[4], h[5]]);
                match (v6, kind) {
                    (false, 8) | (true, 128) => (Kind::Echo { request: true }, id, 0),
                    (false, 0) | (true, 129) => (Kind::Echo { request: false }, 0, id),
                    (false, 3 | 11 | 12) | (true, 1..=4) => {
                        let quoted = quoted_tuple(&l4[8..]).ok_or(Unreadable::Truncated)?;
                        (Kind::IcmpError { quoted }, 0, 0)
                    }
                    _ => (Kind::Icmp { kind, code }, 0, 0),
                }
            }
            _ => (Kind::Other, 0, 0),
        };
        Ok(Flow {
            tuple: tuple(src_port, dst_port),
            kind,
            first_fragment: ip.first_fragment,
        })
    }
}

fn ports(h: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[2], h[3]]),
    )
}

/// The IP layer of a packet.
struct IpHeader {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    /// Where the transport header starts.
    header_len: usize,
    later_fragment: Option<u32>,
    first_fragment: Option<u32>,
}

fn ip_header(pkt: &[u8]) -> Result<IpHeader, Unreadable> {
    let (src, dst) = packet::addresses(pkt).ok_or(Unreadable::NotIp)?;
    if pkt[0] >> 4 == 4 {
        let header_len = usize::from(pkt[0] & 0x0f) * 4;
        if header_len < 20 || pkt.len() < header_len {
            return Err(Unreadable::NotIp);
        }
        let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
        let id = u32::from(u16::from_be_bytes([pkt[4], pkt[5]]));
        let (offset, more) = (frag & 0x1fff, frag & 0x2000 != 0);
        return Ok(IpHeader {
            src,
            dst,
            proto: pkt[9],
            header_len,
            later_fragment: (offset != 0).then_some(id),
            first_fragment: (offset == 0 && more).then_some(id),
        });
    }
    let (proto, header_len, fragment) = ipv6_transport(pkt).ok_or(Unreadable::Truncated)?;
    let (later_fragment, first_fragment) = match fragment {
        Some((id, 0, true)) => (None, Some(id)),
        Some((_, 0, false)) | None => (None, None),
        Some((id, _, _)) => (Some(id), None),
    };
    Ok(IpHeader {
        src,
        dst,
        proto,
        header_len,
        later_fragment,
        first_fragment,
    })
}

/// The transport protocol of an IPv6 packet and where its header starts, past the extension
/// headers; and its fragment header's (identification, offset, more fragments), if any.
#[allow(clippy::type_complexity)]
fn ipv6_transport(pkt: &[u8]) -> Option<(u8, usize, Option<(u32, u16, bool)>)> {
    let mut next = *pkt.get(6)?;
    let mut at = 40;
    let mut fragment = None;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            // hop-by-hop, routing, destination options: (length + 1) × 8 bytes
            0 | 43 | 60 => (usize::from(*pkt.get(at + 1)?) + 1) * 8,
            44 => {
                let h = pkt.get(at..at + 8)?;
                let off = u16::from_be_bytes([h[2], h[3]]);
                let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                fragment = Some((id, off >> 3, off & 1 != 0));
                8
            }
            // authentication header: (length + 2) × 4 bytes
            51 => (usize::from(*pkt.get(at + 1)?) + 2) * 4,
            _ => return Some((next, at, fragment)),
        };
        next = *pkt.get(at)?;
        at += len;
        if at > pkt.len() {
            return None;
        }
    }
    None
}

/// The tuple of the packet an ICMP error quotes (its IP header and at least 8 bytes of its
/// transport header, RFC 792 and RFC 4443), as that packet was sent.
fn quoted_tuple(quoted: &[u8]) -> Option<Tuple> {
    let (src, dst) = packet::addresses(quoted)?;
    let (proto, at) = if quoted[0] >> 4 == 4 {
        let ihl = usize::from(quoted[0] & 0x0f) * 4;
        (quoted[9], ihl)
    } else {
        let (proto, at, _) = ipv6_transport(quoted)?;
        (proto, at)
    };
    let l4 = quoted.get(at..at + 8)?;
    let (src_port, dst_port) = match proto {
        TCP | UDP => ports(l4),
        ICMP | ICMPV6 => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            match l4[0] {
                8 | 128 => (id, 0),
                0 | 129 => (0, id),
                _ => (0, 0),
            }
        }
        _ => (0, 0),
    };
    Some(Tuple {
        src,
        dst,
        proto,
        src_port,
        dst_port,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IPv4 packet from `src` to `dst` of protocol `proto` with `l4` as its payload.
    pub(crate) fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    /// A TCP header with these ports and flags.
    pub(crate) fn tcp(src_port: u16, dst_port: u16, flags: u8) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[..2].copy_from_slice(&src_port.to_be_bytes());
        h[2..4].copy_from_slice(&dst_port.to_be_bytes());
        h[12] = 0x50;
        h[13] = flags;
        h
    }

    pub(crate) fn udp(src_port: u16, dst_port: u16) -> Vec<u8> {
        let mut h = vec![0u8; 8];
        h[..2].copy_from_slice(&src_port.to_be_bytes());
        h[2..4].copy_from_slice(&dst_port.to_be_bytes());
        h
    }

    fn v6(src: &str, dst: &str, next: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(rest);
        p
    }

    #[test]
    fn tcp_and_udp_give_their_ports_and_tcp_its_flags() {
        let f = Flow::parse(&v4(
            [10, 0, 0, 1],
            [10, 0, 1, 1],
            TCP,
            &tcp(40000, 5432, SYN),
        ))
        .unwrap();
        assert_eq!((f.tuple.src_port, f.tuple.dst_port), (40000, 5432));
        assert_eq!(f.kind, Kind::Tcp { flags: SYN });
        let f = Flow::parse(&v4([10, 0, 0, 1], [10, 0, 1, 1], UDP, &udp(5353, 53))).unwrap();
        assert_eq!(
            (f.tuple.proto, f.tuple.dst_port, f.kind),
            (UDP, 53, Kind::Udp)
        );
    }

    #[test]
    fn an_echo_reply_has_its_requests_tuple_reversed() {
        let req = Flow::parse(&v4(
            [10, 0, 0, 1],
            [10, 0, 1, 1],
            ICMP,
            &[8, 0, 0, 0, 0, 7, 0, 1],
        ))
        .unwrap();
        let rep = Flow::parse(&v4(
            [10, 0, 1, 1],
            [10, 0, 0, 1],
            ICMP,
            &[0, 0, 0, 0, 0, 7, 0, 1],
        ))
        .unwrap();
        assert_eq!(req.kind, Kind::Echo { request: true });
        assert_eq!(rep.tuple, req.tuple.reversed());
    }

    #[test]
    fn a_fragmentation_needed_error_quotes_the_packet_that_was_too_big() {
        let big = v4([10, 0, 0, 1], [10, 0, 1, 1], TCP, &tcp(40000, 443, ACK));
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x00];
        icmp.extend_from_slice(&big[..28]);
        let err = Flow::parse(&v4([10, 0, 1, 1], [10, 0, 0, 1], ICMP, &icmp)).unwrap();
        let quoted = Flow::parse(&big).unwrap().tuple;
        assert_eq!(err.kind, Kind::IcmpError { quoted });
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_the_transport_header() {
        // hop-by-hop (8 bytes) then UDP
        let mut rest = vec![UDP, 0, 0, 0, 0, 0, 0, 0];
        rest.extend_from_slice(&udp(1000, 53));
        let f = Flow::parse(&v6("fd00::1", "fd00::2", 0, &rest)).unwrap();
        assert_eq!((f.tuple.proto, f.tuple.dst_port), (UDP, 53));
        // packet too big quoting a TCP segment
        let seg = v6("fd00::1", "fd00::2", TCP, &tcp(40000, 5432, ACK));
        let mut icmp = vec![2, 0, 0, 0, 0, 0, 5, 0];
        icmp.extend_from_slice(&seg);
        let f = Flow::parse(&v6("fd00::2", "fd00::1", ICMPV6, &icmp)).unwrap();
        assert_eq!(
            f.kind,
            Kind::IcmpError {
                quoted: Flow::parse(&seg).unwrap().tuple
            }
        );
    }

    #[test]
    fn fragments_are_told_apart_first_from_later() {
        let mut first = v4([10, 0, 0, 1], [10, 0, 1, 1], UDP, &udp(1, 2));
        first[6] = 0x20; // more fragments, offset 0
        let f = Flow::parse(&first).unwrap();
        assert_eq!((f.first_fragment, f.tuple.dst_port), (Some(0x1234), 2));
        let mut later = v4([10, 0, 0, 1], [10, 0, 1, 1], UDP, &[0xde; 16]);
        later[7] = 0xb9; // offset 185 × 8
        let f = Flow::parse(&later).unwrap();
        assert_eq!(f.kind, Kind::LaterFragment { id: 0x1234 });
        assert_eq!(f.tuple.dst_port, 0);
        // IPv6: a fragment header with offset 0 and M set, then one with an offset
        let mut frag = vec![UDP, 0, 0, 1, 0, 0, 0, 9];
        frag.extend_from_slice(&udp(1, 53));
        let f = Flow::parse(&v6("fd00::1", "fd00::2", 44, &frag)).unwrap();
        assert_eq!((f.first_fragment, f.tuple.dst_port), (Some(9), 53));
        let f = Flow::parse(&v6(
            "fd00::1",
            "fd00::2",
            44,
            &[UDP, 0, 0, 0x40, 0, 0, 0, 9],
        ))
        .unwrap();
        assert_eq!(f.kind, Kind::LaterFragment { id: 9 });
    }

    #[test]
    fn garbage_and_cut_headers_are_unreadable_never_a_panic() {
        assert_eq!(Flow::parse(&[]), Err(Unreadable::NotIp));
        assert_eq!(Flow::parse(&[0x45; 19]), Err(Unreadable::NotIp));
        let cut = v4([10, 0, 0, 1], [10, 0, 1, 1], TCP, &[0; 10]);
        assert_eq!(Flow::parse(&cut), Err(Unreadable::Truncated));
        let mut bad_ihl = v4([10, 0, 0, 1], [10, 0, 1, 1], UDP, &udp(1, 2));
        bad_ihl[0] = 0x4f;
        assert!(Flow::parse(&bad_ihl).is_err());
        for len in 0..80 {
            let _ = Flow::parse(&vec![0x60; len]);
            let _ = Flow::parse(&vec![0x45; len]);
        }
    }
}
