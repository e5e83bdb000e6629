//! `wiremesh ipam`: each node's pod CIDRs and whether the file pins them; `--write` pins them
//! all, after which adding or removing nodes can never move an existing node's CIDR. `--json`
//! is for tools (the Ansible role asks this command instead of keeping an IPAM of its own).

use crate::core::topology::{Node, Topology};
use crate::io::topology_file;
use ipnet::{Ipv4Net, Ipv6Net};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What `--topology -` reads; also the name errors give it, since there is no file to name.
const STDIN: &str = "-";

#[derive(Debug, clap::Args)]
pub struct IpamArgs {
    /// Topology file, or `-` to read it from standard input.
    #[arg(long, short)]
    pub topology: PathBuf,
    /// Pin every assigned pod CIDR into the file (comments and layout are kept).
    #[arg(long)]
    pub write: bool,
    /// Print the assignment as JSON (one object per node, in file order) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One node's assignment as `--json` prints it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct Assigned<'a> {
    name: &'a str,
    pod_cidr: Ipv4Net,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_cidr_v6: Option<Ipv6Net>,
    /// Whether the file itself gives `pod-cidr` (else wiremesh's IPAM chose it).
    pinned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_v6: Option<bool>,
}

pub fn run(args: IpamArgs) -> anyhow::Result<()> {
    let from_stdin = args.topology == Path::new(STDIN);
    if from_stdin && args.write {
        anyhow::bail!("--write needs a topology file to write into, not `--topology -`");
    }
    let mut topo = if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("cannot read the topology from standard input: {e}"))?;
        Topology::parse(&text, Path::new("<stdin>"))?
    } else {
        Topology::load(&args.topology)?
    };
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
    let dual = topo.mesh.cluster_cidr_v6.is_some();
    if args.json {
        let nodes: Vec<Assigned> = topo
            .nodes
            .iter()
            .map(|n| Assigned {
                name: &n.name,
                pod_cidr: n.pod_cidr,
                pod_cidr_v6: n.pod_cidr_v6,
                pinned: n.pod_cidr_pinned,
                pinned_v6: dual.then_some(n.pod_cidr_v6_pinned),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    print_table(&topo, dual);
    if !args.write && !from_stdin && topo.nodes.iter().any(|n| pinned(n, dual) != "yes") {
        eprintln!(
            "hint: `wiremesh ipam --topology {} --write` pins them all",
            args.topology.display()
        );
    }
    Ok(())
}

fn print_table(topo: &Topology, dual: bool) {
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
}

fn pinned(n: &Node, dual: bool) -> &'static str {
    match (n.pod_cidr_pinned, n.pod_cidr_v6_pinned || !dual) {
        (true, true) => "yes",
        (true, false) => "v4 only",
        (false, true) => "v6 only",
        (false, false) => "no",
    }
}
