//! The verdicts of `wiremesh check`: from what was measured for each peer (handshake time,
//! echo replies) to pass or fail, with one sentence per failure. Pure: the clock reading comes in
//! as `now`, the measurements come from the CLI, so every rule is unit-tested here.
//!
//! A peer passes when all of these hold:
//! 1. the daemon has the peer configured and its latest handshake is younger than
//!    [`SESSION_FRESH`] (WireGuard's REJECT_AFTER_TIME: an older session carries no traffic);
//! 2. the peer's pod address answers a small ICMP echo;
//! 3. an echo whose IP packet is exactly the tunnel MTU, sent with Don't Fragment, is answered
//!    (a mesh whose MTU is wrong passes small pings and stalls on real transfers).

use crate::constants::SESSION_FRESH;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// The outcome of one echo probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Reply(Duration),
    NoReply,
    /// The probe could not be sent (e.g. no raw socket, or DF refused locally).
    Failed(String),
}

/// What was measured for one peer of the checked node.
#[derive(Debug, Clone)]
pub struct Observation {
    pub peer: String,
    /// The peer's pod address (its first overlay address), the target of both probes.
    pub address: IpAddr,
    /// The IP packet size of the full-size probe: the MTU of the route to `address`.
    pub mtu: u16,
    /// Whether the running daemon has this peer at all.
    pub configured: bool,
    /// The latest handshake the daemon reports; `None` before the first one.
    pub last_handshake: Option<SystemTime>,
    pub echo: Probe,
    pub full_size: Probe,
}

/// One peer's result, as printed and as serialised by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerVerdict {
    pub peer: String,
    pub address: IpAddr,
    /// The IP packet size of the full-size probe.
    pub mtu: u16,
    /// Seconds since the latest handshake; absent when there was none.
    pub handshake_age_s: Option<u64>,
    pub reachable: bool,
    pub full_size: bool,
    /// Round-trip time of the small echo, in milliseconds.
    pub rtt_ms: Option<f64>,
    pub ok: bool,
    /// One sentence per failed check, without the peer's name.
    pub failures: Vec<String>,
}

/// The whole check of one node.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub node: String,
    pub interface: String,
    /// Why the daemon's device could not be read, if it could not.
    pub device_error: Option<String>,
    pub peers: Vec<PeerVerdict>,
    pub ok: bool,
}

/// Judges one peer's measurements at time `now`.
pub fn judge(obs: &Observation, timeout: Duration, now: SystemTime) -> PeerVerdict {
    let mtu = obs.mtu;
    let mut failures = Vec::new();
    // A handshake "in the future" (the clock stepped back) counts as just now.
    let age = obs
        .last_handshake
        .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO));
    match (obs.configured, age) {
        (false, _) => failures.push("not configured on the running daemon".to_string()),
        (true, None) => failures.push("no handshake yet".to_string()),
        (true, Some(a)) if a >= SESSION_FRESH => failures.push(format!(
            "handshake {}s old (fresh is under {}s)",
            a.as_secs(),
            SESSION_FRESH.as_secs()
        )),
        _ => {}
    }
    let probe_failure = |probe: &Probe, what: String| match probe {
        Probe::Reply(_) => None,
        Probe::NoReply => Some(format!(
            "{what} got no reply within {:.1}s",
            timeout.as_secs_f64()
        )),
        Probe::Failed(e) => Some(format!("{what} could not be sent: {e}")),
    };
    failures.extend(probe_failure(&obs.echo, format!("echo to {}", obs.address)));
    failures.extend(probe_failure(
        &obs.full_size,
        format!("{mtu}-byte echo with DF to {}", obs.address),
    ));
    let rtt = match obs.echo {
        Probe::Reply(d) => Some(d),
        _ => None,
    };
    PeerVerdict {
        peer: obs.peer.clone(),
        address: obs.address,
        mtu,
        handshake_age_s: age.map(|a| a.as_secs()),
        reachable: rtt.is_some(),
        full_size: matches!(obs.full_size, Probe::Reply(_)),
        rtt_ms: rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1000.0),
        ok: failures.is_empty(),
        failures,
    }
}

impl Report {
    /// Judges every observation; the report fails if any peer fails or the device was unreadable.
    pub fn new(
        node: &str,
        interface: &str,
        device_error: Option<String>,
        observations: &[Observation],
        timeout: Duration,
        now: SystemTime,
    ) -> Report {
        let peers: Vec<PeerVerdict> = observations
            .iter()
            .map(|o| judge(o, timeout, now))
            .collect();
        let ok = device_error.is_none() && peers.iter().all(|p| p.ok);
        Report {
            node: node.into(),
            interface: interface.into(),
            device_error,
            peers,
            ok,
        }
    }

