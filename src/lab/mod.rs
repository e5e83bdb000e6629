//! Builds a whole mesh on this one machine in network namespaces: the README's demo, the
//! integration-test harness and the benchmark bed in one.
//!
//! ```text
//!                       ┌──────────────────────── P-core ────────────────────────┐
//!                       │  ip_forward=1, IPv6 forwarding=1 (routes between regions) │
//!                       │                                                          │
//!                       │   br1 172.31.1.1/24        br2 172.31.2.1/24      ...    │
//!                       │       fd31:1::1/64             fd31:2::1/64              │
//!                       │   mtu = region 1's          mtu = region 2's             │
//!                       │   underlay-mtu              underlay-mtu                 │
//!                       │    │          │               │                          │
//!                       │  P0v        P1v             P2v      (veth, core side)   │
//!                       └────┼──────────┼───────────────┼──────────────────────────┘
//!                            │          │               │
//!              ┌─── P-a ─────┴──┐ ┌─ P-b ┴─────────┐ ┌─ P-c ┴─────────┐
//!              │ eth0           │ │ eth0           │ │ eth0           │
//!              │ 172.31.1.10/24 │ │ 172.31.1.11/24 │ │ 172.31.2.10/24 │
//!              │ fd31:1::a/64   │ │ fd31:1::b/64   │ │ fd31:2::a/64   │
//!              │ default via .1 │ │ default via .1 │ │ default via .1 │
//!              │                │ │                │ │                │
//!              │ wiremesh up    │ │ wiremesh up    │ │ wiremesh up    │
//!              │  tun P0        │ │  tun P1        │ │  tun P2        │
//!              │  pod 10.244.x  │ │  pod 10.244.y  │ │  pod 10.244.z  │
//!              └────────────────┘ └────────────────┘ └────────────────┘
//! ```
//!
//! `P` is a short prefix unique per lab (`wml` for the CLI, `t<pid><n>` in tests). Regions are
//! numbered in sorted order from 1; nodes in file order from 0. Node namespaces are `P-<node>`,
//! or `P-n<index>` when the node's name is long or unusual. Tun names (`P<index>`) are unique
//! across namespaces because the UAPI directory `/var/run/wireguard` is shared by all of them.
//!
//! Size: a 64-node lab builds in about a second (one `ip -batch` per namespace) and its
//! all-pairs matrix takes one prober thread per node. The limit to mind is the kernel's ARP
//! table, which all namespaces share (`gc_thresh3`, 1024 entries by default): a node keeps an
//! entry for every node of its region (they share a bridge), so a big lab wants many small
//! regions (`topologies/full-64.toml`: 16 regions of 4), or it starves every lab on the machine.
//! Topology nodes left out of [`LabOptions::nodes`] get no namespace at all: their endpoints are
//! in the core's void subnets (local, with an nftables drop), where nothing answers.
//!
//! A topology may ask for more (docs/topology.md, "Lab-only settings"): a region's VPC, a second
//! bridge `vpc<R>` without any address joining its nodes' `eth1` at `172.28.R.H` ([`vpc`]); a
//! node behind NAT, whose `eth0` then leads to a router namespace `P-r<index>` holding the
//! node's underlay address, the node itself at `192.168.1.2` behind it ([`nat`]).
//!
//! Everything is recorded under `/run/wiremesh-lab/P/` (see [`state`]), so `wiremesh lab down`
//! from another process removes exactly what a lab created, even one that was half built.

mod attach;
mod cli;
pub mod containers;
mod daemons;
mod echo;
pub mod etcd;
mod flood;
mod harness;
mod join;
mod layout;
mod links;
mod nat;
mod netns;
mod network;
mod ping;
mod reach;
mod registry;
pub mod state;
mod transfer;
mod vpc;

use std::path::PathBuf;

pub use cli::{run, LabArgs, LabCommand};
pub use containers::{Attached, Container};
pub use daemons::{Signal, READY_TIMEOUT};
pub use echo::{echo_server, echo_stream, EchoStats};
pub use flood::{flood_packets, send_flood, FloodKind, FloodSent};
pub use harness::{Lab, LabOptions, NodeStatus};
pub use join::JoinOptions;
pub use layout::{
    check_prefix, Layout, NodeLayout, NodeNat, NodeVpc, RegionLayout, RegionVpc, MAX_ABSENT,
    MAX_PREFIX, NAT_NODE_V4,
};
pub use links::LinkLimit;
pub use nat::{UDP_STREAM_TIMEOUT, UDP_TIMEOUT};
pub use netns::in_netns;
pub use ping::{ping_in_ns, PingMatrix};
pub use reach::{probe_all, Reached};
pub use registry::{LabRegistry, MAX_MEMBERS};
pub use transfer::{tcp_transfer, tcp_transfer_paced, Transfer};

/// Prefix of the lab the CLI builds when none is given.
pub const DEFAULT_PREFIX: &str = "wml";

/// Errors of the lab harness.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command (`ip`, `sysctl`, ...) exited non-zero or could not be started.
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    /// The prefix cannot produce valid namespace and interface names.
    #[error("bad lab prefix '{prefix}': {reason}")]
    Prefix { prefix: String, reason: String },
    /// The topology does not fit the lab's address plan.
    #[error("topology does not fit the lab: {0}")]
    Layout(String),
    /// A lab with this prefix already exists.
    #[error("a lab with prefix '{prefix}' already exists; run `wiremesh lab down --prefix {prefix}` first")]
    Exists { prefix: String },
    /// No lab with this prefix is recorded.
    #[error("no lab with prefix '{prefix}' (no {})", state.display())]
    NotFound { prefix: String, state: PathBuf },
    #[error(transparent)]
    Topology(#[from] crate::core::topology::TopologyError),
    #[error(transparent)]
    KeyFile(#[from] crate::io::keyfile::KeyFileError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    State { path: PathBuf, message: String },
    #[error("unknown node '{0}' in this lab")]
    UnknownNode(String),
    /// A daemon did not come up, or exited; carries the end of its log.
    #[error("daemon of node '{node}' {what}; last log lines:\n{log_tail}")]
    Daemon {
        node: String,
        what: String,
        log_tail: String,
    },
    /// A container's plugin chain (ADD or DEL) failed, or its node state never appeared.
    #[error("container {container}: {message}")]
    Cni { container: String, message: String },
    #[error("ping from namespace {ns}: {message}")]
    Ping { ns: String, message: String },
    /// The mesh is up but some ordered pairs got no reply: a lab that prints a failure fails.
    #[error(
        "{failed} of {pairs} pairs got no reply ({}); the lab is left running for inspection, logs are in {}",
        list_pairs(.examples, *.failed),
        logs.display()
    )]
    Unreachable {
        failed: usize,
        pairs: usize,
        /// The first few failed pairs, as (from, to).
        examples: Vec<(String, String)>,
        logs: PathBuf,
    },
}

fn list_pairs(pairs: &[(String, String)], failed: usize) -> String {
    let mut s: Vec<String> = pairs.iter().map(|(a, b)| format!("{a} → {b}")).collect();
    if failed > s.len() {
        s.push("…".into());
    }
    s.join(", ")
}

/// Shorthand for turning an `io::Error` into [`LabError::Io`] naming the path.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.into();
    move |source| LabError::Io { path, source }
}
