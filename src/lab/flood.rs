//! Hostile handshake traffic for the lab's flood test and benchmark: random junk, initiations
//! with a forged MAC1, and initiations with a *valid* MAC1 for a node's key, sent at a bounded
//! rate from inside one of the lab's namespaces to an address in another.
//!
//! A valid MAC1 needs only the responder's public key (WireGuard: `mac1 = MAC(HASH("mac1----"
//! || Spub_r), msg[..116])`, MAC being keyed BLAKE2s-128), which is why anyone can make one and
//! why a responder must not spend a Diffie-Hellman on each before it checks its load. Each
//! initiation here is one real initiation from a throwaway key with a fresh sender index, its
//! MAC1 recomputed: the responder cannot tell it from a new initiator without a Diffie-Hellman,
//! and making it costs a hash, not a Diffie-Hellman.

use super::netns::enter_netns;
use super::LabError;
use crate::core::key::PublicKey;
use blake2::digest::consts::U16;
use blake2::digest::{Digest, Mac};
use blake2::{Blake2s256, Blake2sMac};
use boringtun::noise::{Tunn, TunnResult};
use rand_core::{OsRng, RngCore};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An initiation's MAC1 sits after its first 116 bytes; MAC2 after 132.
const MAC1_AT: usize = 116;
const MAC2_AT: usize = 132;
/// Datagrams per `sendmmsg`.
const BATCH: usize = 64;
/// How often the sender catches up with its schedule.
const TICK: Duration = Duration::from_millis(1);

/// What a flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodKind {
    /// Random bytes of random length (1–256); one in four is shaped as a data packet (type 4),
    /// so it reaches the session lookup.
    Junk,
    /// Initiations whose MAC1 is wrong.
    BadMac1,
    /// Initiations whose MAC1 is right for the target's key, from a key no node knows.
    ValidMac1,
}

impl FloodKind {
    pub const ALL: [FloodKind; 3] = [FloodKind::Junk, FloodKind::BadMac1, FloodKind::ValidMac1];

    pub fn label(self) -> &'static str {
        match self {
            FloodKind::Junk => "junk",
            FloodKind::BadMac1 => "bad MAC1",
            FloodKind::ValidMac1 => "valid MAC1",
        }
    }
}

/// `n` datagrams of `kind` for the node whose static public key is `to`.
pub fn flood_packets(kind: FloodKind, to: &PublicKey, n: usize) -> Vec<Vec<u8>> {
    match kind {
        FloodKind::Junk => (0..n).map(junk).collect(),
        FloodKind::BadMac1 | FloodKind::ValidMac1 => {
            let template = initiation(to);
            let key = mac1_key(to);
            (0..n)
                .map(|_| {
                    let mut p = template.clone();
                    // a fresh sender index: a new initiation to the responder
                    OsRng.fill_bytes(&mut p[4..8]);
                    let mac = mac1(&key, &p[..MAC1_AT]);
                    p[MAC1_AT..MAC2_AT].copy_from_slice(&mac);
                    if kind == FloodKind::BadMac1 {
                        p[MAC1_AT] ^= 0x80;
                    }
                    p
                })
                .collect()
        }
    }
}

fn junk(i: usize) -> Vec<u8> {
    let len = 1 + (OsRng.next_u32() % 256) as usize;
    let mut p = vec![0u8; len];
    OsRng.fill_bytes(&mut p);
    if i.is_multiple_of(4) && len >= 4 {
        p[..4].copy_from_slice(&4u32.to_le_bytes());
    }
    p
}

/// One real initiation to `to` from a throwaway key (MAC2 empty: no cookie).
fn initiation(to: &PublicKey) -> Vec<u8> {
    let key = crate::io::keyfile::generate();
    let mut tunn = Tunn::new(key.secret().clone(), to.to_x25519(), None, None, 1, None);
    let mut buf = [0u8; 256];
    match tunn.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        _ => unreachable!("a fresh Tunn always has an initiation to send"),
    }
}

/// `HASH("mac1----" || Spub_r)`.
fn mac1_key(to: &PublicKey) -> [u8; 32] {
    Blake2s256::new()
        .chain_update(b"mac1----")
        .chain_update(to.as_bytes())
        .finalize()
        .into()
}

