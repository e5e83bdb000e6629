//! In-tunnel control messages between wiremesh engines: MTU probes and their acknowledgements
//! (and later key announcements). They ride inside the WireGuard session as UDP to the peer's
//! overlay address on [`CONTROL_PORT`], so they are encrypted and authenticated like data, and
//! the receiving engine consumes them before anything reaches the kernel.
//!
//! A stock WireGuard peer never answers a [`Message::Hello`], so it is never probed.
//!
//! Payload layout (after the inner IP and UDP headers):
//! `"WMC" | version u8 | type u8 | body`; all integers big-endian.

use crate::core::key::PublicKey;
use crate::core::packet::{checksum_add as ones_complement_sum, checksum_fold as fold};
use std::net::{IpAddr, SocketAddr};

/// UDP port of control messages on overlay addresses (inside the tunnel only).
pub const CONTROL_PORT: u16 = 51_871;
const MAGIC: &[u8; 3] = b"WMC";
const VERSION: u8 = 1;
const HEADER: usize = 5;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;

/// A control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// "Do you speak wiremesh control?"
    Hello,
    /// Answer to a hello.
    HelloAck,
    /// A padded probe; its size on the underlay is what is being tested.
    Probe { id: u32 },
    /// The probe `id` arrived as an inner packet of `size` bytes.
    ProbeAck { id: u32, size: u16 },
    /// "My new static key is `new_public`; my old one is accepted for `effective_ms` more."
    /// Trusted only from inside the announcing node's own session.
    KeyAnnounce {
        new_public: PublicKey,
        effective_ms: u32,
    },
    /// "I accept `new_public` for you."
    KeyAnnounceAck { new_public: PublicKey },
    /// "Which address do my datagrams reach you from?" (docs/nat.md, section 2)
    Observe,
    /// "From `addr`": the outer source address and port of the asker's datagrams, as this
    /// peer sees them, which is the asker's NAT mapping towards it.
    Observed { addr: SocketAddr },
    /// "Put me in touch with `peer`": to an introducer, a public node both have sessions with
    /// (docs/nat.md, section 3).
    Introduce { peer: PublicKey },
    /// From an introducer: "`peer` reaches me from `addr`; send there now, it sends to you".
    Punch { peer: PublicKey, addr: SocketAddr },
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Message::Hello => 1,
            Message::HelloAck => 2,
            Message::Probe { .. } => 3,
            Message::ProbeAck { .. } => 4,
            Message::KeyAnnounce { .. } => 5,
            Message::KeyAnnounceAck { .. } => 6,
            Message::Observe => 7,
            Message::Observed { .. } => 8,
            Message::Introduce { .. } => 9,
            Message::Punch { .. } => 10,
        }
    }

    fn body(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello | Message::HelloAck | Message::Observe => {}
            Message::Observed { addr } => put_addr(*addr, out),
            Message::Introduce { peer } => out.extend_from_slice(peer.as_bytes()),
            Message::Punch { peer, addr } => {
                out.extend_from_slice(peer.as_bytes());
                put_addr(*addr, out);
            }
            Message::Probe { id } => out.extend_from_slice(&id.to_be_bytes()),
            Message::ProbeAck { id, size } => {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&size.to_be_bytes());
            }
            Message::KeyAnnounce {
                new_public,
                effective_ms,
            } => {
                out.extend_from_slice(new_public.as_bytes());
                out.extend_from_slice(&effective_ms.to_be_bytes());
            }
            Message::KeyAnnounceAck { new_public } => out.extend_from_slice(new_public.as_bytes()),
        }
    }

    /// Parses a control payload; anything unexpected is `None`, never a panic.
    pub fn parse(payload: &[u8]) -> Option<Message> {
        if payload.len() < HEADER || &payload[..3] != MAGIC || payload[3] != VERSION {
            return None;
        }
        let body = &payload[HEADER..];
        let u32_at = |i: usize| {
            body.get(i..i + 4)
                .map(|b| u32::from_be_bytes(b.try_into().unwrap_or([0; 4])))
        };
        let u16_at = |i: usize| {
            body.get(i..i + 2)
                .map(|b| u16::from_be_bytes(b.try_into().unwrap_or([0; 2])))
        };
        let key_at = |i: usize| {
            body.get(i..i + 32)
                .and_then(|b| b.try_into().ok())
                .map(PublicKey::from_bytes)
        };
        match payload[4] {
            1 => Some(Message::Hello),
            2 => Some(Message::HelloAck),
            3 => Some(Message::Probe { id: u32_at(0)? }),
            4 => Some(Message::ProbeAck {
                id: u32_at(0)?,
                size: u16_at(4)?,
            }),
            5 => Some(Message::KeyAnnounce {
                new_public: key_at(0)?,
                effective_ms: u32_at(32)?,
            }),
            6 => Some(Message::KeyAnnounceAck {
                new_public: key_at(0)?,
            }),
            7 => Some(Message::Observe),
            8 => Some(Message::Observed {
                addr: addr_at(body)?,
            }),
            9 => Some(Message::Introduce { peer: key_at(0)? }),
            10 => Some(Message::Punch {
                peer: key_at(0)?,
                addr: addr_at(body.get(32..)?)?,
            }),
            _ => None,
        }
    }
}

