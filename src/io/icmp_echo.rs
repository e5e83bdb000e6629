//! ICMP echo on a raw socket of the calling thread's network namespace: the lab's ping matrix
//! and `wiremesh check` both use it, so neither needs a `ping` binary or parses its output.
//!
//! A probe can be sized to an exact IP packet length and sent with Don't Fragment set
//! (`IP_MTU_DISCOVER` = `IP_PMTUDISC_DO`), which is how `check` proves that a packet of the full
//! tunnel MTU crosses the mesh: with DF nothing on the way may split it, so either it arrives
//! whole or no reply comes.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Echo requests are re-sent this often until a reply comes or the timeout passes, so a
/// request lost to a handshake in progress only delays the answer.
const RESEND: Duration = Duration::from_millis(200);

/// How long one `recvfrom` blocks before the loop looks at the clock again.
const RECV_TICK: Duration = Duration::from_millis(20);

/// IPv4 header without options, IPv6 fixed header, ICMP echo header.
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const ECHO_HEADER: usize = 8;

/// Fills small probes, and repeats through the payload of large ones.
const PAYLOAD_PATTERN: &[u8] = b"wiremesh-probe..";

/// Distinct echo identifiers, because every raw socket in a namespace sees every reply.
static NEXT_ID: AtomicU16 = AtomicU16::new(1);

/// One echo probe.
#[derive(Debug, Clone, Copy)]
pub struct Echo {
    pub target: IpAddr,
    /// Give up after this long without a reply.
    pub timeout: Duration,
    /// Length of the whole IP packet (header included); `None` sends a small probe.
    pub packet_size: Option<u16>,
    /// Set Don't Fragment (IPv4) / forbid local fragmentation (IPv6).
    pub dont_fragment: bool,
}

impl Echo {
    /// A small probe, as `ping` sends by default.
    pub fn new(target: IpAddr, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            packet_size: None,
            dont_fragment: false,
        }
    }

    /// A probe whose IP packet is exactly `size` bytes, with Don't Fragment set.
    pub fn full_size(target: IpAddr, timeout: Duration, size: u16) -> Self {
        Self {
            target,
            timeout,
            packet_size: Some(size),
            dont_fragment: true,
        }
    }

    /// Bytes after the ICMP header, so the IP packet has the requested size.
    fn payload_len(&self) -> Result<usize, IcmpError> {
        let header = match self.target {
            IpAddr::V4(_) => IPV4_HEADER,
            IpAddr::V6(_) => IPV6_HEADER,
        } + ECHO_HEADER;
        match self.packet_size {
            None => Ok(PAYLOAD_PATTERN.len()),
            Some(size) if usize::from(size) >= header => Ok(usize::from(size) - header),
            Some(size) => Err(IcmpError::TooSmall { size, header }),
        }
    }
}

/// Why a probe could not be sent (no reply is not an error: [`echo`] returns `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum IcmpError {
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// With DF set the local stack refused the packet: the route's MTU is smaller.
    #[error("a {size}-byte packet with DF set exceeds the MTU of the local route to {target}")]
    TooBig { size: u16, target: IpAddr },
    #[error("a {size}-byte probe is smaller than its {header} bytes of headers")]
    TooSmall { size: u16, header: usize },
}

fn os_err(what: impl Into<String>) -> IcmpError {
    IcmpError::Os {
        what: what.into(),
        source: std::io::Error::last_os_error(),
    }
}

pub use crate::core::packet::checksum;

/// An echo request's ICMP message: header, then `payload_len` bytes of the pattern. The
/// checksum is filled in for IPv4; for ICMPv6 the kernel computes it over the pseudo-header.
fn request(target: IpAddr, id: u16, seq: u16, payload_len: usize) -> Vec<u8> {
    let req_type = if target.is_ipv4() { 8 } else { 128 };
    let mut pkt = vec![req_type, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend(PAYLOAD_PATTERN.iter().cycle().take(payload_len));
    if target.is_ipv4() {
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    pkt
}

fn setsockopt<T>(
    fd: &OwnedFd,
    level: i32,
    name: i32,
    value: &T,
    what: &str,
) -> Result<(), IcmpError> {
    // SAFETY: valid fd; `value` points to a live T of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_err(what));
    }
    Ok(())
}

fn open_socket(probe: &Echo) -> Result<OwnedFd, IcmpError> {
    let (domain, proto) = match probe.target {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
    };
    // SAFETY: plain socket(2) call; the result is checked and owned below.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(os_err("raw ICMP socket (needs root)"));
    }
    // SAFETY: fd is a freshly created, valid descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let tick = libc::timeval {
        tv_sec: 0,
        tv_usec: RECV_TICK.as_micros() as libc::suseconds_t,
    };
    setsockopt(
        &sock,
        libc::SOL_SOCKET,
        libc::SO_RCVTIMEO,
        &tick,
        "SO_RCVTIMEO",
    )?;
    if probe.dont_fragment {
        let (level, name, value) = match probe.target {
            IpAddr::V4(_) => (
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            ),
            IpAddr::V6(_) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO,
            ),
        };
        setsockopt(&sock, level, name, &value, "IP_MTU_DISCOVER")?;
    }
    Ok(sock)
}

