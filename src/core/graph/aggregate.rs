//! A large mesh drawn by region. Past `LARGE_MESH_EDGES` peerings a picture of each one is
//! unreadable, and Graphviz cannot draw it reliably: dot's ranking of the clustered graph fails
//! ("trouble in init_rank", edges lost, exit status 1) from an 18-node full mesh over three
//! regions on, and fdp, which the 64-node example used to ask for, takes ~5 s on it and
//! segfaults at random (2 to 9 runs in 20).
//!
//! So every node stays in its cloud and region boxes, and all the tunnels between two regions
//! become one bold edge between the two boxes, labelled with their [`Bundle`]: how many, the
//! smallest MTU and, live, how many have a handshake. dot draws an edge between nodes, not
//! boxes: the edge joins one representative node of each region, and `compound=true` with
//! `ltail`/`lhead` clips it at the boxes' borders. The tunnels inside each region are still
//! drawn one by one while the whole picture stays within [`MAX_DRAWN`] edges; otherwise each
//! region's label counts them. With more region pairs than that (a full mesh over some 23
//! regions), the tunnels between two clouds become one edge between the cloud boxes the same
//! way, and a cloud's region pairs are drawn inside it while they fit, else counted in its label.
//!
//! `newrank=true` because dot's default, cluster-by-cluster ranking fails ("trouble in
//! init_rank", a lost edge, an exit status of 1) on as few as 20 regions with 200 edges between
//! boxes; the global ranking draws them all.

use super::bundle::{Alarm, Bundle};
use super::{
    cluster_id, hubs, label, open_graph, quote, write_clusters, write_tunnel, Clusters, Edge,
    LiveEdges, Note, Notes,
};
use crate::core::topology::{Node, Topology};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// Edges a large mesh's picture draws at most. dot's time grows steeply with the edges between
/// boxes: on this project's 2-core machine, 120 region pairs (plus 96 tunnels inside regions)
/// render in 0.1 s, 190 pairs in 0.35 s, 276 in 1 s, 496 in 7–9 s; dense regions cost too (two
/// full meshes of 22 nodes, 462 tunnels: 3 s).
const MAX_DRAWN: usize = 250;

/// A cloud's box (`None`) or a region's inside it.
type Cluster<'a> = (&'a str, Option<&'a str>);

/// A region by cloud and name (two clouds may use the same region name).
type Region<'a> = (&'a str, &'a str);

/// One drawn edge between two boxes and the tunnels it stands for.
struct Pair<'a> {
    from: Cluster<'a>,
    to: Cluster<'a>,
    bundle: Bundle,
}

/// What a large mesh's picture draws, and what its labels count instead.
struct Picture<'a> {
    /// Edges between boxes, coarsest first.
    pairs: Vec<Pair<'a>>,
    /// The tunnels inside regions when they are drawn one by one; `None` when counted.
    tunnels: Option<Vec<&'a Edge>>,
    notes: Notes<'a>,
    /// The graph's own label: what a bold edge stands for.
    legend: Vec<String>,
}

/// Appends the DOT of a mesh too large to draw tunnel by tunnel.
pub(super) fn render(
    out: &mut String,
    topo: &Topology,
    clusters: &Clusters,
    edges: &[Edge],
    live: Option<&LiveEdges>,
) {
    let picture = picture(topo, edges, live);
    open_graph(out, ", compound=true, newrank=true");
    let _ = writeln!(out, "  label={};", label(&picture.legend));
    write_clusters(out, clusters, &picture.notes);
    match &picture.tunnels {
        Some(tunnels) => {
            let hubs = hubs(topo);
            for e in tunnels {
                write_tunnel(out, e, live, &hubs);
            }
        }
        None => write_grids(out, clusters),
    }
    for p in &picture.pairs {
        let (Some(a), Some(b)) = (
            representative(clusters, p.from),
            representative(clusters, p.to),
        ) else {
            continue;
        };
        let attrs = match p.bundle.alarm(live.is_some()) {
            None => ", style=\"bold\"",
            Some(Alarm::Down) => ", style=\"bold\", color=\"red\"",
            Some(Alarm::Unobserved) => ", style=\"bold,dashed\"",
        };
        let _ = writeln!(
            out,
            "  {} -- {} [ltail={}, lhead={}, label={}{attrs}];",
            quote(a),
            quote(b),
            quote(&cluster_id(p.from.0, p.from.1)),
            quote(&cluster_id(p.to.0, p.to.1)),
            label(&p.bundle.lines("", live.is_some()))
        );
    }
    let _ = writeln!(out, "}}");
}

