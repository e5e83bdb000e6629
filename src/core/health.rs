//! The verdicts of `wiremesh check`: from what was measured for each peer (handshake time,
//! echo replies) to pass or fail, with one sentence per failure. Pure: the clock reading comes in
//! as `now`, the measurements come from the CLI, so every rule is unit-tested here.
//!
//! A peer passes when all of these hold:
//! 1. the daemon has the peer configured and its latest handshake is younger than
//!    [`SESSION_FRESH`] (WireGuard's REJECT_AFTER_TIME: an older session carries no traffic);
//! 2. the peer's pod address answers a small ICMP echo;
//! 3. an echo whose IP packet is exactly the route's MTU, sent with Don't Fragment, is answered
//!    (a mesh whose MTU is wrong passes small pings and stalls on real transfers).
//!
//! The size in 3 is what the running daemon says the path carries ([`probe_size`]), not the
//! plan's estimate: a path that discovery measured below the plan (a black hole between regions)
//! is healthy when it carries what was measured, and the kernel route, set to that measurement,
//! would refuse a larger probe locally anyway. The plan's figure is reported beside it.

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

/// What the running daemon says about the path to a peer's route, from its control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathMtu {
    /// The MTU the route carries as the data path enforces it: the first hop's tunnel MTU
    /// (discovered, or the plan's until then), bounded by the plan for the hops behind it.
    pub mtu: u16,
    /// Whether discovery has measured and confirmed the first hop.
    pub discovered: bool,
}

/// Where the size of the full-size probe came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MtuSource {
    /// Discovery measured the path: the probe checks that it still carries that.
    Discovered,
    /// The daemon has not measured the path yet: the MTU its data path enforces meanwhile.
    DataPath,
    /// The daemon's control socket could not be read: the plan's MTU.
    Plan,
}

/// The size of the full-size probe and where it came from: the daemon's figure when it gave
/// one, the plan's otherwise; never above the tun device's own MTU (`tun_mtu`), which the kernel
/// would refuse locally.
pub fn probe_size(plan_mtu: u16, path: Option<PathMtu>, tun_mtu: u16) -> (u16, MtuSource) {
    let (mtu, source) = match path {
        Some(p) if p.discovered => (p.mtu, MtuSource::Discovered),
        Some(p) => (p.mtu, MtuSource::DataPath),
        None => (plan_mtu, MtuSource::Plan),
    };
    (mtu.min(tun_mtu), source)
}

/// What was measured for one peer of the checked node.
#[derive(Debug, Clone)]
pub struct Observation {
    pub peer: String,
    /// The peer's pod address (its first overlay address), the target of both probes.
    pub address: IpAddr,
    /// The plan's MTU for the route to `address` (before discovery).
    pub plan_mtu: u16,
    /// The daemon's view of that route; `None` when its control socket could not be read.
    pub path: Option<PathMtu>,
    /// The IP packet size of the full-size probe (see [`probe_size`]).
    pub mtu: u16,
    pub mtu_source: MtuSource,
    /// Whether the running daemon has this peer at all.
    pub configured: bool,
    /// The latest handshake the daemon reports; `None` before the first one. For a relayed
    /// peer, the relay's: the peer itself may never have had one (both behind NAT).
    pub last_handshake: Option<SystemTime>,
    /// The node relaying this peer's traffic now, when it is relayed (docs/nat.md, 4).
    pub relayed_via: Option<String>,
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
    /// Where `mtu` came from: `discovered`, `data-path` (not discovered yet) or `plan`.
    pub mtu_source: MtuSource,
    /// The plan's MTU for the route to `address`.
    pub plan_mtu: u16,
    /// The MTU discovery measured for that route; absent until it has.
    pub discovered_mtu: Option<u16>,
    /// The node relaying this peer's traffic now; absent for a direct path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relayed_via: Option<String>,
    /// Seconds since the latest handshake; absent when there was none.
    pub handshake_age_s: Option<u64>,
    pub reachable: bool,
    pub full_size: bool,
    /// Round-trip time of the small echo, in milliseconds.
    pub rtt_ms: Option<f64>,
    pub ok: bool,
    /// One sentence per failed check, without the peer's name.
    pub failures: Vec<String>,
    /// What the operator should know that is not a failure (a path not measured yet).
    pub notes: Vec<String>,
}

