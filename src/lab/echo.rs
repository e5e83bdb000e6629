//! A UDP echo stream between two of the lab's namespaces, as `ping -i` measures a path: one
//! small request every interval, each sent once (no resend, so a loss counts as a loss), its
//! round trip taken from the sender's clock. The flood test and benchmark run it between two
//! legitimate peers while a third namespace floods one of them.

use super::netns::enter_netns;
use super::LabError;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request's size, as `ping`'s default payload.
const REQUEST: usize = 56;
/// How long the server blocks before it looks at its stop flag again.
const SERVER_TICK: Duration = Duration::from_millis(50);

/// What an echo stream saw.
#[derive(Debug, Clone, Default)]
pub struct EchoStats {
    /// Requests sent.
    pub sent: usize,
    /// Round trips of the requests answered within the timeout, shortest first.
    pub rtts: Vec<Duration>,
}

impl EchoStats {
    pub fn lost(&self) -> usize {
        self.sent - self.rtts.len()
    }

    pub fn loss_percent(&self) -> f64 {
        100.0 * self.lost() as f64 / self.sent.max(1) as f64
    }

    /// The `q` quantile (0–1) of the answered requests' round trips.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let i = ((self.rtts.len() as f64 * q) as usize).min(self.rtts.len().checked_sub(1)?);
        self.rtts.get(i).copied()
    }
}

fn setns_err(ns: &str) -> impl FnOnce(String) -> LabError + '_ {
    move |stderr| LabError::Command {
        command: format!("setns into {ns}"),
        stderr,
    }
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> LabError {
    move |e| LabError::Command {
        command: what,
        stderr: e.to_string(),
    }
}

/// Echoes every datagram to `bind` back to its sender from namespace `ns` until `stop` is set;
/// returns once the socket is bound. The handle gives how many it echoed.
pub fn echo_server(
    ns: &str,
    bind: SocketAddr,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<Result<usize, LabError>>, LabError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    let handle = std::thread::spawn(move || {
        let bound = enter_netns(&ns)
            .map_err(setns_err(&ns))
            .and_then(|()| UdpSocket::bind(bind).map_err(io_err(format!("bind {bind} in {ns}"))));
        let sock = match bound {
            Ok(sock) => {
                let _ = ready_tx.send(None);
                sock
            }
            Err(e) => {
                let _ = ready_tx.send(Some(e.to_string()));
                return Err(e);
            }
        };
        sock.set_read_timeout(Some(SERVER_TICK))
            .map_err(io_err("SO_RCVTIMEO".into()))?;
        let mut buf = [0u8; 2048];
        let mut echoed = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                if sock.send_to(&buf[..n], from).is_ok() {
                    echoed += 1;
                }
            }
        }
        Ok(echoed)
    });
    match ready_rx.recv() {
        Ok(None) => Ok(handle),
        Ok(Some(stderr)) => Err(LabError::Command {
            command: format!("echo server at {bind}"),
            stderr,
        }),
        Err(_) => Err(LabError::Command {
            command: format!("echo server at {bind}"),
            stderr: "its thread ended before binding".into(),
        }),
    }
}

/// Sends a request from namespace `ns` (source address `from`) to `to` every `interval` until
/// `stop` is set, then waits `timeout` for the last answers; an answer later than `timeout`
/// counts as lost.
pub fn echo_stream(
    ns: &str,
    from: IpAddr,
    to: SocketAddr,
    interval: Duration,
    timeout: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<EchoStats, LabError>> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns).map_err(setns_err(&ns))?;
        let sock = UdpSocket::bind((from, 0)).map_err(io_err(format!("bind {from} in {ns}")))?;
        sock.connect(to)
            .map_err(io_err(format!("connect {to} in {ns}")))?;
        let mut sent_at: Vec<Instant> = Vec::new();
        let mut answered: HashMap<u64, Duration> = HashMap::new();
        let mut next = Instant::now();
        let mut stopped_at: Option<Instant> = None;
        let mut buf = [0u8; 2048];
        loop {
            let now = Instant::now();
            if stopped_at.is_none() && stop.load(Ordering::Relaxed) {
                stopped_at = Some(now);
            }
            if stopped_at.is_some_and(|t| now >= t + timeout) {
                break;
            }
            if stopped_at.is_none() && now >= next {
                let mut req = [0u8; REQUEST];
                req[..8].copy_from_slice(&(sent_at.len() as u64).to_le_bytes());
                sent_at.push(Instant::now());
                // a refused send (no route for a moment) is a lost request, as for ping
                let _ = sock.send(&req);
                // a sender held off its core does not catch up with a burst
                next = (next + interval).max(now + interval / 2);
            }
            let wait = next
                .saturating_duration_since(Instant::now())
                .max(Duration::from_micros(100));
            sock.set_read_timeout(Some(wait))
                .map_err(io_err("SO_RCVTIMEO".into()))?;
            if let Ok(n) = sock.recv(&mut buf) {
                let got = Instant::now();
                let Some(seq) = buf[..n].first_chunk::<8>().map(|s| u64::from_le_bytes(*s)) else {
                    continue;
                };
                if let Some(at) = sent_at.get(seq as usize) {
                    answered.entry(seq).or_insert(got - *at);
                }
            }
        }
        let mut rtts: Vec<Duration> = answered.into_values().filter(|r| *r <= timeout).collect();
        rtts.sort();
        Ok(EchoStats {
            sent: sent_at.len(),
            rtts,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_quantiles_come_from_the_answered_requests() {
        let ms = Duration::from_millis;
        let stats = EchoStats {
            sent: 200,
            rtts: (1..=100).map(ms).collect(),
        };
        assert_eq!(stats.lost(), 100);
        assert_eq!(stats.loss_percent(), 50.0);
        assert_eq!(stats.quantile(0.99), Some(ms(100)));
        assert_eq!(stats.quantile(0.5), Some(ms(51)));
        assert_eq!(EchoStats::default().quantile(0.99), None);
    }
}
