//! `wiremesh graph`: the mesh as Graphviz DOT (or SVG through `dot`).
//!
//! `--live` asks every UAPI socket in `--uapi-dir` (default /var/run/wireguard: the daemons
//! running on this machine or reachable through a mounted directory) for its device, and
//! recognises which node each one is by the public key of its private key. No interface-to-node
//! map is needed, and a socket of something that is not in the topology is ignored. Each edge
//! then shows the newest handshake either end reported; edges neither end reported are dashed.

use crate::constants::UAPI_DIR;
use crate::core::graph::{self, LiveEdges};
use crate::core::key::PublicKey;
use crate::core::topology::Topology;
use crate::io::uapi;
use anyhow::Context as _;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Dot,
    Svg,
}

#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// Topology file.
    #[arg(long, short)]
    pub topology: PathBuf,
    /// Label edges with what the running daemons report (handshake age) instead of the plan.
    #[arg(long)]
    pub live: bool,
    /// Where `--live` looks for UAPI sockets.
    #[arg(long, default_value = UAPI_DIR, requires = "live")]
    pub uapi_dir: PathBuf,
    /// `dot` text, or `svg` rendered by Graphviz's `dot -Tsvg`.
    #[arg(long, value_enum, default_value_t = Format::Dot)]
    pub format: Format,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub fn run(args: GraphArgs) -> anyhow::Result<()> {
    let topo = Topology::load(&args.topology)?;
    let live = if args.live {
        Some(observe(&topo, &args.uapi_dir)?)
    } else {
        None
    };
    let dot = graph::render_dot(&topo, live.as_ref())?;
    let bytes = match args.format {
        Format::Dot => dot.into_bytes(),
        Format::Svg => to_svg(&dot)?,
    };
    match &args.output {
        Some(path) => std::fs::write(path, bytes).with_context(|| path.display().to_string())?,
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}

/// Queries every socket in `dir` and folds what the nodes report into per-edge observations.
fn observe(topo: &Topology, dir: &Path) -> anyhow::Result<LiveEdges> {
    let by_key: HashMap<PublicKey, &str> = topo
        .nodes
        .iter()
        .map(|n| (n.public_key, n.name.as_str()))
        .collect();
    let sockets: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sock"))
            .collect(),
        Err(e) => return Err(e).with_context(|| format!("--live: {}", dir.display())),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let now = SystemTime::now();
    let mut live = LiveEdges::new();
    let mut seen = 0;
    for sock in &sockets {
        let dev = match rt.block_on(uapi::query(sock)) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("wiremesh graph: skipping {e}");
                continue;
            }
        };
        let me = dev.private_key.as_ref().map(|k| k.public_key());
        let Some(me) = me.and_then(|k| by_key.get(&k)) else {
            continue;
        };
        seen += 1;
        for p in &dev.peers {
            let Some(peer) = by_key.get(&p.public_key) else {
                continue;
            };
            let age = p
                .last_handshake
                .map(|t| now.duration_since(t).unwrap_or_default());
            let entry = live.entry(graph::edge_key(me, peer)).or_default();
            entry.handshake_age = match (entry.handshake_age, age) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
        }
    }
    if seen == 0 {
        eprintln!(
            "wiremesh graph: no socket in {} belongs to a node of this topology; every edge is unobserved",
            dir.display()
        );
    }
    Ok(live)
}

/// Pipes DOT through `dot -Tsvg`.
fn to_svg(dot: &str) -> anyhow::Result<Vec<u8>> {
    let mut child = match Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "--format svg needs Graphviz's `dot` on PATH (apt-get install graphviz), or use --format dot"
        ),
        Err(e) => return Err(e).context("running dot"),
    };
    let mut stdin = child.stdin.take().context("dot's stdin")?;
    let text = dot.to_string();
    // Written from another thread so a large graph cannot deadlock on full pipes.
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().context("running dot")?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writing to dot panicked"))?
        .context("writing to dot")?;
    anyhow::ensure!(
        out.status.success(),
        "dot -Tsvg failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether Graphviz's `dot` runs here; without it a test skips (saying so), but not in CI.
    fn dot_installed() -> bool {
        if Command::new("dot").arg("-V").output().is_ok() {
            return true;
        }
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "dot is required under CI"
        );
        eprintln!("skipping: dot not installed");
        false
    }

    /// Graphviz must accept the DOT of every example. Skipped without `dot` only outside CI.
    #[test]
    fn every_example_topology_renders_to_svg_with_graphviz() {
        if !dot_installed() {
            return;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
        let mut rendered = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let topo = Topology::load(&path).unwrap();
            for live in [None, Some(LiveEdges::new())] {
                let dot = graph::render_dot(&topo, live.as_ref()).unwrap();
                let svg = to_svg(&dot).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                let svg = String::from_utf8(svg).unwrap();
                assert!(
                    svg.contains("<svg") && svg.contains("cluster_"),
                    "{}",
                    path.display()
                );
            }
            rendered += 1;
        }
        assert!(rendered >= 3, "only {rendered} example topologies found");
    }

    /// Shapes the examples do not cover, on both sides of `LARGE_MESH_EDGES` and of the
    /// aggregated picture's budget. dot used to fail outright on the 18-node and hub ones.
    #[test]
    fn meshes_of_every_size_render_to_svg_with_graphviz() {
        if !dot_installed() {
            return;
        }
        use crate::core::graph::testing::synthetic;
        let meshes = [
            (
                "16-node full mesh, one edge per tunnel",
                synthetic("full", 2, 2, 4, 0),
            ),
            (
                "18-node full mesh over 3 regions",
                synthetic("full", 1, 3, 6, 0),
            ),
            (
                "32-node hub mesh over 8 regions",
                synthetic("hub", 2, 4, 4, 2),
            ),
            ("336-node hub mesh", synthetic("hub", 2, 4, 42, 2)),
            ("two dense 30-node regions", synthetic("full", 1, 2, 30, 0)),
            ("24 regions, paired by cloud", synthetic("full", 4, 6, 2, 0)),
        ];
        for (what, topo) in &meshes {
            for live in [None, Some(LiveEdges::new())] {
                let dot = graph::render_dot(topo, live.as_ref()).unwrap();
                let svg = to_svg(&dot).unwrap_or_else(|e| panic!("{what}: {e:#}"));
                assert!(String::from_utf8(svg).unwrap().contains("<svg"), "{what}");
            }
        }
    }

    #[test]
    fn live_mode_with_no_daemons_marks_every_edge_unobserved() {
        let dir = tempfile::tempdir().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/hub-2regions.toml");
        let topo = Topology::load(&path).unwrap();
        let live = observe(&topo, dir.path()).unwrap();
        assert!(live.is_empty());
        let dot = graph::render_dot(&topo, Some(&live)).unwrap();
        assert_eq!(dot.matches("not observed").count(), 9);
    }
}
