//! Thin drivers that touch the kernel. Each decides nothing; the core and the engine decide.

pub mod dns;
pub mod keyfile;
pub mod netlink;
pub mod tun;
pub mod uapi;
pub mod udp;