/// An address as `4 | octets | port` or `6 | octets | port`.
fn put_addr(addr: SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// The address [`put_addr`] wrote at the start of `body`; `None` when cut short or unknown.
fn addr_at(body: &[u8]) -> Option<SocketAddr> {
    let (ip, at): (IpAddr, usize) = match body.first()? {
        4 => {
            let o: [u8; 4] = body.get(1..5)?.try_into().ok()?;
            (o.into(), 5)
        }
        6 => {
            let o: [u8; 16] = body.get(1..17)?.try_into().ok()?;
            (o.into(), 17)
        }
        _ => return None,
    };
    let port = u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?);
    Some(SocketAddr::new(ip, port))
}

/// Builds the inner IP packet carrying `msg` from `src` to `dst`, padded with zeros so the
/// whole inner packet is `pad_to` bytes (when larger than the message itself). `src` and `dst`
/// must be of one family.
pub fn build(src: IpAddr, dst: IpAddr, msg: &Message, pad_to: usize) -> Vec<u8> {
    let mut payload = Vec::with_capacity(pad_to);
    payload.extend_from_slice(MAGIC);
    payload.push(VERSION);
    payload.push(msg.kind());
    msg.body(&mut payload);
    let ip_len = if src.is_ipv4() {
        IPV4_HEADER
    } else {
        IPV6_HEADER
    };
    let min = ip_len + UDP_HEADER + payload.len();
    payload.resize(payload.len() + pad_to.saturating_sub(min), 0);
    let udp_len = (UDP_HEADER + payload.len()) as u16;
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&CONTROL_PORT.to_be_bytes());
    udp.extend_from_slice(&CONTROL_PORT.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&payload);
    let mut pkt = Vec::with_capacity(ip_len + udp.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (IPV4_HEADER + udp.len()) as u16;
            pkt.extend_from_slice(&[0x45, 0]);
            pkt.extend_from_slice(&total.to_be_bytes());
            // DF: a probe must never be fragmented on the way
            pkt.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
            pkt.extend_from_slice(&s.octets());
            pkt.extend_from_slice(&d.octets());
            let c = fold(ones_complement_sum(&pkt, 0));
            pkt[10..12].copy_from_slice(&c.to_be_bytes());
            // IPv4 UDP checksum 0 means "none": the tunnel already authenticates every byte
            pkt.extend_from_slice(&udp);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pkt.extend_from_slice(&[0x60, 0, 0, 0]);
            pkt.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            pkt.extend_from_slice(&[17, 64]);
            pkt.extend_from_slice(&s.octets());
            pkt.extend_from_slice(&d.octets());
            // IPv6 requires a UDP checksum over the pseudo-header
            let mut sum = ones_complement_sum(&s.octets(), 0);
            sum = ones_complement_sum(&d.octets(), sum);
            sum += udp.len() as u32 + 17;
            sum = ones_complement_sum(&udp, sum);
            let c = match fold(sum) {
                0 => 0xffff,
                c => c,
            };
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            pkt.extend_from_slice(&udp);
        }
        _ => {}
    }
    pkt
}

