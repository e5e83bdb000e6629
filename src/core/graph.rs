//! The mesh as a Graphviz DOT graph: one cluster per cloud holding one cluster per region,
//! a node per mesh node labelled with its pod CIDRs, hubs drawn bold and double-circled, and
//! one undirected edge per WireGuard peering.
//!
//! Edges come from the plans, not from a second reading of the topology, so the picture is
//! what the daemons configure: every pair in a full mesh; spoke–hub and hub–hub in hub mode.
//! Rendering is pure: live observations (handshake ages) are passed in, never fetched here.

use super::plan::Plan;
use super::topology::{Topology, TopologyError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

/// One peering, with its names in sorted order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub a: String,
    pub b: String,
    /// The smaller of the two ends' planned tunnel MTUs.
    pub mtu: u16,
}

/// What the daemons reported about one peering (`wiremesh graph --live`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveEdge {
    /// Age of the newest handshake either end reported; `None` when neither has one yet.
    pub handshake_age: Option<Duration>,
    /// A measured MTU, once path-MTU discovery reports one; the planned MTU otherwise.
    pub mtu: Option<u16>,
}

/// Live observations by peering, keyed by the two node names in sorted order. A peering
/// missing here was not observed (neither end's socket was reachable).
pub type LiveEdges = BTreeMap<(String, String), LiveEdge>;

/// The key of the peering between `x` and `y` in [`LiveEdges`].
pub fn edge_key(x: &str, y: &str) -> (String, String) {
    if x <= y {
        (x.to_string(), y.to_string())
    } else {
        (y.to_string(), x.to_string())
    }
}

/// Every peering in the mesh, each pair once, sorted.
pub fn edges(topo: &Topology) -> Result<Vec<Edge>, TopologyError> {
    let mut plans = BTreeMap::new();
    for n in &topo.nodes {
        plans.insert(n.name.as_str(), Plan::compute(topo, &n.name)?);
    }
    // each pair once, with the direct path's starting MTU as the plan of its first end gives
    // it (found while walking the peers, not searched for per pair)
    let mut pairs: BTreeMap<(String, String), u16> = BTreeMap::new();
    for (name, plan) in &plans {
        for p in &plan.peers {
            let key = edge_key(name, &p.name);
            let first_end = key.0 == *name;
            match pairs.entry(key) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(p.mtu);
                }
                std::collections::btree_map::Entry::Occupied(mut o) if first_end => {
                    o.insert(p.mtu);
                }
                std::collections::btree_map::Entry::Occupied(_) => {}
            }
        }
    }
    Ok(pairs
        .into_iter()
        .map(|((a, b), mtu)| Edge { a, b, mtu })
        .collect())
}

/// A DOT identifier or string: always quoted, so `-`, `.` and keywords (`node`, `graph`) are
/// safe, with `"` and `\` escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A multi-line label: each line escaped, joined by DOT's `\n`.
fn label(lines: &[String]) -> String {
    let quoted: Vec<String> = lines
        .iter()
        .map(|l| quote(l).trim_matches('"').to_string())
        .collect();
    format!("\"{}\"", quoted.join("\\n"))
}

/// Edges above which the graph asks Graphviz for the fdp layout instead of dot's.
const LARGE_MESH_EDGES: usize = 500;