/// The whole check of one node.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub node: String,
    pub interface: String,
    /// Why the daemon's device could not be read, if it could not.
    pub device_error: Option<String>,
    /// Why the daemon's path MTUs could not be read, if they could not (not a failure: the
    /// probes then use the plan's MTUs).
    pub control_error: Option<String>,
    pub peers: Vec<PeerVerdict>,
    pub ok: bool,
}

/// How the full-size probe's size was chosen, for its failure sentence.
fn size_reason(obs: &Observation) -> String {
    let plan = obs.plan_mtu;
    match obs.mtu_source {
        MtuSource::Discovered => format!("the discovered path MTU; plan {plan}"),
        MtuSource::DataPath => {
            format!("the MTU the data path enforces, path not discovered yet; plan {plan}")
        }
        MtuSource::Plan => "the plan's MTU; no path MTUs from the daemon".to_string(),
    }
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
        (true, None) => failures.push(match &obs.relayed_via {
            Some(relay) => format!("relayed via {relay}, which has no handshake yet"),
            None => "no handshake yet".to_string(),
        }),
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
    failures.extend(
        probe_failure(
            &obs.full_size,
            format!("{mtu}-byte echo with DF to {}", obs.address),
        )
        .map(|f| format!("{f} ({})", size_reason(obs))),
    );
    let mut notes = Vec::new();
    if let Some(relay) = &obs.relayed_via {
        // not a failure: the pair has no direct path (both behind NAT), or lost it; the relay
        // carries it while punches keep trying
        notes.push(format!("relayed via {relay}: no direct path now"));
    }
    if obs.mtu_source == MtuSource::DataPath {
        notes.push(format!(
            "path MTU not discovered yet: probed at {mtu}, what the data path enforces (plan {})",
            obs.plan_mtu
        ));
    }
    let rtt = match obs.echo {
        Probe::Reply(d) => Some(d),
        _ => None,
    };
    PeerVerdict {
        peer: obs.peer.clone(),
        address: obs.address,
        mtu,
        mtu_source: obs.mtu_source,
        plan_mtu: obs.plan_mtu,
        discovered_mtu: obs.path.filter(|p| p.discovered).map(|p| p.mtu),
        relayed_via: obs.relayed_via.clone(),
        handshake_age_s: age.map(|a| a.as_secs()),
        reachable: rtt.is_some(),
        full_size: matches!(obs.full_size, Probe::Reply(_)),
        rtt_ms: rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1000.0),
        ok: failures.is_empty(),
        failures,
        notes,
    }
}

impl Report {
    /// Judges every observation; the report fails if any peer fails or the device was unreadable.
    pub fn new(
        node: &str,
        interface: &str,
        device_error: Option<String>,
        control_error: Option<String>,
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
            control_error,
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

    /// One line per note, each naming the peer (or the interface) it concerns.
    pub fn note_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .control_error
            .iter()
            .map(|e| {
                format!(
                    "interface {}: no path MTUs from the daemon ({e}): probed at the plan's MTUs",
                    self.interface
                )
            })
            .collect();
        for p in &self.peers {
            lines.extend(p.notes.iter().map(|n| format!("peer {}: {n}", p.peer)));
        }
        lines
    }
}

/// The discovered MTU's cell: the figure, `not yet`, or `-` without the daemon's view.
fn discovered_cell(p: &PeerVerdict) -> String {
    match (p.discovered_mtu, p.mtu_source) {
        (Some(m), _) => m.to_string(),
        (None, MtuSource::Plan) => "-".into(),
        (None, _) => "not yet".into(),
    }
}

