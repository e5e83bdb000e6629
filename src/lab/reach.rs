//! All-pairs ICMP echo with one thread per source namespace: the thread joins the namespace
//! (`setns`, this thread only), opens one raw socket per address family, sends an echo request
//! to every target, re-sends to the silent ones every `resend`, and records when each target's
//! first reply came. A 64-node mesh is 64 threads and 64 sockets, not 4,032 of each, so the
//! prober does not dominate what it measures (the pair-reach benchmark) and `lab status` on a
//! large lab stays quick.
//!
//! Requests carry `seq = target index << 6 | attempt`, so a reply names its target and the
//! attempt it answers (the RTT is measured from that attempt's send).

use super::netns::enter_netns;
use super::LabError;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Targets one source can probe: the target index takes the upper 10 bits of the sequence.
pub const MAX_TARGETS: usize = 1024;
/// Attempts told apart per target (the lower 6 bits of the sequence).
const ATTEMPTS: usize = 64;
/// Echo payload: small, as `ping` sends by default.
const PAYLOAD: &[u8] = b"wiremesh-reach..";

/// Echo identifiers of this module, apart from [`crate::io::icmp_echo`]'s (which count up from 1).
static NEXT_ID: AtomicU16 = AtomicU16::new(0x8000);

/// The first reply from one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// Round trip of the attempt that was answered.
    pub rtt: Duration,
    /// When the reply came, counted from the start of [`probe_all`].
    pub at: Duration,
}

/// Probes every `(namespace, targets)` source at once until every target answered or
/// `timeout` passed. Results are per source, per target, in input order; `None` = no reply.
pub fn probe_all(
    sources: &[(String, Vec<IpAddr>)],
    timeout: Duration,
    resend: Duration,
) -> Result<Vec<Vec<Option<Reached>>>, LabError> {
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .iter()
            .map(|(ns, targets)| {
                s.spawn(move || {
                    let err = |message| LabError::Ping {
                        ns: ns.clone(),
                        message,
                    };
                    enter_netns(ns).map_err(err)?;
                    probe(targets, start, timeout, resend).map_err(err)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(LabError::Ping {
                        ns: "?".into(),
                        message: "prober thread panicked".into(),
                    })
                })
            })
            .collect()
    })
}

/// One source's probing, in the calling thread's namespace.
fn probe(
    targets: &[IpAddr],
    start: Instant,
    timeout: Duration,
    resend: Duration,
) -> Result<Vec<Option<Reached>>, String> {
    if targets.len() > MAX_TARGETS {
        return Err(format!("{} targets; at most {MAX_TARGETS}", targets.len()));
    }
    let v4 = open(targets, true)?;
    let v6 = open(targets, false)?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut reached: Vec<Option<Reached>> = vec![None; targets.len()];
    let mut sent: Vec<[Option<Instant>; ATTEMPTS]> = vec![[None; ATTEMPTS]; targets.len()];
    let mut attempts = vec![0usize; targets.len()];
    let mut next_send = start;
    let mut left = targets.len();
    let deadline = start + timeout;
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    while left > 0 && Instant::now() < deadline {
        if Instant::now() >= next_send {
            for (i, target) in targets.iter().enumerate() {
                if reached[i].is_some() {
                    continue;
                }
                let attempt = attempts[i] % ATTEMPTS;
                attempts[i] += 1;
                let seq = ((i << 6) | attempt) as u16;
                let sock = if target.is_ipv4() { &v4 } else { &v6 };
                let sock = sock.as_ref().expect("opened for every family targeted");
                sent[i][attempt] = Some(Instant::now());
                if let Err(e) = sock.send_to(&request(*target, id, seq), &sockaddr(*target)) {
                    // no route yet (a tun still coming up): try again at the next round
                    if !matches!(
                        e.raw_os_error(),
                        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) | Some(libc::ENOKEY)
                    ) {
                        return Err(format!("sendto {target}: {e}"));
                    }
                }
            }
            next_send = Instant::now() + resend;
        }
        let wait = next_send
            .min(deadline)
            .saturating_duration_since(Instant::now());
        wait_readable(&[v4.as_ref(), v6.as_ref()], wait);
        for (sock, is_v4) in [(v4.as_ref(), true), (v6.as_ref(), false)] {
            let Some(sock) = sock else { continue };
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let now = Instant::now();
                // SAFETY: recv_from initialised the first n bytes.
                let data: &[u8] =
                    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
                let Some((i, attempt)) = parse_reply(data, from, is_v4, id, targets) else {
                    continue;
                };
                if reached[i].is_none() {
                    if let Some(at) = sent[i][attempt] {
                        reached[i] = Some(Reached {
                            rtt: now.saturating_duration_since(at),
                            at: now.saturating_duration_since(start),
                        });
                        left -= 1;
                    }
                }
            }
        }
    }
    Ok(reached)
}

