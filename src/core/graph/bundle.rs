//! Many tunnels told as one. A large mesh draws one edge per pair of regions (or clouds), and
//! what a reader needs from the tunnels behind it is how many there are, the smallest MTU among
//! them (the one a workload crossing that pair may meet) and, live, how many are up. A cluster
//! whose own tunnels are not drawn says the same in its label.

use super::{Edge, LiveEdges};

/// The tunnels folded into one edge or one cluster label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundle {
    pub tunnels: usize,
    /// The smallest MTU among them: measured where the daemons reported one, planned otherwise.
    pub min_mtu: u16,
    /// Live only: tunnels with a handshake reported by either end.
    pub handshakes: usize,
    /// Live only: tunnels neither end reported.
    pub unobserved: usize,
}

/// How a bundle should catch the eye, live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    /// No end of any of its tunnels was reachable: nothing is known (dashed, as a tunnel).
    Unobserved,
    /// Some were observed and none has a handshake: the whole bundle is down (red).
    Down,
}

impl Default for Bundle {
    fn default() -> Self {
        Bundle {
            tunnels: 0,
            min_mtu: u16::MAX,
            handshakes: 0,
            unobserved: 0,
        }
    }
}

impl Bundle {
    /// Counts one tunnel in; `live` as given to `render_dot`.
    pub fn add(&mut self, e: &Edge, live: Option<&LiveEdges>) {
        self.tunnels += 1;
        let mut mtu = e.mtu;
        if let Some(live) = live {
            match live.get(&(e.a.clone(), e.b.clone())) {
                Some(l) => {
                    mtu = l.mtu.unwrap_or(e.mtu);
                    self.handshakes += usize::from(l.handshake_age.is_some());
                }
                None => self.unobserved += 1,
            }
        }
        self.min_mtu = self.min_mtu.min(mtu);
    }

    /// Counts every tunnel of `other` in.
    pub fn merge(&mut self, other: &Bundle) {
        self.tunnels += other.tunnels;
        self.min_mtu = self.min_mtu.min(other.min_mtu);
        self.handshakes += other.handshakes;
        self.unobserved += other.unobserved;
    }

    /// The label's lines; `place` follows the count ("" on an edge, " inside" in a region).
    pub fn lines(&self, place: &str, live: bool) -> Vec<String> {
        let s = if self.tunnels == 1 { "" } else { "s" };
        let mut lines = vec![format!("{} tunnel{s}{place}", self.tunnels)];
        if live {
            lines.push(format!("{} with handshake", self.handshakes));
            if self.unobserved > 0 {
                lines.push(format!("{} not observed", self.unobserved));
            }
        }
        lines.push(format!("min mtu {}", self.min_mtu));
        lines
    }

    pub fn alarm(&self, live: bool) -> Option<Alarm> {
        if !live || self.handshakes > 0 {
            None
        } else if self.unobserved == self.tunnels {
            Some(Alarm::Unobserved)
        } else {
            Some(Alarm::Down)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::graph::{edge_key, LiveEdge};
    use std::time::Duration;

    fn edge(a: &str, b: &str, mtu: u16) -> Edge {
        Edge {
            a: a.into(),
            b: b.into(),
            mtu,
        }
    }

    fn fold(edges: &[Edge], live: Option<&LiveEdges>) -> Bundle {
        let mut b = Bundle::default();
        for e in edges {
            b.add(e, live);
        }
        b
    }

    #[test]
    fn a_planned_bundle_counts_tunnels_and_keeps_the_smallest_mtu() {
        let b = fold(&[edge("a", "x", 1440), edge("b", "x", 1380)], None);
        assert_eq!(b.tunnels, 2);
        assert_eq!(b.min_mtu, 1380);
        assert_eq!(b.lines("", false), ["2 tunnels", "min mtu 1380"]);
        assert_eq!(b.lines(" inside", false)[0], "2 tunnels inside");
        assert_eq!(
            fold(&[edge("a", "x", 1440)], None).lines("", false)[0],
            "1 tunnel"
        );
        assert_eq!(b.alarm(false), None);
    }

    #[test]
    fn a_live_bundle_counts_handshakes_and_unobserved_and_prefers_measured_mtus() {
        let edges = [
            edge("a", "x", 1440),
            edge("b", "x", 1440),
            edge("c", "x", 1440),
        ];
        let mut live = LiveEdges::new();
        let up = LiveEdge {
            handshake_age: Some(Duration::from_secs(5)),
            mtu: Some(1300),
        };
        live.insert(edge_key("a", "x"), up);
        live.insert(edge_key("b", "x"), LiveEdge::default());
        let b = fold(&edges, Some(&live));
        assert_eq!((b.tunnels, b.handshakes, b.unobserved), (3, 1, 1));
        assert_eq!(b.min_mtu, 1300);
        assert_eq!(
            b.lines("", true),
            [
                "3 tunnels",
                "1 with handshake",
                "1 not observed",
                "min mtu 1300"
            ]
        );
        assert_eq!(b.alarm(true), None);
    }

    #[test]
    fn a_live_bundle_without_any_handshake_is_down_or_unobserved() {
        let edges = [edge("a", "x", 1440), edge("b", "x", 1440)];
        let nothing = LiveEdges::new();
        let b = fold(&edges, Some(&nothing));
        assert_eq!(b.alarm(true), Some(Alarm::Unobserved));
        assert_eq!(
            b.lines("", true),
            [
                "2 tunnels",
                "0 with handshake",
                "2 not observed",
                "min mtu 1440"
            ]
        );
        let mut one_seen = LiveEdges::new();
        one_seen.insert(edge_key("a", "x"), LiveEdge::default());
        let b = fold(&edges, Some(&one_seen));
        assert_eq!(b.alarm(true), Some(Alarm::Down));
        assert_eq!(b.alarm(false), None);
    }

    #[test]
    fn merged_bundles_add_up() {
        let mut live = LiveEdges::new();
        live.insert(
            edge_key("a", "x"),
            LiveEdge {
                handshake_age: Some(Duration::from_secs(1)),
                mtu: None,
            },
        );
        let mut left = fold(&[edge("a", "x", 1440)], Some(&live));
        let right = fold(&[edge("b", "y", 1400), edge("c", "y", 1420)], Some(&live));
        left.merge(&right);
        assert_eq!(
            left,
            Bundle {
                tunnels: 3,
                min_mtu: 1400,
                handshakes: 1,
                unobserved: 2
            }
        );
    }
}