/// A compact age: `42s`, `3m`, `2h`.
fn age(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

/// The whole mesh in DOT. `live`: label edges with what the daemons reported; `None` labels
/// them from the topology alone (the planned MTU).
pub fn render_dot(topo: &Topology, live: Option<&LiveEdges>) -> Result<String, TopologyError> {
    let edges = edges(topo)?;
    let mut clouds: BTreeMap<&str, BTreeMap<&str, Vec<&super::topology::Node>>> = BTreeMap::new();
    for n in &topo.nodes {
        clouds
            .entry(&n.cloud)
            .or_default()
            .entry(&n.region)
            .or_default()
            .push(n);
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "graph \"wiremesh\" {{");
    // dot's ranking of clustered graphs fails ("trouble in init_rank") on meshes of a few
    // dozen nodes with thousands of edges; the force-directed fdp lays them out, and the
    // `layout` attribute makes a plain `dot -Tsvg` use it
    let layout = if edges.len() > LARGE_MESH_EDGES {
        ", layout=\"fdp\""
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "  graph [fontname=\"Helvetica\", labeljust=\"l\"{layout}];"
    );
    let _ = writeln!(out, "  node [fontname=\"Helvetica\", shape=\"ellipse\"];");
    let _ = writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=\"10\"];");
    for (cloud, regions) in &clouds {
        let _ = writeln!(out, "  subgraph {} {{", quote(&format!("cluster_{cloud}")));
        let _ = writeln!(out, "    label={};", quote(cloud));
        for (region, nodes) in regions {
            let id = quote(&format!("cluster_{cloud}_{region}"));
            let _ = writeln!(out, "    subgraph {id} {{");
            let _ = writeln!(out, "      label={};", quote(region));
            for n in nodes {
                let mut lines = vec![n.name.clone()];
                lines.extend(n.pod_cidrs().iter().map(|c| c.to_string()));
                let style = if n.hub {
                    ", shape=\"doublecircle\", style=\"bold\""
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "      {} [label={}{style}];",
                    quote(&n.name),
                    label(&lines)
                );
            }
            let _ = writeln!(out, "    }}");
        }
        let _ = writeln!(out, "  }}");
    }
    let hubs: BTreeSet<&str> = topo
        .nodes
        .iter()
        .filter(|n| n.hub)
        .map(|n| n.name.as_str())
        .collect();
    for e in &edges {
        let (text, mut attrs) = match live {
            None => (format!("mtu {}", e.mtu), String::new()),
            Some(live) => match live.get(&(e.a.clone(), e.b.clone())) {
                Some(l) => {
                    let hs = l.handshake_age.map_or("no handshake".into(), |d| {
                        format!("handshake {} ago", age(d))
                    });
                    let color = if l.handshake_age.is_some() {
                        ""
                    } else {
                        ", color=\"red\""
                    };
                    (
                        format!("{hs}\nmtu {}", l.mtu.unwrap_or(e.mtu)),
                        color.to_string(),
                    )
                }
                None => (
                    format!("not observed\nmtu {}", e.mtu),
                    ", style=\"dashed\"".to_string(),
                ),
            },
        };
        if hubs.contains(e.a.as_str()) && hubs.contains(e.b.as_str()) && attrs.is_empty() {
            attrs.push_str(", style=\"bold\"");
        }
        let _ = writeln!(
            out,
            "  {} -- {} [label={}{attrs}];",
            quote(&e.a),
            quote(&e.b),
            quote(&text)
        );
    }
    let _ = writeln!(out, "}}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn example(name: &str) -> Topology {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("topologies")
            .join(name);
        Topology::load(&path).unwrap()
    }

    /// For each node statement, the subgraph names that enclose it, outermost first.
    fn enclosing(dot: &str) -> BTreeMap<String, Vec<String>> {
        let mut stack: Vec<String> = Vec::new();
        let mut found = BTreeMap::new();
        for line in dot.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("subgraph ") {
                stack.push(rest.trim_end_matches(" {").trim_matches('"').to_string());
            } else if line == "}" {
                stack.pop();
            } else if line.starts_with('"') && line.contains(" [label=") && !line.contains(" -- ") {
                let name = line.split('"').nth(1).unwrap().to_string();
                found.insert(name, stack.clone());
            }
        }
        found
    }

    fn edge_lines(dot: &str) -> Vec<&str> {
        dot.lines().filter(|l| l.contains(" -- ")).collect()
    }

    #[test]
    fn every_node_sits_in_its_region_cluster_inside_its_cloud_cluster() {
        let topo = example("full-3clouds.toml");
        let nesting = enclosing(&render_dot(&topo, None).unwrap());
        assert_eq!(nesting.len(), topo.nodes.len());
        for n in &topo.nodes {
            let want = vec![
                format!("cluster_{}", n.cloud),
                format!("cluster_{}_{}", n.cloud, n.region),
            ];
            assert_eq!(nesting[&n.name], want, "{}", n.name);
        }
    }

    #[test]
    fn a_full_mesh_has_one_edge_per_pair_of_nodes() {
        for file in ["full-3clouds.toml", "hybrid-onprem.toml"] {
            let topo = example(file);
            if topo.mode != crate::core::topology::MeshMode::Full {
                continue;
            }
            let n = topo.nodes.len();
            let dot = render_dot(&topo, None).unwrap();
            assert_eq!(edge_lines(&dot).len(), n * (n - 1) / 2, "{file}");
        }
    }

    #[test]
    fn hub_mode_draws_spoke_hub_and_hub_hub_edges_only_and_marks_hubs() {
        let topo = example("hub-2regions.toml");
        let dot = render_dot(&topo, None).unwrap();
        // 3 hubs pairwise, 2 eu spokes x 2 eu hubs, 2 us spokes x 1 us hub
        assert_eq!(edge_lines(&dot).len(), 3 + 4 + 2);
        for e in edges(&topo).unwrap() {
            let hub = |x: &str| topo.node(x).unwrap().hub;
            assert!(hub(&e.a) || hub(&e.b), "{e:?} joins two spokes");
        }
        for n in &topo.nodes {
            let line = dot
                .lines()
                .find(|l| {
                    l.trim_start()
                        .starts_with(&format!("\"{}\" [label=", n.name))
                })
                .unwrap();
            assert_eq!(line.contains("doublecircle"), n.hub, "{line}");
        }
        assert!(dot.contains("\"eu-hub-1\" -- \"us-hub\" [label=\"mtu 1440\", style=\"bold\"]"));
    }

    #[test]
    fn live_edges_show_handshake_age_and_unobserved_edges_are_dashed() {
        let topo = example("hub-2regions.toml");
        let mut live = LiveEdges::new();
        live.insert(
            edge_key("us-hub", "eu-hub-1"),
            LiveEdge {
                handshake_age: Some(Duration::from_secs(42)),
                mtu: None,
            },
        );
        live.insert(edge_key("us-hub", "us-spoke-1"), LiveEdge::default());
        let dot = render_dot(&topo, Some(&live)).unwrap();
        assert!(dot.contains("\"eu-hub-1\" -- \"us-hub\" [label=\"handshake 42s ago\\nmtu 1440\""));
        assert!(dot.contains(
            "\"us-hub\" -- \"us-spoke-1\" [label=\"no handshake\\nmtu 1440\", color=\"red\"]"
        ));
        assert!(dot.contains(
            "\"eu-hub-2\" -- \"us-hub\" [label=\"not observed\\nmtu 1440\", style=\"dashed\"]"
        ));
    }

    #[test]
    fn identifiers_are_always_quoted_and_escaped() {
        let cases = [
            ("a-b.c", "\"a-b.c\""),
            ("node", "\"node\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("two\nlines", "\"two\\nlines\""),
        ];
        for (raw, want) in cases {
            assert_eq!(quote(raw), want, "{raw}");
        }
    }
}