/// A non-blocking raw ICMP socket of one family, when any target is of that family.
fn open(targets: &[IpAddr], v4: bool) -> Result<Option<Socket>, String> {
    if !targets.iter().any(|t| t.is_ipv4() == v4) {
        return Ok(None);
    }
    let (domain, proto) = if v4 {
        (Domain::IPV4, Protocol::ICMPV4)
    } else {
        (Domain::IPV6, Protocol::ICMPV6)
    };
    let sock = Socket::new(domain, Type::RAW, Some(proto))
        .map_err(|e| format!("raw ICMP socket (needs root): {e}"))?;
    sock.set_nonblocking(true)
        .map_err(|e| format!("O_NONBLOCK: {e}"))?;
    Ok(Some(sock))
}

/// Blocks until one of the sockets has data or `wait` passes.
fn wait_readable(socks: &[Option<&Socket>], wait: Duration) {
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .flatten()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = wait.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: `fds` is a valid array of pollfd of the stated length.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

/// An echo request; the kernel fills in the ICMPv6 checksum (it covers a pseudo-header).
fn request(target: IpAddr, id: u16, seq: u16) -> Vec<u8> {
    let kind = if target.is_ipv4() { 8 } else { 128 };
    let mut pkt = vec![kind, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(PAYLOAD);
    if target.is_ipv4() {
        let c = crate::io::icmp_echo::checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    pkt
}

fn sockaddr(ip: IpAddr) -> SockAddr {
    SockAddr::from(SocketAddr::new(ip, 0))
}

/// `(target index, attempt)` of an echo reply of ours from the target it was sent to.
fn parse_reply(
    data: &[u8],
    from: SockAddr,
    v4: bool,
    id: u16,
    targets: &[IpAddr],
) -> Option<(usize, usize)> {
    // IPv4 raw sockets deliver the IP header too; IPv6 ones do not
    let (icmp, source) = if v4 {
        let ihl = usize::from(*data.first()? & 0x0f) * 4;
        let src: [u8; 4] = data.get(12..16)?.try_into().ok()?;
        (data.get(ihl..)?, IpAddr::from(src))
    } else {
        (data, from.as_socket()?.ip())
    };
    let reply_type = if v4 { 0 } else { 129 };
    if icmp.len() < 8 || icmp[0] != reply_type || icmp[4..6] != id.to_be_bytes() {
        return None;
    }
    let seq = usize::from(u16::from_be_bytes([icmp[6], icmp[7]]));
    let i = seq >> 6;
    (targets.get(i) == Some(&source)).then_some((i, seq & (ATTEMPTS - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_v4(from: [u8; 4], id: u16, seq: u16) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        ip.extend_from_slice(&from);
        ip.extend_from_slice(&[10, 0, 0, 1]);
        let mut icmp = request("10.0.0.9".parse().unwrap(), id, seq);
        icmp[0] = 0;
        ip.extend(icmp);
        ip
    }

    #[test]
    fn a_reply_names_its_target_and_attempt_by_its_sequence() {
        let targets: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()];
        let from = sockaddr(targets[1]);
        let data = reply_v4([10, 0, 0, 3], 7, (1 << 6) | 5);
        assert_eq!(parse_reply(&data, from, true, 7, &targets), Some((1, 5)));
    }

    #[test]
    fn replies_for_another_prober_or_from_the_wrong_source_are_ignored() {
        let targets: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()];
        let from = sockaddr(targets[0]);
        let other_id = reply_v4([10, 0, 0, 2], 8, 0);
        assert_eq!(
            parse_reply(&other_id, from.clone(), true, 7, &targets),
            None
        );
        let wrong_source = reply_v4([10, 0, 0, 3], 7, 0);
        assert_eq!(
            parse_reply(&wrong_source, from.clone(), true, 7, &targets),
            None
        );
        assert_eq!(parse_reply(&[0x45, 0], from, true, 7, &targets), None);
    }

    #[test]
    fn an_ipv4_request_carries_a_valid_checksum() {
        let pkt = request("10.0.0.1".parse().unwrap(), 3, 9);
        assert_eq!(crate::io::icmp_echo::checksum(&pkt), 0);
    }
}
