//! Thin drivers that touch the kernel. Each decides nothing; the core and the engine decide.

pub mod keyfile;
pub mod topology_file;
