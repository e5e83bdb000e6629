//! Thin drivers that touch the kernel. Each decides nothing; the core and the engine decide.

pub mod atomic_file;
pub mod control_socket;
pub mod dns;
pub mod etcd;
pub mod icmp_echo;
pub mod keyfile;
pub mod lanes;
pub mod memory;
pub mod metrics;
pub mod netlink;
pub mod node_state_file;
pub mod policy_status;
pub mod private_socket;
pub mod ready;
pub mod registry_snapshot;
pub mod sched;
pub mod topology_file;
pub mod tun;
pub mod tun_lanes;
pub mod uapi;
pub mod udp;
