//! `wiremesh up`: run the daemon for one node in the foreground (systemd, the lab, a terminal).

use crate::daemon::settings::{Overrides, Settings};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Topology file (or `topology` in the settings file, or WIREMESH_TOPOLOGY).
    #[arg(long, short)]
    pub topology: Option<PathBuf>,
    /// This node's name (or WIREMESH_NODE).
    #[arg(long, short)]
    pub node: Option<String>,
    /// Private key file, mode 0600 (default keys/<node>.key).
    #[arg(long)]
    pub private_key: Option<PathBuf>,
    /// Tun device name (default wm0).
    #[arg(long, short)]
    pub interface: Option<String>,
    /// Directory for the UAPI socket (default /var/run/wireguard).
    #[arg(long)]
    pub uapi_dir: Option<PathBuf>,
    /// Directory of the node state for the CNI plugin, `<DIR>/<interface>/subnet.json`
    /// (default /run/wiremesh).
    #[arg(long, value_name = "DIR")]
    pub cni_state_dir: Option<PathBuf>,
    /// The runtime's CNI configuration directory, where the daemon looks at start for its own
    /// networks to free the addresses of containers gone without a DEL (default /etc/cni/net.d).
    #[arg(long, value_name = "DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// Settings file (TOML); flags and WIREMESH_* variables override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `wiremesh=debug`.
    #[arg(long)]
    pub log: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9586 (default: off;
    /// or `metrics-listen` in the settings file, or WIREMESH_METRICS_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
    /// With an etcd registry: this node's region, for its record (needed at a first join).
    #[arg(long)]
    pub region: Option<String>,
    /// With an etcd registry: this node's cloud or site (needed at a first join).
    #[arg(long)]
    pub cloud: Option<String>,
    /// With an etcd registry: an endpoint HOST:PORT peers reach this node at (repeatable,
    /// best first; none means behind NAT). HOST:PORT@SCOPE is reachable only inside SCOPE (a
    /// VPC, e.g. 10.0.1.5:51820@aws:vpc-1): peers in the same scope use it, others the first
    /// endpoint without scope (docs/registry.md, section 1).
    #[arg(long, value_name = "HOST:PORT[@SCOPE]")]
    pub endpoint: Vec<String>,
    /// With an etcd registry: this node is a hub of its region.
    #[arg(long)]
    pub hub: bool,
    /// With an etcd registry: a label key=value for the node's record (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// With an etcd registry: where the last good copy of the registry is kept, to start from
    /// while etcd is unreachable (default /var/lib/wiremesh/<interface>.registry.json).
    #[arg(long, value_name = "FILE")]
    pub registry_snapshot: Option<PathBuf>,
}

pub fn run(a: UpArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        topology: a.topology,
        node: a.node,
        private_key: a.private_key,
        interface: a.interface,
        uapi_dir: a.uapi_dir,
        cni_state_dir: a.cni_state_dir,
        cni_conf_dir: a.cni_conf_dir,
        log: a.log,
        metrics_listen: a.metrics_listen,
        registry: a.registry.registry,
        mesh: a.registry.mesh,
        registry_snapshot: a.registry_snapshot,
        region: a.region,
        cloud: a.cloud,
        endpoint: a.endpoint,
        hub: a.hub,
        label: a.label,
        etcd_ca: a.registry.etcd_ca,
        etcd_cert: a.registry.etcd_cert,
        etcd_key: a.registry.etcd_key,
        etcd_user: a.registry.etcd_user,
        etcd_password_file: a.registry.etcd_password_file,
    };
    let settings = Settings::load(a.config.as_deref(), &overrides)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&settings.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    crate::daemon::run_blocking(settings)?;
    Ok(())
}
