//! The registry's settings, checked once at start: the etcd connection (members, TLS files,
//! user and password), the mesh's key layout, this node's own fields, the snapshot file.

use super::RegistryError;
use crate::core::registry::keys::Layout;
use crate::core::registry::own::OwnFields;
use crate::daemon::settings::Settings;
use crate::io::etcd::{EtcdConfig, TlsFiles};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `etcd://…`, for messages and the snapshot file.
    pub shown: String,
    pub etcd: EtcdConfig,
    pub layout: Layout,
    pub node: String,
    pub own: OwnFields,
    pub snapshot: PathBuf,
}

impl RegistryConfig {
    /// The configuration for `members` from the daemon's settings.
    pub fn from_settings(s: &Settings, members: Vec<String>) -> Result<Self, RegistryError> {
        let etcd = etcd_config(
            members,
            s.etcd_ca.clone(),
            s.etcd_cert.clone(),
            s.etcd_key.clone(),
            s.etcd_user.clone(),
            password(s)?,
        )?;
        Ok(RegistryConfig {
            shown: format!("etcd://{}", etcd.shown()),
            etcd,
            layout: Layout::new(&s.mesh)?,
            node: s.node.clone(),
            own: OwnFields {
                region: s.region.clone(),
                cloud: s.cloud.clone(),
                endpoints: s.endpoint.clone(),
                hub: s.hub,
                labels: s.label.clone(),
                listen_port: None,
            },
            snapshot: s.registry_snapshot_path(),
        })
    }
}

/// The password: `etcd-password-file` (trailing newline dropped), else `etcd-password`
/// (WIREMESH_ETCD_PASSWORD).
fn password(s: &Settings) -> Result<Option<String>, RegistryError> {
    if let Some(path) = &s.etcd_password_file {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Password {
            path: path.clone(),
            source,
        })?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
    }
    Ok(s.etcd_password.clone())
}

/// An etcd client configuration from its parts; shared by the daemon and `wiremesh registry`.
pub fn etcd_config(
    members: Vec<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    user: Option<String>,
    password: Option<String>,
) -> Result<EtcdConfig, RegistryError> {
    let tls = match (ca, cert.is_some() || key.is_some()) {
        (Some(ca), _) => Some(TlsFiles { ca, cert, key }),
        (None, true) => return Err(RegistryError::CertWithoutCa),
        (None, false) => None,
    };
    let user = match (user, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (Some(_), None) => return Err(RegistryError::NoPassword),
        (None, _) => None,
    };
    Ok(EtcdConfig {
        endpoints: members,
        tls,
        user,
    })
}