/// If `pkt` is a control message addressed to `CONTROL_PORT`, its payload.
pub fn payload(pkt: &[u8]) -> Option<&[u8]> {
    let (ip_len, proto) = match pkt.first()? >> 4 {
        4 if pkt.len() >= IPV4_HEADER => (usize::from(pkt[0] & 0x0f) * 4, pkt[9]),
        6 if pkt.len() >= IPV6_HEADER => (IPV6_HEADER, pkt[6]),
        _ => return None,
    };
    if proto != 17 || pkt.len() < ip_len + UDP_HEADER {
        return None;
    }
    let udp = &pkt[ip_len..];
    if u16::from_be_bytes([udp[2], udp[3]]) != CONTROL_PORT {
        return None;
    }
    Some(&udp[UDP_HEADER..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::packet;

    #[test]
    fn every_message_round_trips_through_an_inner_packet() {
        let msgs = [
            Message::Hello,
            Message::HelloAck,
            Message::Probe { id: 7 },
            Message::ProbeAck {
                id: u32::MAX,
                size: 1420,
            },
            Message::KeyAnnounce {
                new_public: PublicKey::from_bytes([7; 32]),
                effective_ms: 130_000,
            },
            Message::KeyAnnounceAck {
                new_public: PublicKey::from_bytes([8; 32]),
            },
            Message::Observe,
            Message::Observed {
                addr: "198.51.100.7:40001".parse().unwrap(),
            },
            Message::Observed {
                addr: "[2001:db8::7]:51820".parse().unwrap(),
            },
            Message::Introduce {
                peer: PublicKey::from_bytes([9; 32]),
            },
            Message::Punch {
                peer: PublicKey::from_bytes([10; 32]),
                addr: "203.0.113.9:51820".parse().unwrap(),
            },
            Message::Punch {
                peer: PublicKey::from_bytes([11; 32]),
                addr: "[2001:db8::9]:4500".parse().unwrap(),
            },
        ];
        let pairs: [(IpAddr, IpAddr); 2] = [
            ("10.244.1.1".parse().unwrap(), "10.244.2.1".parse().unwrap()),
            ("fd10::1".parse().unwrap(), "fd10:1::1".parse().unwrap()),
        ];
        for (src, dst) in pairs {
            for m in &msgs {
                let pkt = build(src, dst, m, 0);
                assert_eq!(packet::addresses(&pkt), Some((src, dst)));
                assert_eq!(Message::parse(payload(&pkt).unwrap()).as_ref(), Some(m));
            }
        }
    }

    #[test]
    fn a_probe_is_padded_to_exactly_the_requested_size_with_a_valid_header() {
        let src = "10.244.1.1".parse().unwrap();
        let dst = "10.244.2.1".parse().unwrap();
        let pkt = build(src, dst, &Message::Probe { id: 1 }, 1340);
        assert_eq!(pkt.len(), 1340);
        assert_eq!(u16::from_be_bytes([pkt[2], pkt[3]]), 1340);
        assert_eq!(
            fold(ones_complement_sum(&pkt[..20], 0)),
            0,
            "IPv4 header checksum"
        );
        assert_eq!(pkt[6] & 0x40, 0x40, "DF set");
        let v6 = build(
            "fd10::1".parse().unwrap(),
            "fd10:1::1".parse().unwrap(),
            &Message::Probe { id: 1 },
            1300,
        );
        assert_eq!(v6.len(), 1300);
    }

    #[test]
    fn ordinary_traffic_and_garbage_are_not_control_messages() {
        let mut udp_dns = build(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            &Message::Hello,
            0,
        );
        udp_dns[22..24].copy_from_slice(&53u16.to_be_bytes());
        assert!(payload(&udp_dns).is_none());
        for junk in [
            &b""[..],
            b"WMC",
            b"WMC\x02\x01",
            b"XYZ\x01\x01",
            b"WMC\x01\x09",
            b"WMC\x01\x03\x00",
            b"WMC\x01\x05\x07\x07",
            b"WMC\x01\x06",
            b"WMC\x01\x08",
            b"WMC\x01\x08\x04\x01\x02\x03\x04\x00",
            b"WMC\x01\x08\x05\x01\x02\x03\x04\x00\x01",
            b"WMC\x01\x08\x06\x01",
        ] {
            assert_eq!(Message::parse(junk), None, "{junk:?}");
        }
        assert!(payload(&[0x45; 10]).is_none());
    }

    #[test]
    fn a_punch_or_introduction_cut_short_anywhere_is_refused() {
        let src = "10.244.1.1".parse().unwrap();
        let dst = "10.244.2.1".parse().unwrap();
        for m in [
            Message::Introduce {
                peer: PublicKey::from_bytes([3; 32]),
            },
            Message::Punch {
                peer: PublicKey::from_bytes([4; 32]),
                addr: "[2001:db8::1]:51820".parse().unwrap(),
            },
        ] {
            let pkt = build(src, dst, &m, 0);
            let full = payload(&pkt).unwrap();
            for len in 0..full.len() {
                assert_eq!(Message::parse(&full[..len]), None, "{m:?} cut at {len}");
            }
            assert_eq!(Message::parse(full), Some(m));
        }
    }
}
