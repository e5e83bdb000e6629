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
//! Everything is recorded under `/run/wiremesh-lab/P/` (see [`state`]), so `wiremesh lab down`
//! from another process removes exactly what a lab created, even one that was half built.

mod cli;
mod daemons;
mod error;
mod harness;
mod layout;
mod netns;
mod network;
mod ping;
pub mod state;

pub use cli::{run, LabArgs, LabCommand};
pub use daemons::{Signal, READY_TIMEOUT};
pub use error::LabError;
pub use harness::{Lab, LabOptions, NodeStatus};
pub use layout::{check_prefix, Layout, NodeLayout, RegionLayout, MAX_PREFIX};
pub use ping::{ping_in_ns, PingMatrix};

/// Prefix of the lab the CLI builds when none is given.
pub const DEFAULT_PREFIX: &str = "wml";
