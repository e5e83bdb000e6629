//! Topologies for the benches: the same text a user writes, generated for n nodes.

#![allow(dead_code)] // each bench uses its own subset

use wiremesh::core::key::PrivateKey;
use wiremesh::core::topology::Topology;

/// A full mesh of `n` nodes (n ≤ 65,000) in `regions` regions: node i gets 10.(i/250).(i%250).0/24
/// out of 10.0.0.0/8 and an underlay endpoint in 192.0.2.0/24 or 198.18.0.0/15.
pub fn topology(mode: &str, n: usize, regions: usize) -> (Topology, Vec<PrivateKey>) {
    let (text, keys) = topology_text(mode, n, regions, true);
    let topo = Topology::parse(&text, std::path::Path::new("bench.toml")).expect("topology");
    (topo, keys)
}

/// The text of [`topology`]; with `pinned` false no node fixes its pod CIDR, so loading it
/// runs IPAM for every node.
pub fn topology_text(
    mode: &str,
    n: usize,
    regions: usize,
    pinned: bool,
) -> (String, Vec<PrivateKey>) {
    let keys: Vec<PrivateKey> = (0..n).map(|_| wiremesh::io::keyfile::generate()).collect();
    let mut text = format!("mode = \"{mode}\"\ncluster-cidr = \"10.0.0.0/8\"\n");
    for (i, key) in keys.iter().enumerate() {
        let region = i % regions.max(1);
        let hub = mode == "hub" && i < regions;
        text.push_str(&format!(
            "[[node]]\nname = \"n{i}\"\ncloud = \"c\"\nregion = \"r{region}\"\nendpoint = \"198.18.{}.{}:51820\"\npublic-key = \"{}\"\nhub = {hub}\n",
            i / 250,
            i % 250 + 1,
            key.public_key(),
        ));
        if pinned {
            text.push_str(&format!("pod-cidr = \"10.{}.{}.0/24\"\n", i / 250, i % 250));
        }
    }
    (text, keys)
}