/// Sends echo requests until a matching reply of the full length comes back; `Ok(Some(rtt))`
/// on a reply, `Ok(None)` when the timeout passes without one.
pub fn echo(probe: &Echo) -> Result<Option<Duration>, IcmpError> {
    let target = probe.target;
    let payload_len = probe.payload_len()?;
    let sock = open_socket(probe)?;
    let reply_type = if target.is_ipv4() { 0 } else { 129 };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (addr, addr_len) = sockaddr(target);
    let start = Instant::now();
    let mut seq: u16 = 0;
    let mut last_send: Option<Instant> = None;
    let mut sent_at = Vec::new();
    let mut buf = vec![0u8; (payload_len + 128).max(2048)];
    while start.elapsed() < probe.timeout {
        if last_send.is_none_or(|t| t.elapsed() >= RESEND) {
            seq = seq.wrapping_add(1);
            let pkt = request(target, id, seq, payload_len);
            // Stamped before the call: a thread preempted inside sendto would otherwise read
            // the clock after the reply has already arrived.
            let sent = Instant::now();
            // SAFETY: valid fd, buffer and sockaddr of the stated length.
            let n = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    0,
                    (&addr as *const libc::sockaddr_storage).cast(),
                    addr_len,
                )
            };
            if n < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    // No route yet (a tun still coming up): keep trying until the timeout.
                    Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => {}
                    Some(libc::EMSGSIZE) => {
                        return Err(IcmpError::TooBig {
                            size: probe.packet_size.unwrap_or(0),
                            target,
                        })
                    }
                    _ => return Err(os_err(format!("sendto {target}"))),
                }
            }
            last_send = Some(sent);
            sent_at.push((seq, sent));
        }
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: valid fd, buffer and sockaddr storage of the stated length.
        let n = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_storage).cast(),
                &mut from_len,
            )
        };
        if n <= 0 {
            continue;
        }
        let data = &buf[..n as usize];
        // IPv4 raw sockets deliver the IP header too; IPv6 ones do not.
        let icmp = match target {
            IpAddr::V4(want) => {
                let ihl = usize::from(data[0] & 0x0f) * 4;
                if data.len() < ihl + ECHO_HEADER || data[12..16] != want.octets() {
                    continue;
                }
                &data[ihl..]
            }
            IpAddr::V6(_) => {
                if from_sockaddr(&from) != Some(target) || data.len() < ECHO_HEADER {
                    continue;
                }
                data
            }
        };
        let got_id = u16::from_be_bytes([icmp[4], icmp[5]]);
        let got_seq = u16::from_be_bytes([icmp[6], icmp[7]]);
        // A reply shorter than the request means the payload did not come back whole.
        if icmp[0] == reply_type && got_id == id && icmp.len() == ECHO_HEADER + payload_len {
            if let Some((_, at)) = sent_at.iter().find(|(s, _)| *s == got_seq) {
                return Ok(Some(at.elapsed()));
            }
        }
    }
    Ok(None)
}

fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match SocketAddr::new(ip, 0) {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: all-zero sockaddr_in6 is valid; fields are set below.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.ip().octets();
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<IpAddr> {
    if i32::from(s.ss_family) != libc::AF_INET6 {
        return None;
    }
    // SAFETY: the family says this storage holds a sockaddr_in6.
    let sin6: &libc::sockaddr_in6 = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
    Some(IpAddr::V6(sin6.sin6_addr.s6_addr.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_checksum_matches_a_known_echo_request() {
        // Echo request, id 1, seq 1, no payload: checksum 0xf7fd.
        assert_eq!(checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), 0xf7fd);
    }

    #[test]
    fn a_full_size_probe_makes_an_ip_packet_of_exactly_that_size() {
        let t = Duration::from_secs(1);
        for (target, size) in [("10.0.0.1", 1420u16), ("fd00::1", 1420), ("10.0.0.1", 28)] {
            let probe = Echo::full_size(target.parse().unwrap(), t, size);
            let header = if probe.target.is_ipv4() { 20 } else { 40 };
            let icmp = request(probe.target, 7, 1, probe.payload_len().unwrap());
            assert_eq!(header + icmp.len(), usize::from(size), "{target} {size}");
            assert!(probe.dont_fragment);
        }
    }

    #[test]
    fn a_probe_smaller_than_its_headers_is_refused() {
        let probe = Echo::full_size("fd00::1".parse().unwrap(), Duration::from_secs(1), 40);
        assert!(matches!(
            probe.payload_len(),
            Err(IcmpError::TooSmall { header: 48, .. })
        ));
    }

    #[test]
    fn an_ipv4_request_carries_a_valid_checksum() {
        let pkt = request("10.0.0.1".parse().unwrap(), 3, 9, 100);
        assert_eq!(checksum(&pkt), 0, "a valid checksum sums to zero");
    }
}