    /// One line per failure, each naming the peer (or the interface) it concerns.
    pub fn failure_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .device_error
            .iter()
            .map(|e| format!("interface {}: {e}", self.interface))
            .collect();
        for p in &self.peers {
            lines.extend(p.failures.iter().map(|f| format!("peer {}: {f}", p.peer)));
        }
        lines
    }
}

/// A table: peer, address, handshake age, reachable, full-size, RTT, verdict.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "NO" }.to_string();
        let mut rows = vec![[
            "PEER".to_string(),
            "ADDRESS".into(),
            "HANDSHAKE".into(),
            "REACHABLE".into(),
            "FULL-SIZE".into(),
            "RTT".into(),
            "VERDICT".into(),
        ]];
        rows.extend(self.peers.iter().map(|p| {
            [
                p.peer.clone(),
                p.address.to_string(),
                p.handshake_age_s
                    .map_or("never".into(), |s| format!("{s}s ago")),
                yes_no(p.reachable),
                format!("{} ({})", yes_no(p.full_size), p.mtu),
                p.rtt_ms.map_or("-".into(), |ms| format!("{ms:.3}ms")),
                if p.ok { "ok" } else { "FAIL" }.into(),
            ]
        }));
        let widths: Vec<usize> = (0..7)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        writeln!(
            f,
            "node {}  interface {}  {} peer(s)",
            self.node,
            self.interface,
            self.peers.len()
        )?;
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            writeln!(f, "  {}", cells.join("  ").trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(3);

    /// Turns a healthy observation into one with a single fault.
    type Spoil = fn(&mut Observation);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn healthy(peer: &str) -> Observation {
        Observation {
            peer: peer.into(),
            address: "10.244.1.1".parse().unwrap(),
            mtu: 1440,
            configured: true,
            last_handshake: Some(at(1000)),
            echo: Probe::Reply(Duration::from_micros(420)),
            full_size: Probe::Reply(Duration::from_micros(510)),
        }
    }

    #[test]
    fn a_peer_with_a_fresh_handshake_and_both_replies_passes() {
        let v = judge(&healthy("b"), T, at(1010));
        assert!(v.ok, "{:?}", v.failures);
        assert_eq!(v.handshake_age_s, Some(10));
        assert_eq!(v.rtt_ms, Some(0.42));
    }

    #[test]
    fn each_failed_check_is_one_sentence() {
        let table: [(Spoil, &str); 6] = [
            (|o| o.configured = false, "not configured"),
            (|o| o.last_handshake = None, "no handshake yet"),
            (|o| o.last_handshake = Some(at(0)), "handshake 1010s old"),
            (
                |o| o.echo = Probe::NoReply,
                "echo to 10.244.1.1 got no reply within 3.0s",
            ),
            (
                |o| o.full_size = Probe::NoReply,
                "1440-byte echo with DF to 10.244.1.1 got no reply",
            ),
            (
                |o| o.full_size = Probe::Failed("too big".into()),
                "could not be sent: too big",
            ),
        ];
        for (spoil, want) in table {
            let mut o = healthy("b");
            spoil(&mut o);
            let v = judge(&o, T, at(1010));
            assert!(!v.ok);
            assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
            assert!(
                v.failures[0].contains(want),
                "{:?} lacks {want}",
                v.failures
            );
        }
    }

    #[test]
    fn the_report_names_every_failing_peer_and_an_unreadable_device() {
        let mut dead = healthy("c");
        dead.echo = Probe::NoReply;
        dead.full_size = Probe::NoReply;
        let r = Report::new(
            "a",
            "wm0",
            Some("no socket".into()),
            &[healthy("b"), dead],
            T,
            at(1010),
        );
        assert!(!r.ok);
        let lines = r.failure_lines();
        assert_eq!(lines[0], "interface wm0: no socket");
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1..].iter().all(|l| l.starts_with("peer c: ")),
            "{lines:?}"
        );
    }

    #[test]
    fn the_table_has_a_row_per_peer_with_its_verdict() {
        let mut dead = healthy("c");
        dead.echo = Probe::NoReply;
        let r = Report::new("a", "wm0", None, &[healthy("b"), dead], T, at(1010));
        let text = r.to_string();
        assert!(text.contains("FULL-SIZE"), "{text}");
        assert!(
            text.contains("b     10.244.1.1  10s ago    yes        yes (1440)  0.420ms  ok"),
            "{text}"
        );
        assert!(text.lines().last().unwrap().ends_with("FAIL"), "{text}");
    }
}
