//! The `registry` setting: `file:PATH` (today's topology file, the default) or
//! `etcd://HOST:PORT[,HOST:PORT...]`. Parsed here so every command reports a bad address in the
//! same words, naming the setting.

use crate::core::topology::shown;
use std::path::PathBuf;

/// Where the mesh's description lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAddr {
    File(PathBuf),
    /// Members as `HOST:PORT`, in the order given.
    Etcd(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error(
        "registry '{}': expected file:PATH or etcd://HOST:PORT[,HOST:PORT...]",
        shown(.0)
    )]
    Scheme(String),
    #[error("registry '{}': member '{}' is not HOST:PORT", shown(.0), shown(.1))]
    Member(String, String),
    #[error("registry '{}': file: needs a path", shown(.0))]
    NoPath(String),
}

impl RegistryAddr {
    pub fn parse(text: &str) -> Result<Self, AddrError> {
        let t = text.trim();
        if let Some(path) = t.strip_prefix("file:") {
            if path.is_empty() {
                return Err(AddrError::NoPath(text.into()));
            }
            return Ok(RegistryAddr::File(PathBuf::from(path)));
        }
        let Some(members) = t.strip_prefix("etcd://") else {
            return Err(AddrError::Scheme(text.into()));
        };
        let members: Vec<String> = members
            .trim_end_matches('/')
            .split(',')
            .map(|m| m.trim().to_string())
            .collect();
        for m in &members {
            if !valid_member(m) {
                return Err(AddrError::Member(text.into(), m.clone()));
            }
        }
        Ok(RegistryAddr::Etcd(members))
    }

    /// The address as given back in messages and the snapshot file.
    pub fn shown(&self) -> String {
        match self {
            RegistryAddr::File(p) => format!("file:{}", p.display()),
            RegistryAddr::Etcd(m) => format!("etcd://{}", m.join(",")),
        }
    }
}

/// `HOST:PORT` with a port 1-65535 and a host of name characters, or `[IPv6]:PORT`.
fn valid_member(m: &str) -> bool {
    let Some((host, port)) = m.rsplit_once(':') else {
        return false;
    };
    let port_ok = matches!(port.parse::<u16>(), Ok(p) if p > 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_and_print_back() {
        let e =
            RegistryAddr::parse("etcd://10.0.0.1:2379,etcd-2.example:2379,[fd00::1]:2379").unwrap();
        assert_eq!(
            e,
            RegistryAddr::Etcd(vec![
                "10.0.0.1:2379".into(),
                "etcd-2.example:2379".into(),
                "[fd00::1]:2379".into()
            ])
        );
        assert_eq!(
            e.shown(),
            "etcd://10.0.0.1:2379,etcd-2.example:2379,[fd00::1]:2379"
        );
        assert_eq!(
            RegistryAddr::parse("file:/etc/wiremesh/mesh.toml").unwrap(),
            RegistryAddr::File("/etc/wiremesh/mesh.toml".into())
        );
    }

    #[test]
    fn bad_addresses_are_refused_naming_what_is_wrong() {
        for (bad, says) in [
            ("http://10.0.0.1:2379", "expected file:PATH"),
            ("etcd://", "member '' is not HOST:PORT"),
            ("etcd://10.0.0.1", "member '10.0.0.1' is not HOST:PORT"),
            ("etcd://10.0.0.1:0", "is not HOST:PORT"),
            ("etcd://a:1,,b:2", "member '' is not"),
            ("etcd://ho st:1", "is not HOST:PORT"),
            ("file:", "file: needs a path"),
        ] {
            let err = RegistryAddr::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
