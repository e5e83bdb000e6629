//! `wiremesh lab up | status | link | vpc | flush-nat | join | leave | down`.

use super::harness::{Lab, LabOptions};
use super::DEFAULT_PREFIX;
use super::{io_at, LabError};
use std::path::PathBuf;
use std::time::Duration;

/// How long `up` lets the daemons handshake before pinging.
const SETTLE: Duration = Duration::from_secs(2);
/// Per-pair ping timeout of the matrix printed by `up` and `status`.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Build the mesh in namespaces, start a daemon per node, print the all-pairs ping matrix.
    Up {
        /// The topology file; keys, endpoints and pod CIDRs are replaced by the lab's.
        topology: PathBuf,
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
        /// Build the network only (underlay), without daemons.
        #[arg(long)]
        no_daemons: bool,
        /// Attach this many container namespaces to every node through the CNI plugin chain
        /// (wiremesh-cni, portmap); the matrix then covers them too.
        #[arg(long, default_value_t = 0, conflicts_with = "no_daemons")]
        containers: usize,
        /// Run the mesh on a registry: `etcd` starts real etcd members in the lab, imports the
        /// topology and starts every daemon with --registry instead of the file.
        #[arg(long, value_parser = ["etcd"])]
        registry: Option<String>,
        /// With --registry etcd: how many members (1, 3 or 5).
        #[arg(long, default_value_t = 1, requires = "registry")]
        etcd_members: usize,
    },
    /// Show namespaces, daemons and the ping matrix of a running lab.
    Status {
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Limit the link between two regions while the mesh runs: an MTU (the router answers
    /// with ICMP) or a black hole above a size (no ICMP). Neither flag lifts both limits.
    Link {
        region_a: String,
        region_b: String,
        #[arg(long)]
        mtu: Option<u16>,
        #[arg(long)]
        black_hole_above: Option<u16>,
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Cut a node's link to its region's VPC (`lab.vpc`) while the mesh runs, or restore it
    /// with --up: its traffic to the VPC's other nodes then has only the public side.
    Vpc {
        node: String,
        /// Restore the link instead of cutting it.
        #[arg(long)]
        up: bool,
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Forget every mapping of a NATed node's router (`conntrack -F`), as a NAT reboot does.
    FlushNat {
        node: String,
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Add a node to a lab running on a registry while the mesh runs: namespace, link, key and
    /// a daemon given only the registry; then the all-pairs ping matrix.
    Join {
        name: String,
        #[arg(long)]
        region: String,
        /// Cloud or site of the node (default: the region's name).
        #[arg(long)]
        cloud: Option<String>,
        /// The node is a hub of its region.
        #[arg(long)]
        hub: bool,
        /// Underlay MTU of a new region (default 1500).
        #[arg(long)]
        region_mtu: Option<u16>,
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Stop a node with SIGTERM (it leaves the registry, keeping its CIDR) and remove its
    /// namespace; --remove also removes it from the registry, freeing its CIDR.
    Leave {
        name: String,
        #[arg(long)]
        remove: bool,
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Remove everything a lab created (idempotent; works on a half-built lab).
    Down {
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
}

pub fn run(args: LabArgs) -> Result<(), LabError> {
    match args.command {
        LabCommand::Up {
            topology,
            prefix,
            no_daemons,
            containers,
            registry,
            etcd_members,
        } => up(
            topology,
            prefix,
            no_daemons,
            containers,
            registry.map(|_| etcd_members),
        ),
        LabCommand::Status { prefix } => status(&prefix),
        LabCommand::Link {
            region_a,
            region_b,
            mtu,
            black_hole_above,
            prefix,
        } => {
            let lab = Lab::load(&prefix)?;
            let limit = super::LinkLimit {
                mtu,
                black_hole_above,
            };
            lab.set_link(&region_a, &region_b, limit)?;
            println!(
                "link {region_a} ↔ {region_b}: mtu {}, black hole above {}",
                mtu.map_or("none".into(), |m| m.to_string()),
                black_hole_above.map_or("none".into(), |m| m.to_string())
            );
            Ok(())
        }
        LabCommand::Vpc { node, up, prefix } => {
            let lab = Lab::load(&prefix)?;
            lab.set_vpc_link(&node, up)?;
            let state = if up { "restored" } else { "cut" };
            println!("node '{node}': link to its VPC {state}");
            Ok(())
        }
        LabCommand::FlushNat { node, prefix } => {
            let lab = Lab::load(&prefix)?;
            lab.flush_nat(&node)?;
            println!("node '{node}': NAT mappings flushed");
            Ok(())
        }
        LabCommand::Join {
            name,
            region,
            cloud,
            hub,
            region_mtu,
            prefix,
        } => {
            let mut lab = Lab::load(&prefix)?;
            let opts = super::JoinOptions {
                region,
                cloud,
                hub,
                region_mtu,
                private_key: None,
            };
            lab.join(&name, &opts)?;
            println!("node '{name}' joined lab '{prefix}'");
            std::thread::sleep(SETTLE);
            let matrix = lab.ping_matrix(PING_TIMEOUT)?;
            print_matrix(&matrix);
            unreachable_pairs(&lab, &matrix).map_or(Ok(()), Err)
        }
        LabCommand::Leave {
            name,
            remove,
            prefix,
        } => {
            let mut lab = Lab::load(&prefix)?;
            lab.leave(&name, remove)?;
            println!(
                "node '{name}' left lab '{prefix}'{}",
                if remove {
                    " and the registry (its CIDR is free)"
                } else {
                    " (its CIDR is kept)"
                }
            );
            Ok(())
        }
        LabCommand::Down { prefix } => {
            Lab::down_prefix(&prefix)?;
            println!("lab '{prefix}' removed");
            Ok(())
        }
    }
}

fn up(
    topology: PathBuf,
    prefix: String,
    no_daemons: bool,
    containers: usize,
    etcd_members: Option<usize>,
) -> Result<(), LabError> {
    let exe = std::env::current_exe().map_err(io_at("/proc/self/exe"))?;
    let mut opts = LabOptions::new(prefix.clone(), exe);
    opts.etcd_members = etcd_members;
    let mut lab = Lab::build(&topology, opts)?;
    if let Some(url) = lab.registry_url() {
        println!("registry: {url} (mesh '{prefix}')");
    }
    let mut unreachable = None;
    println!(
        "lab '{prefix}': {} nodes, state in {}",
        lab.nodes().len(),
        lab.state_dir().display()
    );
    if !no_daemons {
        lab.start_daemons()?;
        lab.attach_containers(containers)?;
        std::thread::sleep(SETTLE);
        let matrix = lab.ping_matrix(PING_TIMEOUT)?;
        print!("\nall-pairs ping over the mesh (row pings column's overlay or pod address):\n");
        print_matrix(&matrix);
        unreachable = unreachable_pairs(&lab, &matrix);
    }
    print_nodes(&lab);
    print_containers(&lab);
    let first = lab
        .layout()
        .nodes
        .first()
        .map(|n| n.ifname.clone())
        .unwrap_or_default();
    // `wg` finds a device by its socket in the shared /var/run/wireguard, from any namespace.
    println!("\ninspect:  wg show {first}");
    println!(
        "          ip netns exec {} ip route",
        lab.layout()
            .nodes
            .first()
            .map(|n| n.ns.as_str())
            .unwrap_or("")
    );
    println!("          wiremesh lab status --prefix {prefix}");
    println!("remove:   wiremesh lab down --prefix {prefix}");
    lab.detach();
    unreachable.map_or(Ok(()), Err)
}

/// Endpoints up to which the whole matrix is printed; a bigger one is summed up.
const MATRIX_PRINTED: usize = 16;

fn print_matrix(matrix: &super::PingMatrix) {
    let n = matrix.nodes.len();
    if n <= MATRIX_PRINTED {
        print!("{matrix}");
        return;
    }
    let pairs = n * n.saturating_sub(1);
    let failed = matrix.failures().len();
    println!(
        "{n} endpoints: {} of {pairs} ordered pairs answered",
        pairs - failed
    );
}

/// Each container: its node, namespace and pod addresses.
fn print_containers(lab: &Lab) {
    if lab.containers().is_empty() {
        return;
    }
    println!("\n{:<16} {:<16} addresses", "container", "namespace");
    for c in lab.containers() {
        let addrs: Vec<String> = c.addrs.iter().map(ToString::to_string).collect();
        println!("{:<16} {:<16} {}", c.name, c.ns, addrs.join(", "));
    }
}

/// The error for a matrix with unanswered pairs, if it has any.
fn unreachable_pairs(lab: &Lab, matrix: &super::PingMatrix) -> Option<LabError> {
    let failures = matrix.failures();
    if failures.is_empty() {
        return None;
    }
    let n = matrix.nodes.len();
    Some(LabError::Unreachable {
        failed: failures.len(),
        pairs: n * n.saturating_sub(1),
        examples: failures.into_iter().take(5).collect(),
        logs: lab.state_dir().join("logs"),
    })
}

/// Where each node lives: namespace, tun device, underlay and overlay addresses.
fn print_nodes(lab: &Lab) {
    println!(
        "\n{:<12} {:<16} {:<10} {:<16} overlay",
        "node", "namespace", "tun", "underlay"
    );
    for n in &lab.layout().nodes {
        let overlay = lab
            .topology()
            .and_then(|t| t.node(&n.name).ok())
            .map(|t| t.overlay_addrs()[0].to_string())
            .unwrap_or_default();
        println!(
            "{:<12} {:<16} {:<10} {:<16} {overlay}",
            n.name,
            n.ns,
            n.ifname,
            n.underlay_v4.to_string()
        );
    }
}

fn status(prefix: &str) -> Result<(), LabError> {
    let lab = Lab::load(prefix)?;
    println!("lab '{prefix}' ({})", lab.state_dir().display());
    println!(
        "{:<16} {:<16} {:<10} {:<10} daemon",
        "node", "namespace", "ns", "interface"
    );
    for s in lab.status()? {
        let daemon = match (s.pid, s.alive) {
            (Some(pid), true) => format!("pid {pid} running"),
            (Some(pid), false) => format!("pid {pid} gone"),
            (None, _) => "not started".into(),
        };
        let ns = if s.ns_exists { "present" } else { "MISSING" };
        println!(
            "{:<16} {:<16} {ns:<10} {:<10} {daemon}",
            s.name,
            s.ns,
            lab.ifname(&s.name)?
        );
    }
    print_containers(&lab);
    let mut unreachable = None;
    if lab.topology().is_some() {
        let matrix = lab.ping_matrix(PING_TIMEOUT)?;
        println!();
        print_matrix(&matrix);
        unreachable = unreachable_pairs(&lab, &matrix);
    }
    lab.detach();
    unreachable.map_or(Ok(()), Err)
}
