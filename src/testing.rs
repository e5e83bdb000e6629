//! Scaffolding shared by the unit tests, the integration tests (through `tests/common`) and the
//! benches: the one root policy, one deadline-and-retry wait, an IPv4 packet, devices of a
//! mesh and a handshake crossed in memory, an in-memory tun device and UDP pair for the
//! data-path loops, a fake UAPI handler and the `promtool` pipe.
//!
//! It is a public module rather than `#[cfg(test)]` because integration tests and benches link
//! the library as built for them, without `cfg(test)`: only a public module reaches all three.
//! It is hidden from the docs and holds nothing the daemon calls.

use crate::constants::{SMALL_DATAGRAM, SMALL_PACKET};
use crate::core::key::PrivateKey;
use crate::core::plan::Plan;
use crate::core::topology::Topology;
use crate::engine::{Batch, Device, Scratch};
use crate::io::ready;
use crate::io::tun::Tun;
use crate::io::uapi::{UapiDevice, UapiError, UapiHandler, UapiSet};
use crate::io::udp::{Lane, RecvMeta, Underlay};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tun_rs::GROTable;

/// Whether this run is CI (`CI=true`), where nothing may be skipped for want of a tool or root.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// What a run without root does under `CI=true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderCi {
    /// A test: a misconfigured runner must not turn it into a silent pass.
    Fail,
    /// A benchmark: it measures, it does not prove anything, so it may skip anywhere.
    Skip,
}

/// The one root gate. With root: true. Without: outside CI it prints `skipped: <what> needs
/// root` and returns false; under `CI=true` it fails unless `under_ci` is [`UnderCi::Skip`].
pub fn has_root(what: &str, under_ci_policy: UnderCi) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if under_ci() && under_ci_policy == UnderCi::Fail {
        panic!("{what} needs root, and CI=true forbids skipping it");
    }
    eprintln!("skipped: {what} needs root");
    false
}

/// [`has_root`] for a test: skips outside CI, fails under `CI=true`.
pub fn require_root() -> bool {
    has_root("this test", UnderCi::Fail)
}

/// Tries `attempt` every `every` until it gives `Ok`, and returns that; fails naming `what` and
/// the last `Err` if none came within `within`. `attempt` runs at least once, and once more
/// at the deadline.
pub fn wait_for<T, E: std::fmt::Display>(
    within: Duration,
    every: Duration,
    what: &str,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match attempt() {
            Ok(done) => return done,
            Err(last) if Instant::now() >= deadline => {
                panic!("no {what} within {within:?}: {last}")
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// [`wait_for`] a condition, polling every 100 ms.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(within, Duration::from_millis(100), what, || {
        if cond() {
            Ok(())
        } else {
            Err("still false")
        }
    })
}

/// An IPv4 TCP segment (ACK, no options) of one flow, 10.244.1.2:5201 → 10.244.2.2:40000, with
/// `payload` bytes at sequence number `seq` and valid IP and TCP checksums: what a tun device's
/// GRO must find to coalesce segments.
pub fn tcp_segment(seq: u32, payload: usize) -> Vec<u8> {
    let len = 40 + payload;
    let mut p = vec![0u8; len];
    p[..12].copy_from_slice(&[
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    p[12..20].copy_from_slice(&[10, 244, 1, 2, 10, 244, 2, 2]);
    p[20..24].copy_from_slice(&[0x14, 0x51, 0x9c, 0x40]);
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32] = 0x50; // data offset: 5 words
    p[33] = 0x10; // ACK
    p[34..36].copy_from_slice(&[0xff, 0xff]);
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let fold = |mut acc: u32, data: &[u8]| {
        for c in data.chunks(2) {
            acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        acc
    };
    let finish = |mut acc: u32| {
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    };
    let ip = finish(fold(0, &p[..20]));
    p[10..12].copy_from_slice(&ip.to_be_bytes());
    let pseudo = fold(6 + (len as u32 - 20), &p[12..20]);
    let tcp = finish(fold(pseudo, &p[20..]));
    p[36..38].copy_from_slice(&tcp.to_be_bytes());
    p
}

/// A minimal IPv4/UDP-protocol packet from `src` to `dst` carrying `payload` (no checksum: the
/// engine routes on the header and never checks it).
pub fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// The devices of a full mesh of `names`, keys generated: node `i` has the pod CIDR
/// 10.244.(i+1).0/24 and the endpoint 192.0.2.(i+1):51820, returned with it.
pub fn full_mesh(names: &[&str]) -> Vec<(Device, SocketAddr)> {
    let keys: Vec<PrivateKey> = names
        .iter()
        .map(|_| crate::io::keyfile::generate())
        .collect();
    let mut text = "mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n".to_string();
    for (i, name) in names.iter().enumerate() {
        text.push_str(&format!(
            "[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"r\"\nendpoint = \"192.0.2.{n}:51820\"\npublic-key = \"{}\"\npod-cidr = \"10.244.{n}.0/24\"\n",
            keys[i].public_key(),
            n = i + 1
        ));
    }
    let topo = Topology::parse(&text, Path::new("mem.toml")).expect("a valid mesh");
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let plan = Plan::compute(&topo, name).expect("a plan for each node");
            let addr = SocketAddr::from(([192, 0, 2, i as u8 + 1], 51820));
            (
                Device::new(keys[i].clone(), &plan, std::time::Instant::now()),
                addr,
            )
        })
        .collect()
}

