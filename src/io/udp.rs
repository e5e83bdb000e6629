//! The underlay socket: one dual-stack UDP socket, so IPv4 and IPv6 peers share one port the
//! way kernel WireGuard's does. IPv4 peers appear as v4-mapped addresses on the wire API and are
//! mapped back, so the engine only ever sees plain IPv4 or IPv6 addresses.
//!
//! The data path goes through `quinn-udp`: `recvmmsg` with UDP GRO (one buffer may hold many
//! datagrams from one sender, `stride` apart) and `sendmsg` with UDP GSO (a run of equal-size
//! datagrams to one peer in one call), so a burst costs a few system calls, not one per packet.

use crate::engine::Batch;
use crate::io::ready;
pub use quinn_udp::RecvMeta;
use quinn_udp::{Transmit, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// How long a send waits for room in a full socket buffer before the datagram is dropped (as a
/// full link would drop it): long enough for any burst to drain, short enough that a stuck
/// socket never stalls the loop.
const SEND_WAIT: Duration = Duration::from_millis(100);

/// Non-blocking and not registered with the async runtime: the data-path threads wait on it
/// with `poll` themselves.
pub struct Udp {
    sock: UdpSocket,
    state: UdpSocketState,
    /// The fast receive lane on the same port ([`crate::io::lanes`]), where the kernel allows
    /// it; sends always leave from `sock`.
    fast: Option<(UdpSocket, UdpSocketState)>,
    dual_stack: bool,
}

pub use crate::core::flush::Lane;

/// What the data-path loops need of the UDP port: batched, non-blocking receives per lane, a
/// descriptor per lane to wait on, and batched sends. [`Udp`] is the real one; the loops are
/// generic over it (no dynamic dispatch on the data path), so a unit test can run them over
/// an in-memory pair (`crate::testing`).
pub trait Underlay: Send + Sync {
    /// Whether small datagrams have a receive lane of their own.
    fn has_fast_lane(&self) -> bool;
    /// The descriptor of `lane`, to wait on with others; `None` for a lane it lacks.
    fn lane_fd(&self, lane: Lane) -> Option<BorrowedFd<'_>>;
    /// Receives as many datagrams as `bufs` hold from `lane` without waiting: `WouldBlock`
    /// when nothing is queued (or the lane is missing). Each `meta[i]` tells how many bytes of
    /// `bufs[i]` are filled, the sender (on the wire: map it with [`Underlay::sender`]) and
    /// the `stride` between coalesced datagrams.
    fn try_recv(
        &self,
        lane: Lane,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize>;
    /// Sends every datagram of `batch`; errors are logged, not returned.
    fn send_batch(&self, batch: &Batch);
    /// A sender's address ([`RecvMeta::addr`]) as the engine knows it.
    fn sender(&self, on_wire: SocketAddr) -> SocketAddr;

    /// Waits up to `timeout` for a datagram (or an error) to be queued on `lane`; `Ok(false)`
    /// on timeout, and at once for a lane this socket does not have.
    fn wait_lane(&self, lane: Lane, timeout: Duration) -> io::Result<bool> {
        match self.lane_fd(lane) {
            Some(fd) => ready::wait(fd, false, timeout),
            None => Ok(false),
        }
    }

    /// [`Underlay::try_recv`] from either lane, the fast one first.
    fn try_recv_batch(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        match self.try_recv(Lane::Fast, bufs, meta) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        self.try_recv(Lane::Bulk, bufs, meta)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on UDP port {port}: {source}")]
pub struct UdpError {
    pub port: u16,
    #[source]
    pub source: io::Error,
}

/// A non-blocking UDP socket bound to `port` on every address: `[::]` taking IPv4 too when
/// `dual_stack`, else `0.0.0.0`; in a `SO_REUSEPORT` group when `reuse_port` (the receive lanes).
pub(crate) fn bind_socket(port: u16, dual_stack: bool, reuse_port: bool) -> io::Result<Socket> {
    let (domain, addr) = if dual_stack {
        (
            Domain::IPV6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        )
    } else {
        (Domain::IPV4, SocketAddr::from(([0, 0, 0, 0], port)))
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if dual_stack {
        s.set_only_v6(false)?;
    }
    s.set_nonblocking(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    Ok(s)
}

fn set_pmtudisc_probe(sock: &Socket, v6: bool) {
    use std::os::fd::AsRawFd;
    let set = |level, name| {
        let val: libc::c_int = 3; // IP_PMTUDISC_PROBE == IPV6_PMTUDISC_PROBE
                                  // SAFETY: a valid socket descriptor and a c_int option of the right size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&val as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::IPPROTO_IP, libc::IP_MTU_DISCOVER) != 0 {
        tracing::debug!("IP_MTU_DISCOVER not set: {}", io::Error::last_os_error());
    }
    if v6 && set(libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER) != 0 {
        tracing::debug!("IPV6_MTU_DISCOVER not set: {}", io::Error::last_os_error());
    }
}

impl Udp {
    /// Binds `[::]:port` dual stack, or `0.0.0.0:port` where IPv6 is disabled, with a fast
    /// receive lane for small datagrams where the kernel allows it. A port another program
    /// holds is refused (`AddrInUse`), lanes or not: the port is first bound alone.
    pub fn bind(port: u16) -> Result<Udp, UdpError> {
        let err = |source| UdpError { port, source };
        let (alone, dual_stack) = match bind_socket(port, true, false) {
            Ok(s) => (s, true),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(err(e)),
            Err(_) => (bind_socket(port, false, false).map_err(err)?, false),
        };
        let port = alone
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .unwrap_or(port);
        drop(alone);
        let (sock, fast) = match crate::io::lanes::bind(port, dual_stack) {
            Ok((bulk, fast)) => (bulk, Some(fast)),
            Err(e) => {
                tracing::debug!(error = %e, "one receive lane: no SO_REUSEPORT steering");
                (bind_socket(port, dual_stack, false).map_err(err)?, None)
            }
        };
        // Outer packets carry DF and ignore the kernel's path-MTU cache: wiremesh measures each
        // path itself (probes inside the tunnel) and never lets the underlay fragment.
        set_pmtudisc_probe(&sock, dual_stack);
        // Bursts from many peers arrive together; the default 208 KiB drops them.
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        let state = UdpSocketState::new((&sock).into()).map_err(err)?;
        let fast = match fast {
            Some(f) => {
                let _ = f.set_recv_buffer_size(1 << 20);
                let state = UdpSocketState::new((&f).into()).map_err(err)?;
                Some((f.into(), state))
            }
            None => None,
        };
        let sock: UdpSocket = sock.into();
        Ok(Udp {
            sock,
            state,
            fast,
            dual_stack,
        })
    }

    /// Whether small datagrams have a receive lane of their own.
    pub fn has_fast_lane(&self) -> bool {
        self.fast.is_some()
    }

    pub fn local_port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    fn to_wire(&self, addr: SocketAddr) -> SocketAddr {
        match addr {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            other => other,
        }
    }

    pub fn from_wire(addr: SocketAddr) -> SocketAddr {
        match addr {
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
                None => addr,
            },
            other => other,
        }
    }

    /// Sends one datagram now (or fails with `WouldBlock` when the socket buffer is full).
    pub fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        if to.is_ipv6() && !self.dual_stack {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "IPv6 is disabled on this host",
            ));
        }
        self.sock.send_to(datagram, self.to_wire(to))
    }

    /// How many datagrams one GRO buffer may hold; receive buffers should be 64 KiB if > 1.
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// The socket of `lane`, if there is one (no fast lane where the kernel refused steering).
    fn lane(&self, lane: Lane) -> Option<(&UdpSocket, &UdpSocketState)> {
        match lane {
            Lane::Bulk => Some((&self.sock, &self.state)),
            Lane::Fast => self.fast.as_ref().map(|(s, st)| (s, st)),
        }
    }

    /// The descriptor of `lane`, to wait on with others.
    pub fn lane_fd(&self, lane: Lane) -> Option<BorrowedFd<'_>> {
        self.lane(lane).map(|(s, _)| s.as_fd())
    }

    /// Like [`Underlay::try_recv_batch`], from `lane` only (`WouldBlock` for a lane it lacks).
    pub fn try_recv(
        &self,
        lane: Lane,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        match self.lane(lane) {
            Some((s, state)) => state.recv(s.into(), bufs, meta),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Sends every datagram of `batch`, one `sendmsg` per run of equal-size datagrams to one
    /// peer (UDP GSO). A run the kernel refuses as a whole is retried datagram by datagram
    /// (quinn-udp turns GSO off after the first such refusal). Errors are logged, not returned:
    /// one unreachable peer must not stop the others.
    pub fn send_batch(&self, batch: &Batch) {
        let max = self.state.max_gso_segments();
        for run in batch.datagram_runs(max) {
            if run.to.is_ipv6() && !self.dual_stack {
                continue;
            }
            let destination = self.to_wire(run.to);
            let segments = run.contents.len().div_ceil(run.segment);
            let transmit = Transmit {
                destination,
                ecn: None,
                contents: run.contents,
                segment_size: (segments > 1).then_some(run.segment),
                src_ip: None,
            };
            match self.send_one(&transmit) {
                Ok(()) => {}
                Err(e) if segments > 1 => {
                    tracing::debug!(to = %run.to, error = %e, "GSO send failed; sending singly");
                    for d in run.contents.chunks(run.segment) {
                        let single = Transmit {
                            contents: d,
                            segment_size: None,
                            ..transmit.clone()
                        };
                        if let Err(e) = self.send_one(&single) {
                            tracing::debug!(to = %run.to, error = %e, "send failed");
                        }
                    }
                }
                Err(e) => tracing::debug!(to = %run.to, error = %e, "send failed"),
            }
        }
    }

    /// One `sendmsg`; waits (up to [`SEND_WAIT`]) while the socket buffer is full.
    fn send_one(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        loop {
            match self.state.try_send((&self.sock).into(), transmit) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !ready::wait(self.sock.as_fd(), true, SEND_WAIT)? {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }
}

impl Underlay for Udp {
    #[inline]
    fn has_fast_lane(&self) -> bool {
        Udp::has_fast_lane(self)
    }
    #[inline]
    fn lane_fd(&self, lane: Lane) -> Option<BorrowedFd<'_>> {
        Udp::lane_fd(self, lane)
    }
    #[inline]
    fn try_recv(
        &self,
        lane: Lane,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        Udp::try_recv(self, lane, bufs, meta)
    }
    #[inline]
    fn send_batch(&self, batch: &Batch) {
        Udp::send_batch(self, batch)
    }
    #[inline]
    fn sender(&self, on_wire: SocketAddr) -> SocketAddr {
        Udp::from_wire(on_wire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next datagram `u` receives (within 5 s), and its sender.
    fn recv_one(u: &Udp) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 65_536];
        let mut meta = [RecvMeta::default()];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let n = loop {
            match u.try_recv_batch(&mut [IoSliceMut::new(&mut buf)], &mut meta) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "nothing within 5 s");
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(n, 1);
        buf.truncate(meta[0].len);
        (buf, Udp::from_wire(meta[0].addr))
    }

    /// Two sockets on loopback, the second with both receive lanes, and its address.
    fn sender_and_laned_receiver() -> (Udp, Udp, SocketAddr) {
        let a = Udp::bind(0).unwrap();
        let b = Udp::bind(0).unwrap();
        assert!(b.has_fast_lane(), "SO_REUSEPORT steering is refused here");
        let to = format!("127.0.0.1:{}", b.local_port()).parse().unwrap();
        (a, b, to)
    }

    #[test]
    fn ipv4_peers_are_reached_and_seen_as_plain_ipv4_over_loopback() {
        let a = Udp::bind(0).unwrap();
        let b = Udp::bind(0).unwrap();
        let to: SocketAddr = format!("127.0.0.1:{}", b.local_port()).parse().unwrap();
        a.send_to(b"ping", to).unwrap();
        let (got, from) = recv_one(&b);
        assert_eq!(got, b"ping");
        assert_eq!(
            from,
            format!("127.0.0.1:{}", a.local_port())
                .parse::<SocketAddr>()
                .unwrap()
        );
    }

    #[test]
    fn a_small_datagram_overtakes_bulk_queued_before_it() {
        let (a, b, to) = sender_and_laned_receiver();
        for i in 0..3u8 {
            a.send_to(&[i; 1200], to).unwrap();
        }
        a.send_to(&[7; crate::io::lanes::SMALL as usize], to)
            .unwrap();
        a.send_to(&[8; 32], to).unwrap();
        // both small ones first, each lane in its own order, then the bulk in order
        let got: Vec<(u8, usize)> = (0..5)
            .map(|_| {
                let (d, _) = recv_one(&b);
                (d[0], d.len())
            })
            .collect();
        assert_eq!(
            got,
            vec![(7, 256), (8, 32), (0, 1200), (1, 1200), (2, 1200)]
        );
    }

    #[test]
    fn each_lane_is_read_on_its_own() {
        let (a, b, to) = sender_and_laned_receiver();
        a.send_to(&[1; 1200], to).unwrap();
        a.send_to(&[2; 64], to).unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut meta = [RecvMeta::default()];
        for (lane, want) in [(Lane::Bulk, (1, 1200)), (Lane::Fast, (2, 64))] {
            assert!(b.wait_lane(lane, Duration::from_secs(5)).unwrap());
            let n = b
                .try_recv(lane, &mut [IoSliceMut::new(&mut buf)], &mut meta)
                .unwrap();
            assert_eq!((n, (buf[0], meta[0].len)), (1, want), "{lane:?}");
            let again = b.try_recv(lane, &mut [IoSliceMut::new(&mut buf)], &mut meta);
            assert_eq!(again.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        }
    }

    #[test]
    fn a_port_in_use_is_refused_even_with_two_lanes() {
        let a = Udp::bind(0).unwrap();
        let e = Udp::bind(a.local_port())
            .err()
            .expect("second bind must fail");
        assert_eq!(e.source.kind(), io::ErrorKind::AddrInUse, "{e}");
        // and a plain socket on the port is refused as well
        assert!(UdpSocket::bind(("0.0.0.0", a.local_port())).is_err());
    }
}
