//! Daemon settings, layered: built-in defaults, then a settings file, then `WIREMESH_*`
//! environment variables, then command-line flags (the `config` crate does the layering).

use crate::constants::{CNI_CONF_DIR, CNI_STATE_DIR, DEFAULT_INTERFACE, UAPI_DIR};
use crate::core::registry::addr::RegistryAddr;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything `wiremesh up` needs. File keys may be written `snake_case` or `kebab-case`;
/// environment variables are `WIREMESH_` + the upper-case snake name (`WIREMESH_PRIVATE_KEY`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Topology file describing the whole mesh; not needed with an etcd `registry`.
    #[serde(default)]
    pub topology: Option<PathBuf>,
    /// Where the mesh is described: `file:PATH` (the same as `topology`) or
    /// `etcd://HOST:PORT[,HOST:PORT...]`, where nodes join without a file (docs/registry.md).
    #[serde(default)]
    pub registry: Option<String>,
    /// The mesh's name in etcd: its keys live under `/wiremesh/<mesh>/`.
    #[serde(default = "default_mesh")]
    pub mesh: String,
    // The registry's connection and this node's record (docs/registry.md, section 2). Every
    // field is optional: a node imported with the topology already has a record, and a value
    // given here overrides that record's field.
    /// CA that signed etcd's certificate: with it the client speaks TLS.
    #[serde(default, alias = "etcd-ca")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (its CN is the etcd user when etcd checks client certificates).
    #[serde(default, alias = "etcd-cert")]
    pub etcd_cert: Option<PathBuf>,
    #[serde(default, alias = "etcd-key")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user; the password comes from `etcd-password-file` or WIREMESH_ETCD_PASSWORD, never
    /// from a flag (a command line is visible to every local user).
    #[serde(default, alias = "etcd-user")]
    pub etcd_user: Option<String>,
    #[serde(default, alias = "etcd-password-file")]
    pub etcd_password_file: Option<PathBuf>,
    #[serde(default, alias = "etcd-password")]
    pub etcd_password: Option<String>,
    /// The last good copy of the registry, started from when etcd is unreachable (default
    /// `/var/lib/wiremesh/<interface>.registry.json`).
    #[serde(default, alias = "registry-snapshot")]
    pub registry_snapshot: Option<PathBuf>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub cloud: Option<String>,
    /// This node's endpoints (`HOST:PORT`, or `HOST:PORT@SCOPE` for an address reachable only
    /// inside a scope), best first; none means behind NAT.
    #[serde(default)]
    pub endpoint: Vec<String>,
    #[serde(default)]
    pub hub: Option<bool>,
    /// `key=value` labels for the node's record.
    #[serde(default)]
    pub label: Vec<String>,
    /// This node's name in the topology.
    pub node: String,
    /// Private key file (mode 0600). Default: `keys/<node>.key`.
    #[serde(default, alias = "private-key")]
    pub private_key: Option<PathBuf>,
    /// Name of the tun device; also names the UAPI socket `<uapi_dir>/<interface>.sock`.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// Where the UAPI socket goes; `wg` looks in /var/run/wireguard.
    #[serde(default = "default_uapi_dir", alias = "uapi-dir")]
    pub uapi_dir: PathBuf,
    /// Where the node state for the CNI plugin goes: `<cni_state_dir>/<interface>/subnet.json`
    /// (docs/cni.md).
    #[serde(default = "default_cni_state_dir", alias = "cni-state-dir")]
    pub cni_state_dir: PathBuf,
    /// The runtime's CNI configuration directory: at start, the daemon frees the addresses of
    /// containers that went without a DEL in every network there whose `wiremesh-cni` reads
    /// its node state (docs/cni.md).
    #[serde(default = "default_cni_conf_dir", alias = "cni-conf-dir")]
    pub cni_conf_dir: PathBuf,
    /// DNS servers for endpoint names (`ip:port`); empty means the system's resolv.conf.
    #[serde(default, alias = "dns-servers")]
    pub dns_servers: Vec<SocketAddr>,
    /// Log filter in `tracing` syntax (`info`, `wiremesh=debug`).
    #[serde(default = "default_log")]
    pub log: String,
    /// Where to serve Prometheus metrics (`GET /metrics`); off when absent. Use a loopback
    /// address (`127.0.0.1:9586`) unless a firewall guards the port: the metrics name every
    /// peer and its public key.
    #[serde(default, alias = "metrics-listen")]
    pub metrics_listen: Option<SocketAddr>,
    /// Rotate this node's static key this often (`"24h"`, `"90m"`); off when absent.
    #[serde(default, alias = "rotate-every")]
    pub rotate_every: Option<Span>,
    /// Mesh secret file (mode 0600, at least 16 bytes): when set, each pair of nodes uses a
    /// pre-shared key derived from it, changing every hour. Every node needs the same secret.
    #[serde(default, alias = "mesh-secret")]
    pub mesh_secret: Option<PathBuf>,
    /// How long a rotated-out key stays accepted after the switch (default `"2m"`).
    #[serde(default = "default_grace", alias = "rotation-grace")]
    pub rotation_grace: Span,
    /// Give back an idle peer's session state after this much quiet even while its session
    /// keys are still valid (`"30s"`). Off by default: a peer is released once its keys have
    /// expired on both sides (3 minutes after its last handshake), which never loses a packet;
    /// an earlier release can lose the one packet that finds the session gone.
    #[serde(default, alias = "release-idle-after")]
    pub release_idle_after: Option<Span>,
    /// Real-time (`SCHED_RR`) priority of the outbound data-path thread, 1–97 (the bulk inbound
    /// one runs one above, the fast lane two above); 0 keeps them in the normal class. Without the privilege to set it the
    /// daemon logs that and runs on.
    #[serde(default = "default_realtime", alias = "realtime-priority")]
    pub realtime_priority: u8,
}

