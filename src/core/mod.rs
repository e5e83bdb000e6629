//! The sans-IO core: everything that decides, nothing that touches the kernel or reads a clock.

pub mod diff;
pub mod flush;
pub mod graph;
pub mod health;
pub mod ipam;
pub mod key;
pub mod liveness;
pub mod mss;
pub mod mtu;
pub mod node_state;
pub mod packet;
pub mod plan;
pub mod policy;
pub mod preference;
pub mod psk;
pub mod registry;
pub mod rotation;
pub mod routing;
pub mod spin;
pub mod too_big;
pub mod topology;
