//! The flags that say where the registry is and how to log in: shared by `up` and every
//! `registry` subcommand, so both spell them the same. The password is never a flag.

use std::path::PathBuf;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Where the mesh is described: file:PATH, or etcd://HOST:PORT[,HOST:PORT...]
    /// (or `registry` in the settings file, or WIREMESH_REGISTRY).
    #[arg(long, global = true, value_name = "URL")]
    pub registry: Option<String>,
    /// The mesh's name in etcd: its keys live under /wiremesh/<MESH>/ (default "default").
    #[arg(long, global = true)]
    pub mesh: Option<String>,
    /// CA certificate (PEM) that signed etcd's: with it the client speaks TLS.
    #[arg(long, global = true, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd.
    #[arg(long, global = true, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd.
    #[arg(long, global = true, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user; the password is read from --etcd-password-file or WIREMESH_ETCD_PASSWORD.
    #[arg(long, global = true)]
    pub etcd_user: Option<String>,
    #[arg(long, global = true, value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
}
