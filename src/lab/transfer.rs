//! A TCP transfer between two lab nodes' overlay addresses, with a SHA-256 of what was sent and
//! what arrived, so a test can prove that bytes crossed the tunnels intact (not just that a
//! connection opened). The stream is pseudo-random, so a shifted or repeated block shows.

use super::netns::in_netns;
use super::LabError;
use ring::digest::{Context, SHA256};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// What one transfer measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub bytes: u64,
    pub sent_sha256: String,
    pub received_sha256: String,
    pub elapsed: Duration,
}

impl Transfer {
    pub fn intact(&self) -> bool {
        self.sent_sha256 == self.received_sha256
    }

    /// Goodput in Mbit/s.
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// xorshift64*: cheap enough to generate at line rate, not compressible or periodic in practice.
fn fill(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

fn hex(d: ring::digest::Digest) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> LabError + '_ {
    move |e| LabError::Command {
        command: what.to_string(),
        stderr: e.to_string(),
    }
}

/// Sends `bytes` from namespace `from_ns` to `to_addr:port`, listened on inside `to_ns`.
pub fn tcp_transfer(
    from_ns: &str,
    to_ns: &str,
    to_addr: IpAddr,
    port: u16,
    bytes: u64,
    timeout: Duration,
) -> Result<Transfer, LabError> {
    tcp_transfer_paced(from_ns, to_ns, to_addr, port, bytes, None, timeout)
}

/// Like [`tcp_transfer`], at most `rate` bytes per second when given, so a transfer can be
/// made to last while a test changes the network under it.
pub fn tcp_transfer_paced(
    from_ns: &str,
    to_ns: &str,
    to_addr: IpAddr,
    port: u16,
    bytes: u64,
    rate: Option<u64>,
    timeout: Duration,
) -> Result<Transfer, LabError> {
    let listen = SocketAddr::new(to_addr, port);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = in_netns(to_ns, move || -> Result<(u64, String), LabError> {
        let l = TcpListener::bind(listen).map_err(io_err("bind"));
        let _ = ready_tx.send(l.is_ok());
        let (mut s, _) = l?.accept().map_err(io_err("accept"))?;
        s.set_read_timeout(Some(timeout))
            .map_err(io_err("timeout"))?;
        let mut ctx = Context::new(&SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf).map_err(io_err("read"))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            total += n as u64;
        }
        Ok((total, hex(ctx.finish())))
    });
    let listening = ready_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or(false);
    if !listening {
        return match server.join() {
            Ok(Ok(Err(e))) | Ok(Err(e)) => Err(e),
            _ => Err(LabError::Command {
                command: "listen".into(),
                stderr: "server did not start".into(),
            }),
        };
    }
    let client = in_netns(from_ns, move || -> Result<(String, Duration), LabError> {
        let start = Instant::now();
        let mut s = TcpStream::connect_timeout(&listen, timeout).map_err(io_err("connect"))?;
        s.set_write_timeout(Some(timeout))
            .map_err(io_err("timeout"))?;
        let mut ctx = Context::new(&SHA256);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = bytes;
        let chunk = rate.map_or(buf.len(), |r| {
            (r / 20).clamp(1024, buf.len() as u64) as usize
        });
        while left > 0 {
            if let Some(r) = rate {
                let due = Duration::from_secs_f64((bytes - left) as f64 / r as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let n = left.min(chunk as u64) as usize;
            fill(&mut state, &mut buf[..n]);
            s.write_all(&buf[..n]).map_err(io_err("write"))?;
            ctx.update(&buf[..n]);
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)
            .map_err(io_err("shutdown"))?;
        // wait for the receiver to close, so elapsed covers delivery, not just buffering
        let _ = s.read(&mut [0u8; 1]);
        Ok((hex(ctx.finish()), start.elapsed()))
    });
    let panicked = || LabError::Command {
        command: "transfer".into(),
        stderr: "thread panicked".into(),
    };
    let (sent_sha256, elapsed) = client.join().map_err(|_| panicked())???;
    let (received, received_sha256) = server.join().map_err(|_| panicked())???;
    Ok(Transfer {
        bytes: received,
        sent_sha256,
        received_sha256,
        elapsed,
    })
}