/// A duration written as a number and a unit: `"30s"`, `"2m"`, `"24h"`, `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub std::time::Duration);

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("'{s}': expected a number and a unit (30s, 2m, 24h, 7d)"))?;
        let secs = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("'{s}': the unit must be s, m, h or d")),
        };
        if n == 0 {
            return Err(format!("'{s}': must be longer than zero"));
        }
        Ok(Span(std::time::Duration::from_secs(n * secs)))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_grace() -> Span {
    Span(crate::constants::ROTATION_GRACE)
}

fn default_realtime() -> u8 {
    crate::constants::DATA_PATH_PRIORITY
}

fn default_mesh() -> String {
    "default".to_string()
}

fn default_interface() -> String {
    DEFAULT_INTERFACE.to_string()
}
fn default_uapi_dir() -> PathBuf {
    PathBuf::from(UAPI_DIR)
}
fn default_cni_state_dir() -> PathBuf {
    PathBuf::from(CNI_STATE_DIR)
}
fn default_cni_conf_dir() -> PathBuf {
    PathBuf::from(CNI_CONF_DIR)
}
fn default_log() -> String {
    "info".to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Config(#[from] config::ConfigError),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{}: '{key}' is given twice (once with '-', once with '_')", path.display())]
    Duplicate { path: PathBuf, key: String },
    #[error("settings: interface name '{0}' must be 1-15 characters without '/' or spaces")]
    Interface(String),
    #[error("settings: realtime-priority {0} is out of range: 0 (off) or 1-97")]
    Priority(u8),
    #[error(
        "settings: no topology: give --topology FILE, or --registry file:PATH or etcd://HOST:PORT"
    )]
    NoTopology,
    #[error("settings: {0}")]
    Registry(#[from] crate::core::registry::addr::AddrError),
    #[error("settings: topology {} and registry {} disagree; give one", .topology.display(), .registry)]
    TwoSources { topology: PathBuf, registry: String },
}

/// Command-line values that override every other layer when given.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub topology: Option<PathBuf>,
    pub node: Option<String>,
    pub private_key: Option<PathBuf>,
    pub interface: Option<String>,
    pub uapi_dir: Option<PathBuf>,
    pub cni_state_dir: Option<PathBuf>,
    pub cni_conf_dir: Option<PathBuf>,
    pub log: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub registry: Option<String>,
    pub mesh: Option<String>,
    pub registry_snapshot: Option<PathBuf>,
    pub region: Option<String>,
    pub cloud: Option<String>,
    pub endpoint: Vec<String>,
    pub hub: bool,
    pub label: Vec<String>,
    pub etcd_ca: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    pub etcd_user: Option<String>,
    pub etcd_password_file: Option<PathBuf>,
}

/// The settings file with every top-level key in `snake_case`. The `config` crate matches keys
/// literally, so a file's `private-key` and a flag's `private_key` would otherwise be two fields
/// and serde would refuse them as duplicates instead of letting the flag win.
fn snake_case_keys(path: &Path) -> Result<String, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| SettingsError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = toml::Table::new();
    for (k, v) in table {
        let key = k.replace('-', "_");
        if out.insert(key.clone(), v).is_some() {
            return Err(SettingsError::Duplicate {
                path: path.to_path_buf(),
                key,
            });
        }
    }
    Ok(out.to_string())
}

