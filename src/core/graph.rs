//! The mesh as a Graphviz DOT graph: one cluster per cloud holding one cluster per region,
//! a node per mesh node labelled with its pod CIDRs, hubs drawn bold and double-circled, and
//! one undirected edge per WireGuard peering.
//!
//! Edges come from the plans, not from a second reading of the topology, so the picture is
//! what the daemons configure: every pair in a full mesh; spoke–hub and hub–hub in hub mode.
//! Rendering is pure: live observations (handshake ages) are passed in, never fetched here.
//!
//! Past [`LARGE_MESH_EDGES`] peerings, one edge each is neither readable nor something dot can
//! lay out, so a large mesh draws one edge per pair of regions instead ([`aggregate`]), still
//! with plain `dot`: no layout engine is named, so `dot -Tsvg` draws every picture.

mod aggregate;
mod bundle;
#[cfg(test)]
pub(crate) mod testing;

use super::plan::Plan;
use super::topology::{Node, Topology, TopologyError};
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
    format!("\"{}\"", escape(s))
}

/// `s` as the inside of a DOT string: `"` and `\` escaped, a newline as DOT's `\n`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
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
    out
}

/// A multi-line label: each line escaped, joined by DOT's `\n`.
fn label(lines: &[String]) -> String {
    let escaped: Vec<String> = lines.iter().map(|l| escape(l)).collect();
    format!("\"{}\"", escaped.join("\\n"))
}

/// Peerings above which the mesh is drawn by region ([`aggregate`]) instead of one by one: a
/// full mesh of 16 nodes. Graphviz 2.43's dot fails on the one-by-one picture ("trouble in
/// init_rank", exit status 1, edges lost) from 152 edges on (an 18-node full mesh over three
/// regions, a 32-node hub mesh over eight), and every shape tried up to 136 edges drew.
const LARGE_MESH_EDGES: usize = 120;

/// A compact age: `42s`, `3m`, `2h`.
fn age(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

/// Cloud → region → nodes, clouds and regions sorted by name, nodes in the file's order.
type Clusters<'a> = BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'a Node>>>;

/// What a cluster's label adds below its name, and its attributes (each a DOT statement).
#[derive(Debug, Default)]
struct Note {
    lines: Vec<String>,
    attrs: Vec<String>,
}

/// Notes by cluster: `(cloud, None)` is the cloud's own cluster, `(cloud, Some(region))` a region.
type Notes<'a> = BTreeMap<(&'a str, Option<&'a str>), Note>;

/// The id of a cloud's cluster (`region: None`) or of a region's. The `cluster_` prefix is
/// what makes Graphviz draw a subgraph as a box.
fn cluster_id(cloud: &str, region: Option<&str>) -> String {
    match region {
        None => format!("cluster_{cloud}"),
        Some(r) => format!("cluster_{cloud}_{r}"),
    }
}

/// The whole mesh in DOT. `live`: label edges with what the daemons reported; `None` labels
/// them from the topology alone (the planned MTU).
pub fn render_dot(topo: &Topology, live: Option<&LiveEdges>) -> Result<String, TopologyError> {
    let edges = edges(topo)?;
    let mut clusters = Clusters::new();
    for n in &topo.nodes {
        clusters
            .entry(&n.cloud)
            .or_default()
            .entry(&n.region)
            .or_default()
            .push(n);
    }
    let mut out = String::new();
    if edges.len() > LARGE_MESH_EDGES {
        aggregate::render(&mut out, topo, &clusters, &edges, live);
        return Ok(out);
    }
    open_graph(&mut out, "");
    write_clusters(&mut out, &clusters, &Notes::new());
    let hubs = hubs(topo);
    for e in &edges {
        write_tunnel(&mut out, e, live, &hubs);
    }
    let _ = writeln!(out, "}}");
    Ok(out)
}

/// The graph's opening and default attributes; `graph_attrs` is appended to the graph's own.
fn open_graph(out: &mut String, graph_attrs: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "graph \"wiremesh\" {{");
    let _ = writeln!(
        out,
        "  graph [fontname=\"Helvetica\", labeljust=\"l\"{graph_attrs}];"
    );
    let _ = writeln!(out, "  node [fontname=\"Helvetica\", shape=\"ellipse\"];");
    let _ = writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=\"10\"];");
}

