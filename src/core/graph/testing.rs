//! Meshes of any shape for tests: how the picture changes with size is the point of them.

use crate::core::key::PublicKey;
use crate::core::topology::Topology;
use std::fmt::Write as _;
use std::path::Path;

/// A mesh over `clouds` × `regions` regions of `nodes` nodes each (the first `hubs` of a
/// region are hubs), with underlay MTUs that differ between regions: 1400, 1420, 1440, 1460,
/// 1400, … (tunnel MTUs 60 less). Nodes are `c{cloud}-r{region}-n{node:02}` in cloud
/// `cloud{c}` and region `r{c}-{r}`.
pub(crate) fn synthetic(
    mode: &str,
    clouds: usize,
    regions: usize,
    nodes: usize,
    hubs: usize,
) -> Topology {
    let mut t = format!("mode = \"{mode}\"\ncluster-cidr = \"10.0.0.0/8\"\nnode-prefix = 24\n");
    for c in 0..clouds {
        for r in 0..regions {
            let mtu = 1400 + 20 * ((c + r) % 4);
            let _ = writeln!(t, "[region.r{c}-{r}]\nunderlay-mtu = {mtu}");
        }
    }
    let mut i: u32 = 0;
    for c in 0..clouds {
        for r in 0..regions {
            for n in 0..nodes {
                i += 1;
                let mut key = [7u8; 32];
                key[..4].copy_from_slice(&i.to_le_bytes());
                let key = PublicKey::from_bytes(key);
                let _ = writeln!(
                    t,
                    "[[node]]\nname = \"c{c}-r{r}-n{n:02}\"\ncloud = \"cloud{c}\"\n\
                     region = \"r{c}-{r}\"\nhub = {}\npublic-key = \"{key}\"",
                    n < hubs
                );
            }
        }
    }
    Topology::parse(&t, Path::new("synthetic.toml")).unwrap()
}
