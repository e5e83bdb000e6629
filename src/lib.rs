//! wiremesh: a userspace WireGuard mesh across clouds, regions and on-prem sites.
//!
//! The crate is split the way the data flows:
//! - [`core`] decides: topology, IPAM, planning, routing. It opens no socket and reads no clock.
//! - [`engine`] moves packets between the tun device and UDP through one `boringtun` `Tunn` per peer.
//! - [`io`] holds the thin drivers that touch the kernel (tun, UDP, netlink, DNS, UAPI, key files).
//! - [`daemon`] wires a plan to the engine and the drivers, and reacts to signals.
//! - [`lab`] builds a whole mesh on one machine in network namespaces.
//! - [`cli`] is the `wiremesh` command line.

pub mod cli;
pub mod cni;
pub mod constants;
pub mod core;
pub mod daemon;
pub mod engine;
pub mod io;
pub mod lab;
#[doc(hidden)]
pub mod testing;