/// A table: peer, address, handshake age, reachable, full-size (with the probe's size), the
/// discovered and the plan's MTU, RTT, verdict.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const COLUMNS: usize = 9;
        let yes_no = |b: bool| if b { "yes" } else { "NO" }.to_string();
        let mut rows = vec![[
            "PEER",
            "ADDRESS",
            "HANDSHAKE",
            "REACHABLE",
            "FULL-SIZE",
            "DISCOVERED",
            "PLAN",
            "RTT",
            "VERDICT",
        ]
        .map(String::from)];
        rows.extend(self.peers.iter().map(|p| {
            [
                p.peer.clone(),
                p.address.to_string(),
                p.handshake_age_s
                    .map_or("never".into(), |s| format!("{s}s ago")),
                yes_no(p.reachable),
                format!("{} ({})", yes_no(p.full_size), p.mtu),
                discovered_cell(p),
                p.plan_mtu.to_string(),
                p.rtt_ms.map_or("-".into(), |ms| format!("{ms:.3}ms")),
                if p.ok { "ok" } else { "FAIL" }.into(),
            ]
        }));
        let widths: Vec<usize> = (0..COLUMNS)
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

    /// Behind a black hole at 1380 bytes: the plan says 1440, discovery measured 1320.
    const BEHIND_BLACK_HOLE: PathMtu = PathMtu {
        mtu: 1320,
        discovered: true,
    };

    fn healthy(peer: &str) -> Observation {
        Observation {
            peer: peer.into(),
            address: "10.244.1.1".parse().unwrap(),
            plan_mtu: 1440,
            path: Some(PathMtu {
                mtu: 1440,
                discovered: true,
            }),
            mtu: 1440,
            mtu_source: MtuSource::Discovered,
            configured: true,
            last_handshake: Some(at(1000)),
            relayed_via: None,
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
    fn a_relayed_peer_that_answers_passes_with_a_note_naming_its_relay() {
        let relayed = Observation {
            relayed_via: Some("pub-1".into()),
            ..healthy("nat-2")
        };
        let v = judge(&relayed, T, at(1010));
        assert!(v.ok, "{:?}", v.failures);
        assert_eq!(v.relayed_via.as_deref(), Some("pub-1"));
        assert!(
            v.notes.iter().any(|n| n.contains("relayed via pub-1")),
            "{:?}",
            v.notes
        );
        let unanswered = Observation {
            last_handshake: None,
            echo: Probe::NoReply,
            ..relayed
        };
        let v = judge(&unanswered, T, at(1010));
        assert!(!v.ok);
        assert!(
            v.failures[0].contains("relayed via pub-1, which has no handshake yet"),
            "{:?}",
            v.failures
        );
    }

    /// `healthy`, measured behind the black hole: probed at what discovery found.
    fn behind_black_hole(peer: &str, full_size: Probe) -> Observation {
        let (mtu, mtu_source) = probe_size(1440, Some(BEHIND_BLACK_HOLE), 1440);
        Observation {
            path: Some(BEHIND_BLACK_HOLE),
            mtu,
            mtu_source,
            full_size,
            ..healthy(peer)
        }
    }

    #[test]
    fn the_probe_is_sized_by_the_daemon_and_by_the_plan_only_without_it() {
        let undiscovered = PathMtu {
            mtu: 1440,
            discovered: false,
        };
        let table = [
            // (plan, daemon's view, tun MTU) → (probe size, source)
            (
                1440,
                Some(BEHIND_BLACK_HOLE),
                1440,
                (1320, MtuSource::Discovered),
            ),
            (1440, Some(undiscovered), 1440, (1440, MtuSource::DataPath)),
            (1440, None, 1440, (1440, MtuSource::Plan)),
            // the tun device caps every figure: the kernel refuses more locally
            (1440, None, 1400, (1400, MtuSource::Plan)),
            (
                1340,
                Some(PathMtu {
                    mtu: 1440,
                    discovered: true,
                }),
                1420,
                (1420, MtuSource::Discovered),
            ),
        ];
        for (plan, path, tun, want) in table {
            assert_eq!(probe_size(plan, path, tun), want, "{plan} {path:?} {tun}");
        }
    }

    #[test]
    fn a_path_discovered_below_the_plan_passes_when_it_carries_what_was_discovered() {
        let v = judge(
            &behind_black_hole("b", Probe::Reply(Duration::from_micros(600))),
            T,
            at(1010),
        );
        assert!(v.ok, "{:?}", v.failures);
        assert_eq!(
            (v.mtu, v.plan_mtu, v.discovered_mtu),
            (1320, 1440, Some(1320))
        );
        assert!(v.notes.is_empty(), "{:?}", v.notes);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["plan_mtu"], 1440);
        assert_eq!(json["discovered_mtu"], 1320);
        assert_eq!(json["mtu_source"], "discovered");
    }

    #[test]
    fn a_path_that_does_not_carry_its_discovered_mtu_fails_naming_both_figures() {
        let v = judge(&behind_black_hole("b", Probe::NoReply), T, at(1010));
        assert!(!v.ok);
        assert_eq!(
            v.failures,
            [
                "1320-byte echo with DF to 10.244.1.1 got no reply within 3.0s \
              (the discovered path MTU; plan 1440)"
            ]
        );
        assert!(!v.full_size);
    }

    #[test]
    fn a_path_not_discovered_yet_is_probed_at_the_data_path_mtu_and_says_so() {
        let mut o = healthy("b");
        o.path = Some(PathMtu {
            mtu: 1400,
            discovered: false,
        });
        (o.mtu, o.mtu_source) = probe_size(o.plan_mtu, o.path, 1440);
        let v = judge(&o, T, at(1010));
        assert!(v.ok, "{:?}", v.failures);
        assert_eq!((v.mtu, v.discovered_mtu), (1400, None));
        assert_eq!(
            v.notes,
            ["path MTU not discovered yet: probed at 1400, what the data path enforces (plan 1440)"]
        );
        o.full_size = Probe::NoReply;
        let v = judge(&o, T, at(1010));
        assert!(
            v.failures[0]
                .ends_with("(the MTU the data path enforces, path not discovered yet; plan 1440)"),
            "{:?}",
            v.failures
        );
        let r = Report::new("a", "wm0", None, None, &[o], T, at(1010));
        assert!(r.to_string().contains("not yet"), "{r}");
        assert_eq!(r.note_lines().len(), 1);
        assert!(r.note_lines()[0].starts_with("peer b: path MTU not discovered yet"));
    }

    #[test]
    fn without_the_control_socket_the_plan_sizes_the_probe_and_a_note_says_why() {
        let mut o = healthy("b");
        o.path = None;
        (o.mtu, o.mtu_source) = probe_size(o.plan_mtu, o.path, 1440);
        let r = Report::new(
            "a",
            "wm0",
            None,
            Some("no control socket".into()),
            &[o],
            T,
            at(1010),
        );
        assert!(r.ok, "the control socket only sizes the probe");
        assert_eq!(r.peers[0].mtu_source, MtuSource::Plan);
        assert_eq!(
            r.note_lines(),
            [
                "interface wm0: no path MTUs from the daemon (no control socket): probed at the \
              plan's MTUs"
            ]
        );
        let text = r.to_string();
        let row: Vec<&str> = text.lines().last().unwrap().split_whitespace().collect();
        assert_eq!(row[5..9], ["yes", "(1440)", "-", "1440"], "{text}");
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
            None,
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
        let r = Report::new(
            "a",
            "wm0",
            None,
            None,
            &[
                healthy("b"),
                behind_black_hole("d", Probe::Reply(Duration::from_micros(600))),
                dead,
            ],
            T,
            at(1010),
        );
        let text = r.to_string();
        assert!(text.contains("FULL-SIZE   DISCOVERED  PLAN"), "{text}");
        assert!(
            text.contains(
                "b     10.244.1.1  10s ago    yes        yes (1440)  1440        1440  0.420ms  ok"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "d     10.244.1.1  10s ago    yes        yes (1320)  1320        1440  0.420ms  ok"
            ),
            "{text}"
        );
        assert!(text.lines().last().unwrap().ends_with("FAIL"), "{text}");
    }
}