/// Sends `first` from `a` to `b` in memory and crosses the datagrams `rounds` times each way
/// (init → response → the queued packet takes three), so the two share a session.
pub fn cross_handshake(
    (a, a_addr): (&Device, SocketAddr),
    (b, b_addr): (&Device, SocketAddr),
    first: &[u8],
    rounds: usize,
) {
    let mut scratch = Scratch::new();
    let mut to_b = Batch::new();
    let now = std::time::Instant::now();
    a.handle_tun_packet(now, first, &mut scratch, &mut to_b);
    for _ in 0..rounds {
        let mut to_a = Batch::new();
        for (_, d) in to_b.datagrams() {
            b.handle_datagram(now, a_addr, d, &mut scratch, &mut to_a);
        }
        to_b = Batch::new();
        for (_, d) in to_a.datagrams() {
            a.handle_datagram(now, b_addr, d, &mut scratch, &mut to_b);
        }
    }
}

/// Sends `packet` on `sock`, waiting up to 1 s for room (a datagram socket pair queues only a
/// few datagrams).
fn send_waiting(sock: &UnixDatagram, packet: &[u8]) -> io::Result<()> {
    loop {
        match sock.send(packet) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !ready::wait(sock.as_fd(), true, Duration::from_secs(1))? {
                    return Err(e);
                }
            }
            other => return other.map(drop),
        }
    }
}

/// A connected pair of non-blocking datagram sockets.
fn socket_pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
    let (a, b) = UnixDatagram::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((a, b))
}

/// One queue of an in-memory tun device ([`memory_tun`]), as the data-path loops see it: a
/// packet per datagram of a socket pair, so `poll` works on it as on the real device.
#[derive(Debug)]
pub struct MemoryTun(UnixDatagram);

/// The kernel's side of an in-memory tun device: what it writes reaches the loops, steered to
/// the small queue by size as [`crate::io::tun_lanes`] does; what the loops write to the first
/// queue, it reads.
#[derive(Debug)]
pub struct MemoryKernel {
    bulk: UnixDatagram,
    small: UnixDatagram,
}

/// An in-memory tun device with two queues: (bulk, small, the kernel's side).
pub fn memory_tun() -> io::Result<(MemoryTun, MemoryTun, MemoryKernel)> {
    let (bulk, kernel_bulk) = socket_pair()?;
    let (small, kernel_small) = socket_pair()?;
    let kernel = MemoryKernel {
        bulk: kernel_bulk,
        small: kernel_small,
    };
    Ok((MemoryTun(bulk), MemoryTun(small), kernel))
}

impl MemoryKernel {
    /// Routes `packet` into the tun device, as an application's send would.
    pub fn write(&self, packet: &[u8]) -> io::Result<()> {
        let queue = if packet.len() <= SMALL_PACKET {
            &self.small
        } else {
            &self.bulk
        };
        send_waiting(queue, packet)
    }

