//! ICMP echo from inside a namespace, in-process: a short-lived thread joins the namespace with
//! `setns(CLONE_NEWNET)` (which changes only that thread) and opens a raw socket there
//! ([`crate::io::icmp_echo`]). This needs no `ping` binary. The all-pairs [`PingMatrix`] is filled
//! by [`super::reach`], one thread per source namespace.

use super::netns::enter_netns;
use super::LabError;
use crate::io::icmp_echo::{self, Echo};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// How often the all-pairs matrix re-sends a request that got no reply yet (as
/// [`crate::io::icmp_echo`] does for one probe).
pub(crate) const RESEND: Duration = Duration::from_millis(200);

/// A small echo from the current thread's namespace, its error as text for [`LabError::Ping`].
fn echo(target: IpAddr, timeout: Duration) -> Result<Option<Duration>, String> {
    icmp_echo::echo(&Echo::new(target, timeout)).map_err(|e| e.to_string())
}

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
