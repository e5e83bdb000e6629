//! `wiremesh ipam`: each node's pod CIDRs and whether the file pins them; `--write` pins them
//! all, after which adding or removing nodes can never move an existing node's CIDR.

use crate::core::topology::{Node, Topology};
use crate::io::topology_file;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct IpamArgs {
    /// Topology file.
    #[arg(long, short)]
    pub topology: PathBuf,
    /// Pin every assigned pod CIDR into the file (comments and layout are kept).
    #[arg(long)]
    pub write: bool,
}

pub fn run(args: IpamArgs) -> anyhow::Result<()> {
    let mut topo = Topology::load(&args.topology)?;
    if args.write {
        match topology_file::pin_pod_cidrs(&args.topology, &topo)? {
            0 => eprintln!(
                "{}: every pod CIDR was already pinned; file unchanged",
                args.topology.display()
            ),
            n => eprintln!(
                "{}: pinned the pod CIDRs of {n} node(s)",
                args.topology.display()
            ),
        }
        topo = Topology::load(&args.topology)?;
    }
    let dual = topo.cluster_cidr_v6.is_some();
    if dual {
        println!(
            "{:<24} {:<20} {:<28} PINNED",
            "NODE", "POD CIDR", "POD CIDR V6"
        );
    } else {
        println!("{:<24} {:<20} PINNED", "NODE", "POD CIDR");
    }
    for n in &topo.nodes {
        let v6 = n.pod_cidr_v6.map(|c| c.to_string()).unwrap_or_default();
        let pinned = pinned(n, dual);
        if dual {
            println!(
                "{:<24} {:<20} {:<28} {pinned}",
                n.name,
                n.pod_cidr.to_string(),
                v6
            );
        } else {
            println!("{:<24} {:<20} {pinned}", n.name, n.pod_cidr.to_string());
        }
    }
    if !args.write && topo.nodes.iter().any(|n| pinned(n, dual) != "yes") {
        eprintln!(
            "hint: `wiremesh ipam --topology {} --write` pins them all",
            args.topology.display()
        );
    }
    Ok(())
}

fn pinned(n: &Node, dual: bool) -> &'static str {
    match (n.pod_cidr_pinned, n.pod_cidr_v6_pinned || !dual) {
        (true, true) => "yes",
        (true, false) => "v4 only",
        (false, true) => "v6 only",
        (false, false) => "no",
    }
}