    /// The next packet the loops wrote to the tun device, waiting up to `within`.
    pub fn read(&self, within: Duration) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 65_536];
        if !ready::wait(self.bulk.as_fd(), false, within)? {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let n = self.bulk.recv(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

impl Tun for MemoryTun {
    fn recv_multiple(
        &self,
        _original: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        sizes[0] = self.0.recv(&mut bufs[0][offset..])?;
        Ok(1)
    }

    fn send_multiple(
        &self,
        _gro: &mut GROTable,
        bufs: &mut [Vec<u8>],
        offset: usize,
    ) -> io::Result<usize> {
        for buf in bufs.iter() {
            send_waiting(&self.0, &buf[offset..])?;
        }
        Ok(bufs.len())
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// One end of an in-memory UDP link ([`memory_udp_pair`]) with two receive lanes, steered by
/// size as [`crate::io::lanes`] does. It delivers only to its peer's address, and keeps a copy
/// of every datagram it sent, to check what crossed the wire.
#[derive(Debug)]
pub struct MemoryUdp {
    peer: SocketAddr,
    bulk: UnixDatagram,
    fast: UnixDatagram,
    pub sent: Mutex<Vec<Vec<u8>>>,
}

/// Two ends of an in-memory UDP link between the underlay addresses `a` and `b`.
pub fn memory_udp_pair(a: SocketAddr, b: SocketAddr) -> io::Result<(MemoryUdp, MemoryUdp)> {
    let (a_bulk, b_bulk) = socket_pair()?;
    let (a_fast, b_fast) = socket_pair()?;
    let end = |peer, bulk, fast| MemoryUdp {
        peer,
        bulk,
        fast,
        sent: Mutex::default(),
    };
    Ok((end(b, a_bulk, a_fast), end(a, b_bulk, b_fast)))
}

impl Underlay for MemoryUdp {
    fn has_fast_lane(&self) -> bool {
        true
    }

    fn lane_fd(&self, lane: Lane) -> Option<BorrowedFd<'_>> {
        Some(match lane {
            Lane::Bulk => self.bulk.as_fd(),
            Lane::Fast => self.fast.as_fd(),
        })
    }

    fn try_recv(
        &self,
        lane: Lane,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let sock = match lane {
            Lane::Bulk => &self.bulk,
            Lane::Fast => &self.fast,
        };
        let mut n = 0;
        for (buf, m) in bufs.iter_mut().zip(meta.iter_mut()) {
            match sock.recv(buf) {
                Ok(len) => {
                    (m.addr, m.len, m.stride) = (self.peer, len, len);
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    fn send_batch(&self, batch: &Batch) {
        for (to, datagram) in batch.datagrams() {
            if to != self.peer {
                continue;
            }
            let lane = if datagram.len() <= SMALL_DATAGRAM {
                &self.fast
            } else {
                &self.bulk
            };
            self.sent.lock().unwrap().push(datagram.to_vec());
            if let Err(e) = send_waiting(lane, datagram) {
                tracing::debug!(error = %e, "in-memory send failed");
            }
        }
    }

    fn sender(&self, on_wire: SocketAddr) -> SocketAddr {
        on_wire
    }
}

/// A [`UapiHandler`] that answers `get` with a fixed device and records every `set` it accepts;
/// a `set` of `listen_port = refuse_port` fails as a port in use, one of
/// `listen_port = invalid_port` as an invalid request, so callers can reach both error replies.
#[derive(Debug, Default)]
pub struct FakeUapi {
    pub dev: UapiDevice,
    pub sets: Mutex<Vec<UapiSet>>,
    pub refuse_port: Option<u16>,
    pub invalid_port: Option<u16>,
}

impl FakeUapi {
    pub fn new(dev: UapiDevice) -> Self {
        Self {
            dev,
            ..Self::default()
        }
    }
}

impl UapiHandler for FakeUapi {
    fn get(&self) -> UapiDevice {
        self.dev.clone()
    }
    fn set(&self, req: UapiSet) -> Result<(), UapiError> {
        if let Some(port) = self.refuse_port.filter(|p| req.listen_port == Some(*p)) {
            return Err(UapiError::PortInUse(port));
        }
        if self.invalid_port.is_some() && req.listen_port == self.invalid_port {
            return Err(UapiError::Invalid(
                "refused by FakeUapi (invalid_port)".into(),
            ));
        }
        self.sets.lock().unwrap().push(req);
        Ok(())
    }
}

/// `promtool check metrics` fed `text` on stdin. `None` where promtool is not installed and
/// this is not CI (it says so); under `CI=true` a missing promtool fails.
pub fn promtool_check_metrics(text: &str) -> Option<std::process::Output> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if !under_ci() => {
            eprintln!("skipped: promtool not available ({e})");
            return None;
        }
        Err(e) => panic!("promtool is required under CI: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_returns_the_first_ok_after_retrying() {
        let mut tries = 0;
        let got = wait_for(Duration::from_secs(5), Duration::ZERO, "third try", || {
            tries += 1;
            if tries == 3 {
                Ok(tries)
            } else {
                Err("not yet")
            }
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "no answer within 0ns: still silent")]
    fn wait_for_fails_naming_what_and_the_last_error() {
        wait_for(Duration::ZERO, Duration::ZERO, "answer", || {
            Err::<(), _>("still silent")
        });
    }

    #[test]
    fn a_packet_carries_its_length_addresses_and_payload() {
        let p = ipv4([10, 0, 0, 1], [10, 0, 1, 1], b"hey");
        assert_eq!((p[0], u16::from_be_bytes([p[2], p[3]])), (0x45, 23));
        assert_eq!(
            (&p[12..16], &p[16..20], &p[20..]),
            (&[10, 0, 0, 1][..], &[10, 0, 1, 1][..], &b"hey"[..])
        );
    }
}