/// One cluster per cloud holding one per region holding its nodes.
fn write_clusters(out: &mut String, clusters: &Clusters, notes: &Notes) {
    let open = |out: &mut String, indent: &str, cloud: &str, region: Option<&str>| {
        let id = quote(&cluster_id(cloud, region));
        let _ = writeln!(out, "{indent}subgraph {id} {{");
        let name = region.unwrap_or(cloud);
        match notes.get(&(cloud, region)) {
            None => {
                let _ = writeln!(out, "{indent}  label={};", quote(name));
            }
            Some(note) => {
                let mut lines = vec![name.to_string()];
                lines.extend(note.lines.iter().cloned());
                let _ = writeln!(out, "{indent}  label={};", label(&lines));
                for a in &note.attrs {
                    let _ = writeln!(out, "{indent}  {a};");
                }
            }
        }
    };
    for (cloud, regions) in clusters {
        open(out, "  ", cloud, None);
        for (region, nodes) in regions {
            open(out, "    ", cloud, Some(region));
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
}

/// The names of the hubs, whose edges between each other are drawn bold.
fn hubs(topo: &Topology) -> BTreeSet<&str> {
    topo.nodes
        .iter()
        .filter(|n| n.hub)
        .map(|n| n.name.as_str())
        .collect()
}

/// One tunnel's edge, labelled with its MTU and, live, its handshake age.
fn write_tunnel(out: &mut String, e: &Edge, live: Option<&LiveEdges>, hubs: &BTreeSet<&str>) {
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

#[cfg(test)]
mod tests {
    use super::testing::synthetic;
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
            if topo.mesh.mode != crate::core::topology::MeshMode::Full {
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

    /// The value of attribute `name` in a DOT statement.
    fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        line[start..].split('"').next()
    }

    /// Edges drawn between boxes, by (ltail, lhead): (tail node, head node, the whole line).
    fn bundle_lines(dot: &str) -> BTreeMap<(String, String), (String, String, String)> {
        let mut found = BTreeMap::new();
        for line in edge_lines(dot).into_iter().filter(|l| l.contains("ltail=")) {
            let names: Vec<&str> = line.split('"').collect();
            let key = (
                attr(line, "ltail").unwrap().to_string(),
                attr(line, "lhead").unwrap().to_string(),
            );
            let prev = found.insert(
                key,
                (names[1].to_string(), names[3].to_string(), line.to_string()),
            );
            assert!(prev.is_none(), "two edges between the same boxes: {line}");
        }
        found
    }

    /// Edges drawn for single tunnels.
    fn tunnel_lines(dot: &str) -> Vec<&str> {
        edge_lines(dot)
            .into_iter()
            .filter(|l| !l.contains("ltail=") && !l.contains("invis"))
            .collect()
    }

    /// Tunnels between two different boxes as `group` names them, counted from the plans
    /// directly: (box, box) → (tunnels, smallest planned MTU).
    fn expected_bundles(
        topo: &Topology,
        group: impl Fn(&Node) -> String,
    ) -> BTreeMap<(String, String), (usize, u16)> {
        let mut want: BTreeMap<(String, String), (usize, u16)> = BTreeMap::new();
        for e in edges(topo).unwrap() {
            let (a, b) = (
                group(topo.node(&e.a).unwrap()),
                group(topo.node(&e.b).unwrap()),
            );
            if a != b {
                let key = if a < b { (a, b) } else { (b, a) };
                let slot = want.entry(key).or_insert((0, u16::MAX));
                slot.0 += 1;
                slot.1 = slot.1.min(e.mtu);
            }
        }
        want
    }

    fn region_id(n: &Node) -> String {
        cluster_id(&n.cloud, Some(&n.region))
    }

    #[test]
    fn small_meshes_and_hub_meshes_are_drawn_tunnel_by_tunnel_as_before() {
        let meshes = [
            example("full-3clouds.toml"),
            example("hybrid-onprem.toml"),
            example("hub-2regions.toml"),
            // 16 nodes: 120 tunnels, the largest full mesh within LARGE_MESH_EDGES
            synthetic("full", 2, 2, 4, 0),
        ];
        for topo in &meshes {
            let dot = render_dot(topo, None).unwrap();
            assert!(dot.contains("  graph [fontname=\"Helvetica\", labeljust=\"l\"];\n"));
            for absent in ["compound", "newrank", "ltail", "invis", "layout", "tunnels"] {
                assert!(!dot.contains(absent), "{absent}");
            }
            let hubs = hubs(topo);
            let want: Vec<String> = edges(topo)
                .unwrap()
                .iter()
                .map(|e| {
                    let bold = hubs.contains(e.a.as_str()) && hubs.contains(e.b.as_str());
                    let style = if bold { ", style=\"bold\"" } else { "" };
                    format!(
                        "  \"{}\" -- \"{}\" [label=\"mtu {}\"{style}];",
                        e.a, e.b, e.mtu
                    )
                })
                .collect();
            assert_eq!(edge_lines(&dot), want);
        }
        // 18 nodes over 3 regions, 153 tunnels: drawn by region, every tunnel inside one too
        let dot = render_dot(&synthetic("full", 1, 3, 6, 0), None).unwrap();
        assert!(dot.contains("compound=true"));
        assert_eq!(bundle_lines(&dot).len(), 3);
        assert_eq!(tunnel_lines(&dot).len(), 3 * 15);
    }

    #[test]
    fn a_large_mesh_draws_one_edge_per_pair_of_regions_with_its_count_and_smallest_mtu() {
        let topo = example("full-64.toml");
        let dot = render_dot(&topo, None).unwrap();
        assert!(dot.contains("compound=true, newrank=true"), "{dot}");
        assert!(!dot.contains("fdp"));
        let want = expected_bundles(&topo, region_id);
        assert_eq!(want.len(), 16 * 15 / 2);
        let drawn = bundle_lines(&dot);
        assert_eq!(
            drawn.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        let nesting = enclosing(&dot);
        for (key, (tail, head, line)) in &drawn {
            let (tunnels, mtu) = want[key];
            assert_eq!(tunnels, 16, "{line}");
            assert_eq!(
                attr(line, "label").unwrap(),
                format!("{tunnels} tunnels\\nmin mtu {mtu}"),
                "{line}"
            );
            assert!(line.contains("style=\"bold\""), "{line}");
            // each end sits in the box it is clipped at
            assert_eq!(nesting[tail].last(), Some(&key.0), "{line}");
            assert_eq!(nesting[head].last(), Some(&key.1), "{line}");
        }
        // the 4-node regions are small enough to keep their own 6 tunnels each
        let inside = tunnel_lines(&dot);
        assert_eq!(inside.len(), 16 * 6);
        for line in inside {
            let names: Vec<&str> = line.split('"').collect();
            assert_eq!(nesting[names[1]], nesting[names[3]], "{line}");
        }
        assert!(!dot.contains("tunnels inside"));
        assert_eq!(nesting.len(), 64);
    }

    #[test]
    fn a_live_bundle_counts_handshakes_and_unobserved_tunnels_and_is_red_when_none_is_up() {
        let topo = example("full-64.toml");
        let all = edges(&topo).unwrap();
        let region = |x: &str| region_id(topo.node(x).unwrap());
        let between = |x: &str, y: &str| -> Vec<&Edge> {
            let (rx, ry) = (region(x), region(y));
            all.iter()
                .filter(|e| {
                    let (a, b) = (region(&e.a), region(&e.b));
                    (a == rx && b == ry) || (a == ry && b == rx)
                })
                .collect()
        };
        let mut live = LiveEdges::new();
        let up = LiveEdge {
            handshake_age: Some(Duration::from_secs(3)),
            mtu: Some(1300),
        };
        // aws-00 ↔ gcp-00's regions: 2 up (one measured at 1300), 1 without handshake, 13 unseen
        let partly = between("aws-00", "gcp-00");
        live.insert(edge_key(&partly[0].a, &partly[0].b), up);
        live.insert(
            edge_key(&partly[1].a, &partly[1].b),
            LiveEdge { mtu: None, ..up },
        );
        live.insert(edge_key(&partly[2].a, &partly[2].b), LiveEdge::default());
        // aws-00 ↔ azure-00's regions: all observed, none up
        for e in between("aws-00", "azure-00") {
            live.insert(edge_key(&e.a, &e.b), LiveEdge::default());
        }
        let dot = render_dot(&topo, Some(&live)).unwrap();
        let drawn = bundle_lines(&dot);
        let line = |x: &str, y: &str| {
            let (rx, ry) = (region(x), region(y));
            let key = if rx < ry { (rx, ry) } else { (ry, rx) };
            drawn[&key].2.clone()
        };
        let l = line("aws-00", "gcp-00");
        assert_eq!(
            attr(&l, "label").unwrap(),
            "16 tunnels\\n2 with handshake\\n13 not observed\\nmin mtu 1300"
        );
        assert!(l.ends_with("style=\"bold\"];"), "{l}");
        let l = line("aws-00", "azure-00");
        assert!(attr(&l, "label")
            .unwrap()
            .starts_with("16 tunnels\\n0 with handshake\\nmin mtu"));
        assert_eq!(attr(&l, "color"), Some("red"), "{l}");
        let l = line("gcp-00", "azure-00");
        assert!(
            attr(&l, "label").unwrap().contains("\\n16 not observed\\n"),
            "{l}"
        );
        assert_eq!(attr(&l, "style"), Some("bold,dashed"), "{l}");
        assert_eq!(attr(&l, "color"), None, "{l}");
        // the tunnels inside a region are still labelled one by one
        assert!(tunnel_lines(&dot)
            .iter()
            .all(|l| l.contains("not observed\\nmtu ")));
    }

    #[test]
    fn dense_regions_count_their_tunnels_in_their_label_and_lay_their_nodes_out_in_a_grid() {
        // two full meshes of 30 nodes: 435 tunnels inside each, 900 between them
        let topo = synthetic("full", 1, 2, 30, 0);
        let dot = render_dot(&topo, None).unwrap();
        let drawn = bundle_lines(&dot);
        assert_eq!(drawn.len(), 1);
        let (_, (tail, head, line)) = drawn.iter().next().unwrap();
        assert_eq!(attr(line, "label"), Some("900 tunnels\\nmin mtu 1340"));
        assert_eq!((tail.as_str(), head.as_str()), ("c0-r0-n00", "c0-r1-n00"));
        assert!(tunnel_lines(&dot).is_empty());
        assert!(dot.contains("label=\"r0-0\\n435 tunnels inside\\nmin mtu 1340\";"));
        assert!(dot.contains("label=\"r0-1\\n435 tunnels inside\\nmin mtu 1360\";"));
        assert!(dot.contains("a region's label counts the tunnels inside it"));
        // 30 nodes in 6 columns: 24 links down the columns, and the first node above the
        // other 5 of the second row
        let invisible = edge_lines(&dot)
            .into_iter()
            .filter(|l| l.contains("invis"))
            .count();
        assert_eq!(invisible, 2 * (24 + 5));
    }

    #[test]
    fn too_many_region_pairs_are_drawn_between_clouds_and_between_the_regions_of_each() {
        // 24 regions in 4 clouds: 276 region pairs, more than MAX_DRAWN
        let topo = synthetic("full", 4, 6, 2, 0);
        let dot = render_dot(&topo, None).unwrap();
        let drawn = bundle_lines(&dot);
        let clouds = expected_bundles(&topo, |n| cluster_id(&n.cloud, None));
        let regions = expected_bundles(&topo, region_id);
        let within: BTreeMap<_, _> = regions
            .into_iter()
            .filter(|((a, b), _)| a.split('_').nth(1) == b.split('_').nth(1))
            .collect();
        assert_eq!((clouds.len(), within.len()), (6, 4 * 15));
        assert_eq!(drawn.len(), clouds.len() + within.len());
        for (key, (tunnels, mtu)) in clouds.iter().chain(&within) {
            let label = attr(&drawn[key].2, "label").unwrap().to_string();
            assert_eq!(label, format!("{tunnels} tunnels\\nmin mtu {mtu}"));
        }
        assert_eq!(clouds.values().next().unwrap().0, 12 * 12);
        // and the region pairs of one cloud, beyond the budget too, are counted in its label
        let topo = synthetic("full", 1, 24, 2, 0);
        let dot = render_dot(&topo, None).unwrap();
        assert!(bundle_lines(&dot).is_empty());
        assert!(tunnel_lines(&dot).is_empty());
        assert!(dot.contains("label=\"cloud0\\n1104 tunnels between its regions\\nmin mtu 1340\";"));
        assert!(dot.contains("label=\"r0-5\\n1 tunnel inside\\nmin mtu 1360\";"));
    }

    #[test]
    fn a_large_hub_mesh_bundles_the_hub_to_hub_tunnels_between_regions_from_a_hub() {
        // 8 regions of 2 hubs and 40 spokes: 648 spoke–hub and hub–hub tunnels inside regions,
        // 112 hub–hub tunnels between them
        let topo = synthetic("hub", 2, 4, 42, 2);
        let dot = render_dot(&topo, None).unwrap();
        let drawn = bundle_lines(&dot);
        assert_eq!(drawn.len(), 8 * 7 / 2);
        for (tail, head, line) in drawn.values() {
            assert!(
                attr(line, "label").unwrap().starts_with("4 tunnels\\n"),
                "{line}"
            );
            assert!(topo.node(tail).unwrap().hub && topo.node(head).unwrap().hub);
        }
        assert!(dot.contains("\\n81 tunnels inside\\n"));
        assert_eq!(enclosing(&dot).len(), 336);
    }
}
