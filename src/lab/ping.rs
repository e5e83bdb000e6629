//! ICMP echo from inside a namespace, in-process: a short-lived thread joins the namespace with
//! `setns(CLONE_NEWNET)` (which changes only that thread) and opens a raw socket there. This
//! needs no `ping` binary, and the all-pairs matrix runs every pair at once for the cost of a
//! thread each instead of a process each.

use super::LabError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Echo requests are re-sent this often until a reply comes or the timeout passes, so a
/// request lost to a handshake in progress only delays the answer.
const RESEND: Duration = Duration::from_millis(200);

/// Distinct echo identifiers, because every raw socket in a namespace sees every reply.
static NEXT_ID: AtomicU16 = AtomicU16::new(1);

/// Pings `target` from namespace `ns`; `Ok(Some(rtt))` on a reply, `Ok(None)` on timeout.
pub fn ping_in_ns(
    ns: &str,
    target: IpAddr,
    timeout: Duration,
) -> Result<Option<Duration>, LabError> {
    let ns_owned = ns.to_string();
    let err = |message: String| LabError::Ping {
        ns: ns_owned.clone(),
        message,
    };
    let handle = std::thread::spawn({
        let ns = ns.to_string();
        move || -> Result<Option<Duration>, String> {
            enter_netns(&ns)?;
            echo(target, timeout)
        }
    });
    handle
        .join()
        .map_err(|_| err("ping thread panicked".into()))?
        .map_err(err)
}

/// Pings every `(namespace, target)` pair at once, one thread each; results in input order.
pub(crate) fn ping_all(
    pairs: &[(String, IpAddr)],
    timeout: Duration,
) -> Result<Vec<Option<Duration>>, LabError> {
    std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|(ns, target)| {
                s.spawn(move || -> Result<Option<Duration>, LabError> {
                    let err = |message| LabError::Ping {
                        ns: ns.clone(),
                        message,
                    };
                    enter_netns(ns).map_err(err)?;
                    echo(*target, timeout).map_err(err)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(LabError::Ping {
                        ns: "?".into(),
                        message: "ping thread panicked".into(),
                    })
                })
            })
            .collect()
    })
}

fn enter_netns(ns: &str) -> Result<(), String> {
    let path = format!("/var/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: `file` is an open namespace file descriptor; setns affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends echo requests on a raw socket of the current thread's namespace until a matching reply.
fn echo(target: IpAddr, timeout: Duration) -> Result<Option<Duration>, String> {
    let (domain, proto, req_type, reply_type) = match target {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8, 129u8),
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
        tv_usec: 20_000,
    };
    // SAFETY: valid fd and a correctly sized timeval.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tick as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (addr, addr_len) = sockaddr(target);
    let start = Instant::now();
    let mut seq: u16 = 0;
    let mut last_send: Option<Instant> = None;
    let mut sent_at = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < timeout {
        if last_send.is_none_or(|t| t.elapsed() >= RESEND) {
            seq = seq.wrapping_add(1);
            let mut pkt = vec![req_type, 0, 0, 0];
            pkt.extend_from_slice(&id.to_be_bytes());
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(b"wiremesh-lab-png");
            if target.is_ipv4() {
                let c = checksum(&pkt);
                pkt[2..4].copy_from_slice(&c.to_be_bytes());
            }
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
            if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::ENETUNREACH) {
                return Err(os_err(&format!("sendto {target}")));
            }
            let now = Instant::now();
            last_send = Some(now);
            sent_at.push((seq, now));
        }
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
                if data.len() < ihl + 8 || data[12..16] != want.octets() {
                    continue;
                }
                &data[ihl..]
            }
            IpAddr::V6(_) => {
                if from_sockaddr(&from) != Some(target) || data.len() < 8 {
                    continue;
                }
                data
            }
        };
        let got_id = u16::from_be_bytes([icmp[4], icmp[5]]);
        let got_seq = u16::from_be_bytes([icmp[6], icmp[7]]);
        if icmp[0] == reply_type && got_id == id {
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

/// Result of pinging every ordered pair of nodes: `rtt[i][j]` is from node `i` to node `j`.
#[derive(Debug, Clone)]
pub struct PingMatrix {
    pub nodes: Vec<String>,
    /// `None` on the diagonal and where no reply came.
    pub rtt: Vec<Vec<Option<Duration>>>,
}

impl PingMatrix {
    /// Whether every ordered pair got a reply.
    pub fn all_ok(&self) -> bool {
        self.failures().is_empty()
    }

    /// Ordered pairs `(from, to)` that got no reply.
    pub fn failures(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, row) in self.rtt.iter().enumerate() {
            for (j, cell) in row.iter().enumerate() {
                if i != j && cell.is_none() {
                    out.push((self.nodes[i].clone(), self.nodes[j].clone()));
                }
            }
        }
        out
    }
}

/// A square table: rows are sources, columns destinations; `✓ 0.4ms` or `✗`.
impl fmt::Display for PingMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CELL: usize = 10;
        let first = self
            .nodes
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max(9);
        write!(f, "{:<first$}", "from \\ to")?;
        for n in &self.nodes {
            write!(f, " {n:>CELL$}")?;
        }
        writeln!(f)?;
        for (i, row) in self.rtt.iter().enumerate() {
            write!(f, "{:<first$}", self.nodes[i])?;
            for (j, cell) in row.iter().enumerate() {
                let text = match cell {
                    _ if i == j => "-".to_string(),
                    Some(d) => format!("✓ {:.1}ms", d.as_secs_f64() * 1000.0),
                    None => "✗".to_string(),
                };
                write!(f, " {text:>CELL$}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
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
    fn the_matrix_prints_ticks_crosses_and_a_diagonal() {
        let m = PingMatrix {
            nodes: vec!["a".into(), "b".into()],
            rtt: vec![
                vec![None, Some(Duration::from_micros(400))],
                vec![None, None],
            ],
        };
        let text = m.to_string();
        assert!(text.contains("✓ 0.4ms") && text.contains('✗'), "{text}");
        assert_eq!(m.failures(), vec![("b".to_string(), "a".to_string())]);
        assert!(!m.all_ok());
    }
}