/// Keyed BLAKE2s with a 16-byte output.
fn mac1(key: &[u8; 32], msg: &[u8]) -> [u8; 16] {
    let mut mac = Blake2sMac::<U16>::new_from_slice(key).expect("a 32-byte key fits BLAKE2s");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// What a flood sender did.
#[derive(Debug, Clone, Copy)]
pub struct FloodSent {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams a send refused (e.g. `ENOBUFS`), skipped.
    pub failed: usize,
    /// Cookie replies that came back to the sender's sockets while it sent (and 50 ms after).
    pub cookie_replies: usize,
    pub elapsed: Duration,
}

impl FloodSent {
    /// The rate achieved, in datagrams a second.
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `packets` from namespace `ns` to `to`, `pps` a second, through one UDP socket bound
/// to each of `sources` in turn (a batch each), until all are sent or `stop` is set. Returns
/// at once; join the handle for what was sent. Only for addresses inside the lab's own
/// namespaces.
pub fn send_flood(
    ns: &str,
    sources: Vec<SocketAddr>,
    to: SocketAddr,
    packets: Vec<Vec<u8>>,
    pps: u32,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<FloodSent, LabError>> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let io = |what: String, e: std::io::Error| LabError::Command {
            command: format!("flood from {ns}: {what}"),
            stderr: e.to_string(),
        };
        enter_netns(&ns).map_err(|stderr| LabError::Command {
            command: format!("setns into {ns}"),
            stderr,
        })?;
        let socks = sources
            .iter()
            .map(|s| {
                let sock = UdpSocket::bind(s).map_err(|e| io(format!("bind {s}"), e))?;
                sock.connect(to)
                    .map_err(|e| io(format!("connect {to}"), e))?;
                // answers are drained between sends, and a full send buffer skips a batch
                sock.set_nonblocking(true)
                    .map_err(|e| io("O_NONBLOCK".into(), e))?;
                Ok(sock)
            })
            .collect::<Result<Vec<_>, LabError>>()?;
        let start = Instant::now();
        let (mut next, mut sent, mut failed, mut batches) = (0, 0, 0, 0usize);
        let mut cookie_replies = 0;
        while next < packets.len() && !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * f64::from(pps)) as usize;
            while next < due.min(packets.len()) {
                let end = (next + BATCH).min(due).min(packets.len());
                let sock = &socks[batches % socks.len()];
                batches += 1;
                match sendmmsg(sock, &packets[next..end]) {
                    Ok(n) if n > 0 => {
                        sent += n;
                        next += n;
                    }
                    _ => {
                        failed += end - next;
                        next = end;
                    }
                }
            }
            cookie_replies += drain_cookie_replies(&socks);
            std::thread::sleep(TICK);
        }
        let elapsed = start.elapsed();
        std::thread::sleep(Duration::from_millis(50));
        cookie_replies += drain_cookie_replies(&socks);
        Ok(FloodSent {
            sent,
            failed,
            cookie_replies,
            elapsed,
        })
    })
}

/// Reads what came back to the (non-blocking) sockets; how many were cookie replies (type 3,
/// 64 bytes).
fn drain_cookie_replies(socks: &[UdpSocket]) -> usize {
    let mut buf = [0u8; 2048];
    let mut cookies = 0;
    for sock in socks {
        while let Ok(n) = sock.recv(&mut buf) {
            if n == 64 && buf[..4] == 3u32.to_le_bytes() {
                cookies += 1;
            }
        }
    }
    cookies
}

/// Sends datagrams on a connected socket with one `sendmmsg`; how many the kernel took.
fn sendmmsg(sock: &UdpSocket, packets: &[Vec<u8>]) -> std::io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = packets
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; all-zero is a valid value (no name, no control).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: a valid socket, and `msgs.len()` headers each pointing at one live iovec over a
    // live buffer; the kernel only reads them.
    let n = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            0,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::noise::errors::WireGuardError;
    use boringtun::noise::rate_limiter::RateLimiter;

    fn verdict(limiter: &RateLimiter, p: &[u8]) -> Result<(), WireGuardError> {
        let mut reply = [0u8; 64];
        match limiter.verify_packet(None, p, &mut reply) {
            Ok(_) => Ok(()),
            Err(TunnResult::Err(e)) => Err(e),
            Err(_) => panic!("a cookie reply without load"),
        }
    }

    #[test]
    fn valid_mac1_initiations_pass_the_targets_mac1_check_and_bad_ones_fail_it() {
        let target = crate::io::keyfile::generate().public_key();
        let limiter = RateLimiter::new(&target.to_x25519(), u64::MAX);
        let valid = flood_packets(FloodKind::ValidMac1, &target, 20);
        let bad = flood_packets(FloodKind::BadMac1, &target, 20);
        for p in &valid {
            assert_eq!(p.len(), 148);
            assert!(verdict(&limiter, p).is_ok());
        }
        for p in &bad {
            assert!(matches!(
                verdict(&limiter, p),
                Err(WireGuardError::InvalidMac)
            ));
        }
        let other = RateLimiter::new(&crate::io::keyfile::generate().public_key().to_x25519(), 9);
        assert!(verdict(&other, &valid[0]).is_err(), "valid for any key");
        let indices: std::collections::HashSet<&[u8]> = valid.iter().map(|p| &p[4..8]).collect();
        assert_eq!(indices.len(), 20, "sender indices repeat");
    }

    #[test]
    fn junk_has_every_length_up_to_256_and_some_of_it_is_shaped_as_data() {
        let junk = flood_packets(
            FloodKind::Junk,
            &crate::io::keyfile::generate().public_key(),
            400,
        );
        assert!(junk.iter().all(|p| (1..=256).contains(&p.len())));
        assert!(junk.iter().filter(|p| p.starts_with(&[4, 0, 0, 0])).count() >= 90);
    }
}
