//! Scaffolding shared by the unit tests, the integration tests (through `tests/common`) and the
//! benches: the one root policy, one deadline-and-retry wait, an IPv4 packet, a handshake
//! crossed in memory, a fake UAPI handler and the `promtool` pipe.
//!
//! It is a public module rather than `#[cfg(test)]` because integration tests and benches link
//! the library as built for them, without `cfg(test)`: only a public module reaches all three.
//! It is hidden from the docs and holds nothing the daemon calls.

use crate::engine::{Batch, Device, Scratch};
use crate::io::uapi::{UapiDevice, UapiError, UapiHandler, UapiSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    a.handle_tun_packet(first, &mut scratch, &mut to_b);
    for _ in 0..rounds {
        let mut to_a = Batch::new();
        for (_, d) in to_b.datagrams() {
            b.handle_datagram(a_addr, d, &mut scratch, &mut to_a);
        }
        to_b = Batch::new();
        for (_, d) in to_a.datagrams() {
            a.handle_datagram(b_addr, d, &mut scratch, &mut to_b);
        }
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