/// Folds the tunnels by region and chooses, coarsest first, what fits in [`MAX_DRAWN`] edges:
/// region pairs (or, when they alone are too many, cloud pairs and then each cloud's region
/// pairs), then the tunnels inside regions. What does not fit is counted in labels.
fn picture<'a>(topo: &'a Topology, edges: &'a [Edge], live: Option<&LiveEdges>) -> Picture<'a> {
    let place: HashMap<&str, Region> = topo
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), (n.cloud.as_str(), n.region.as_str())))
        .collect();
    let mut inside: BTreeMap<Region, Bundle> = BTreeMap::new();
    let mut inside_edges = Vec::new();
    let mut between: BTreeMap<(Region, Region), Bundle> = BTreeMap::new();
    for e in edges {
        let (Some(&pa), Some(&pb)) = (place.get(e.a.as_str()), place.get(e.b.as_str())) else {
            continue;
        };
        if pa == pb {
            inside.entry(pa).or_default().add(e, live);
            inside_edges.push(e);
        } else {
            let key = if pa < pb { (pa, pb) } else { (pb, pa) };
            between.entry(key).or_default().add(e, live);
        }
    }
    let is_live = live.is_some();
    let region_pair = |(ra, rb): (Region<'a>, Region<'a>), bundle| Pair {
        from: (ra.0, Some(ra.1)),
        to: (rb.0, Some(rb.1)),
        bundle,
    };
    let mut picture = Picture {
        pairs: vec![],
        tunnels: None,
        notes: Notes::new(),
        legend: vec![format!(
            "{} nodes, {} tunnels",
            topo.nodes.len(),
            edges.len()
        )],
    };
    // the tunnels inside regions are drawn only if every coarser edge is
    let mut coarser_all_drawn = true;
    if between.len() <= MAX_DRAWN {
        picture
            .pairs
            .extend(between.into_iter().map(|(k, b)| region_pair(k, b)));
        picture
            .legend
            .push("a bold edge: all the tunnels between two regions".into());
    } else {
        let mut clouds: BTreeMap<(&str, &str), Bundle> = BTreeMap::new();
        let mut within: BTreeMap<&str, (Bundle, Vec<Pair>)> = BTreeMap::new();
        for (key, bundle) in between {
            let (ca, cb) = (key.0 .0, key.1 .0);
            if ca == cb {
                let (total, pairs) = within.entry(ca).or_default();
                total.merge(&bundle);
                pairs.push(region_pair(key, bundle));
            } else {
                clouds.entry((ca, cb)).or_default().merge(&bundle);
            }
        }
        picture
            .pairs
            .extend(clouds.into_iter().map(|((a, b), bundle)| Pair {
                from: (a, None),
                to: (b, None),
                bundle,
            }));
        let within_count: usize = within.values().map(|(_, pairs)| pairs.len()).sum();
        if picture.pairs.len() + within_count <= MAX_DRAWN {
            picture
                .pairs
                .extend(within.into_values().flat_map(|(_, pairs)| pairs));
            picture.legend.push(
                "a bold edge: all the tunnels between two clouds, or two regions of a cloud".into(),
            );
        } else {
            for (cloud, (total, _)) in within {
                let note = note(&total, " between its regions", is_live);
                picture.notes.insert((cloud, None), note);
            }
            coarser_all_drawn = false;
            picture.legend.extend([
                "a bold edge: all the tunnels between two clouds".into(),
                "a cloud's label counts those between its regions".into(),
            ]);
        }
    }
    if coarser_all_drawn && picture.pairs.len() + inside_edges.len() <= MAX_DRAWN {
        picture.tunnels = Some(inside_edges);
    } else {
        for (&(cloud, region), total) in &inside {
            let note = note(total, " inside", is_live);
            picture.notes.insert((cloud, Some(region)), note);
        }
        if !inside.is_empty() {
            picture
                .legend
                .push("a region's label counts the tunnels inside it".into());
        }
    }
    picture
}

/// A box's label lines for tunnels it holds but does not draw, red or dashed as an edge would be.
fn note(bundle: &Bundle, place: &str, live: bool) -> Note {
    let attrs = match bundle.alarm(live) {
        None => vec![],
        Some(Alarm::Down) => vec!["color=\"red\"".to_string()],
        Some(Alarm::Unobserved) => vec!["style=\"dashed\"".to_string()],
    };
    Note {
        lines: bundle.lines(place, live),
        attrs,
    }
}

/// A region's nodes, hubs first (they carry the tunnels between regions in hub mode), then by
/// name, so the picture is stable.
fn ordered<'a>(nodes: &[&'a Node]) -> Vec<&'a Node> {
    let mut nodes = nodes.to_vec();
    nodes.sort_by(|a, b| b.hub.cmp(&a.hub).then_with(|| a.name.cmp(&b.name)));
    nodes
}

/// The node a box's edges are drawn from: a region's first node, a cloud's first region's.
fn representative<'a>(clusters: &Clusters<'a>, (cloud, region): Cluster) -> Option<&'a str> {
    let regions = clusters.get(cloud)?;
    let nodes = match region {
        Some(r) => regions.get(r)?,
        None => regions.values().next()?,
    };
    ordered(nodes).first().map(|n| n.name.as_str())
}

/// Lays each region's nodes out as a grid of about √n columns with invisible edges. With no
/// tunnel drawn inside a region, dot would put all its nodes on one rank: a 42-node region
/// would be one row some 6,000 points wide. Each column is a chain; the first node (the one
/// the region's edges leave from) also holds up the whole second row, so that an edge pushing
/// it down moves the grid with it instead of pulling its column out of shape.
fn write_grids(out: &mut String, clusters: &Clusters) {
    let mut invisible = |a: &Node, b: &Node| {
        let _ = writeln!(
            out,
            "  {} -- {} [style=\"invis\"];",
            quote(&a.name),
            quote(&b.name)
        );
    };
    for regions in clusters.values() {
        for nodes in regions.values() {
            let nodes = ordered(nodes);
            let columns = (nodes.len() as f64).sqrt().ceil() as usize;
            for (above, below) in nodes.iter().zip(nodes.iter().skip(columns)) {
                invisible(above, below);
            }
            for below in nodes
                .iter()
                .skip(columns + 1)
                .take(columns.saturating_sub(1))
            {
                invisible(nodes[0], below);
            }
        }
    }
}
