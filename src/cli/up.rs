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
