//! The `wiremesh` command line. Each subcommand lives in its own file; this one only dispatches.
//! `anyhow` is used here and nowhere below: this is the binary's edge.

mod check;
mod cni;
mod graph;
mod ipam;
mod keygen;
mod plan;
mod policy;
mod registry;
mod registry_args;
mod registry_grant;
mod registry_policy;
mod rotate;
mod status;
mod up;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "wiremesh",
    version,
    about = "WireGuard mesh across clouds, regions and on-prem sites"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a key pair: the private key file (mode 0600) and its public key.
    Keygen(keygen::KeygenArgs),
    /// Show what a node would configure: peers, AllowedIPs, endpoints, routes.
    Plan(plan::PlanArgs),
    /// Run the daemon for one node: tun device, routes, WireGuard sessions.
    Up(Box<up::UpArgs>),
    /// Show each node's pod CIDRs and whether they are pinned; `--write` pins them all.
    Ipam(ipam::IpamArgs),
    /// Build a mesh on this machine in network namespaces (demo, tests, benchmarks).
    Lab(crate::lab::LabArgs),
    /// Show each running daemon's peers: endpoint, latest handshake, transfer, allowed IPs.
    Status(status::StatusArgs),
    /// Draw the mesh as Graphviz DOT or SVG: clouds, regions, hubs and peerings.
    Graph(graph::GraphArgs),
    /// Check this node's peers: fresh handshake, echo, a full-MTU packet with DF, RTT.
    Check(check::CheckArgs),
    /// Rotate a running daemon's static key without dropping a packet; prints the new key.
    Rotate(rotate::RotateArgs),
    /// Containers: `cni install` writes the CNI conflist and places the wiremesh-cni plugin.
    Cni(cni::CniArgs),
    /// The etcd registry: import, export, status, remove, gc, grant (docs/registry.md).
    Registry(registry::RegistryCmdArgs),
    /// Network policy: `explain` one packet's decision, `check` the rules (docs/policy.md).
    Policy(policy::PolicyArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Up(a) => up::run(*a),
        Command::Ipam(a) => ipam::run(a),
        Command::Lab(a) => crate::lab::run(a).map_err(anyhow::Error::from),
        Command::Status(a) => status::run(a),
        Command::Graph(a) => graph::run(a),
        Command::Check(a) => check::run(a),
        Command::Rotate(a) => rotate::run(a),
        Command::Cni(a) => cni::run(a),
        Command::Registry(a) => registry::run(a),
        Command::Policy(a) => policy::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wiremesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}