impl Settings {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, SettingsError> {
        let mut b = config::Config::builder();
        if let Some(f) = file {
            let text = snake_case_keys(f)?;
            b = b.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        b = b.add_source(
            config::Environment::with_prefix("WIREMESH")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("dns_servers")
                .with_list_parse_key("endpoint")
                .with_list_parse_key("label"),
        );
        let set = |b: config::ConfigBuilder<_>, k: &str, v: Option<String>| match v {
            Some(v) => b.set_override(k, v),
            None => Ok(b),
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        b = set(b, "topology", path(&overrides.topology))?;
        b = set(b, "node", overrides.node.clone())?;
        b = set(b, "private_key", path(&overrides.private_key))?;
        b = set(b, "interface", overrides.interface.clone())?;
        b = set(b, "uapi_dir", path(&overrides.uapi_dir))?;
        b = set(b, "cni_state_dir", path(&overrides.cni_state_dir))?;
        b = set(b, "cni_conf_dir", path(&overrides.cni_conf_dir))?;
        b = set(b, "log", overrides.log.clone())?;
        b = set(
            b,
            "metrics_listen",
            overrides.metrics_listen.map(|a| a.to_string()),
        )?;
        b = set(b, "registry", overrides.registry.clone())?;
        b = set(b, "mesh", overrides.mesh.clone())?;
        b = set(b, "registry_snapshot", path(&overrides.registry_snapshot))?;
        b = set(b, "region", overrides.region.clone())?;
        b = set(b, "cloud", overrides.cloud.clone())?;
        b = set(b, "etcd_ca", path(&overrides.etcd_ca))?;
        b = set(b, "etcd_cert", path(&overrides.etcd_cert))?;
        b = set(b, "etcd_key", path(&overrides.etcd_key))?;
        b = set(b, "etcd_user", overrides.etcd_user.clone())?;
        b = set(b, "etcd_password_file", path(&overrides.etcd_password_file))?;
        if overrides.hub {
            b = b.set_override("hub", true)?;
        }
        if !overrides.endpoint.is_empty() {
            b = b.set_override("endpoint", overrides.endpoint.clone())?;
        }
        if !overrides.label.is_empty() {
            b = b.set_override("label", overrides.label.clone())?;
        }
        let s: Settings = b.build()?.try_deserialize()?;
        let bad_if = s.interface.is_empty()
            || s.interface.len() > 15
            || s.interface.contains(['/', ' ', '\0']);
        if bad_if {
            return Err(SettingsError::Interface(s.interface));
        }
        if s.realtime_priority > 97 {
            return Err(SettingsError::Priority(s.realtime_priority));
        }
        Ok(s)
    }

    /// Where the topology comes from: the registry setting, else the topology file.
    pub fn source(&self) -> Result<RegistryAddr, SettingsError> {
        match (&self.registry, &self.topology) {
            (Some(r), topology) => {
                let addr = RegistryAddr::parse(r)?;
                match (&addr, topology) {
                    (RegistryAddr::File(a), Some(t)) if a != t => Err(SettingsError::TwoSources {
                        topology: t.clone(),
                        registry: r.clone(),
                    }),
                    _ => Ok(addr),
                }
            }
            (None, Some(t)) => Ok(RegistryAddr::File(t.clone())),
            (None, None) => Err(SettingsError::NoTopology),
        }
    }

    /// Where the registry snapshot goes.
    pub fn registry_snapshot_path(&self) -> PathBuf {
        self.registry_snapshot.clone().unwrap_or_else(|| {
            PathBuf::from(crate::constants::REGISTRY_SNAPSHOT_DIR)
                .join(format!("{}.registry.json", self.interface))
        })
    }

    pub fn private_key_path(&self) -> PathBuf {
        self.private_key
            .clone()
            .unwrap_or_else(|| PathBuf::from("keys").join(format!("{}.key", self.node)))
    }

    /// The wiremesh control socket: beside the UAPI directory, named after the interface.
    pub fn control_socket(&self) -> PathBuf {
        crate::io::control_socket::socket_path(&self.interface)
    }

    pub fn uapi_socket(&self) -> PathBuf {
        self.uapi_dir.join(format!("{}.sock", self.interface))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("wiremesh.toml");
        std::fs::write(
            &f,
            "topology = \"/etc/t.toml\"\nnode = \"a\"\ninterface = \"wm7\"\nprivate-key = \"/k\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(s.interface, "wm7");
        assert_eq!(s.private_key_path(), PathBuf::from("/k"));
        assert_eq!(
            s.uapi_socket(),
            PathBuf::from("/var/run/wireguard/wm7.sock")
        );
        let o = Overrides {
            interface: Some("wm9".into()),
            ..Default::default()
        };
        assert_eq!(Settings::load(Some(&f), &o).unwrap().interface, "wm9");
    }

    #[test]
    fn the_cni_state_dir_defaults_to_run_wiremesh_and_is_layered_like_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.toml");
        std::fs::write(&f, "topology = \"t\"\nnode = \"a\"\n").unwrap();
        let dir_of = |o: &Overrides| Settings::load(Some(&f), o).unwrap().cni_state_dir;
        assert_eq!(
            dir_of(&Overrides::default()),
            PathBuf::from("/run/wiremesh")
        );
        std::fs::write(
            &f,
            "topology = \"t\"\nnode = \"a\"\ncni-state-dir = \"/f\"\n",
        )
        .unwrap();
        assert_eq!(dir_of(&Overrides::default()), PathBuf::from("/f"));
        let o = Overrides {
            cni_state_dir: Some("/flag".into()),
            ..Default::default()
        };
        assert_eq!(dir_of(&o), PathBuf::from("/flag"));
    }

    #[test]
    fn metrics_are_off_by_default_and_flags_beat_kebab_case_file_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.toml");
        std::fs::write(&f, "topology = \"t\"\nnode = \"a\"\n").unwrap();
        assert_eq!(
            Settings::load(Some(&f), &Overrides::default())
                .unwrap()
                .metrics_listen,
            None
        );
        std::fs::write(
            &f,
            "topology = \"t\"\nnode = \"a\"\nmetrics-listen = \"127.0.0.1:9586\"\nprivate-key = \"/f\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9586".parse().unwrap()));
        let o = Overrides {
            private_key: Some("/flag.key".into()),
            metrics_listen: Some("[::1]:9999".parse().unwrap()),
            ..Default::default()
        };
        let s = Settings::load(Some(&f), &o).unwrap();
        assert_eq!(s.metrics_listen, Some("[::1]:9999".parse().unwrap()));
        assert_eq!(s.private_key_path(), PathBuf::from("/flag.key"));
    }

    #[test]
    fn an_unknown_settings_key_and_a_bad_interface_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.toml");
        std::fs::write(&f, "topology = \"t\"\nnode = \"a\"\nintreface = \"x\"\n").unwrap();
        assert!(Settings::load(Some(&f), &Overrides::default())
            .unwrap_err()
            .to_string()
            .contains("intreface"));
        let o = Overrides {
            topology: Some("t".into()),
            node: Some("a".into()),
            interface: Some("much-too-long-name".into()),
            ..Default::default()
        };
        assert!(matches!(
            Settings::load(None, &o),
            Err(SettingsError::Interface(_))
        ));
    }

    #[test]
    fn rotation_is_off_by_default_and_spans_take_a_unit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.toml");
        std::fs::write(&f, "topology = \"t\"\nnode = \"a\"\n").unwrap();
        let s = Settings::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(s.rotate_every, None);
        assert_eq!(s.rotation_grace.0, crate::constants::ROTATION_GRACE);
        std::fs::write(
            &f,
            "topology = \"t\"\nnode = \"a\"\nrotate-every = \"24h\"\nrotation_grace = \"30s\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(
            s.rotate_every,
            Some(Span(std::time::Duration::from_secs(86_400)))
        );
        assert_eq!(s.rotation_grace, Span(std::time::Duration::from_secs(30)));
        for bad in ["", "10", "5x", "0s", "m"] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_data_path_is_real_time_by_default_and_a_bad_priority_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.toml");
        let load = |extra: &str| {
            std::fs::write(&f, format!("topology = \"t\"\nnode = \"a\"\n{extra}")).unwrap();
            Settings::load(Some(&f), &Overrides::default())
        };
        let priority = |extra: &str| load(extra).unwrap().realtime_priority;
        assert_eq!(priority(""), crate::constants::DATA_PATH_PRIORITY);
        assert_eq!(priority("realtime-priority = 0\n"), 0);
        assert_eq!(priority("realtime-priority = 97\n"), 97);
        let e = load("realtime-priority = 98\n").unwrap_err();
        assert!(e.to_string().contains("realtime-priority 98"), "{e}");
        let e = load("realtime-priority = 300\n").unwrap_err();
        assert!(e.to_string().contains("realtime_priority"), "{e}");
    }
}
