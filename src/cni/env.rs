//! The `CNI_*` environment of one invocation, checked per command as the spec requires. It is
//! read from a list of pairs rather than the process so tests need not mutate the environment.

use super::error::CniError;
use super::spec::{is_valid_identifier, Command};
use std::collections::HashMap;
use std::path::PathBuf;

/// What the runtime told us about this invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    /// `CNI_CONTAINERID`; required for ADD, DEL, CHECK.
    pub container_id: Option<String>,
    /// `CNI_NETNS`; required for ADD and CHECK, optional for DEL (the netns may be gone).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`; required for ADD, DEL, CHECK.
    pub ifname: Option<String>,
    /// `CNI_PATH`: where delegates are searched, in order.
    pub cni_path: Option<String>,
}

impl Invocation {
    /// Reads and checks the variables `command` needs; the error names the first missing or
    /// invalid one (code 4).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, CniError> {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("CNI_"))
            .collect();
        let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
        let raw = get("CNI_COMMAND").ok_or(CniError::Environment {
            var: "CNI_COMMAND",
            problem: "missing".into(),
        })?;
        let command = Command::parse(&raw).ok_or_else(|| CniError::Environment {
            var: "CNI_COMMAND",
            problem: format!("unknown command {raw:?}"),
        })?;
        let inv = Invocation {
            command,
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS").map(PathBuf::from),
            ifname: get("CNI_IFNAME"),
            cni_path: get("CNI_PATH"),
        };
        inv.check()?;
        Ok(inv)
    }

    fn check(&self) -> Result<(), CniError> {
        let attachment = matches!(self.command, Command::Add | Command::Del | Command::Check);
        if attachment {
            let id = self
                .container_id
                .as_deref()
                .ok_or(missing("CNI_CONTAINERID"))?;
            if !is_valid_identifier(id) {
                return Err(CniError::Environment {
                    var: "CNI_CONTAINERID",
                    problem: format!("{id:?} is not an alphanumeric followed by [A-Za-z0-9_.-]"),
                });
            }
            let ifname = self.ifname.as_deref().ok_or(missing("CNI_IFNAME"))?;
            if ifname.len() > 15
                || ifname.contains(['/', ':'])
                || ifname.contains(char::is_whitespace)
            {
                return Err(CniError::Environment {
                    var: "CNI_IFNAME",
                    problem: format!("{ifname:?} is not a valid interface name"),
                });
            }
        }
        if matches!(self.command, Command::Add | Command::Check) && self.netns.is_none() {
            return Err(missing("CNI_NETNS"));
        }
        if attachment || self.command == Command::Gc {
            self.cni_path.as_ref().ok_or(missing("CNI_PATH"))?;
        }
        Ok(())
    }

    /// The container ID of an attachment command (checked present by `from_vars`).
    pub fn container_id(&self) -> &str {
        self.container_id.as_deref().unwrap_or_default()
    }

    /// The interface name of an attachment command (checked present by `from_vars`).
    pub fn ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or_default()
    }
}

fn missing(var: &'static str) -> CniError {
    CniError::Environment {
        var,
        problem: "missing or empty".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];

    fn error_without(var: &str) -> String {
        let v: Vec<_> = ADD.iter().filter(|(k, _)| *k != var).copied().collect();
        let e = Invocation::from_vars(vars(&v)).unwrap_err();
        assert_eq!(e.code(), 4);
        e.to_string()
    }

    #[test]
    fn add_names_each_missing_variable() {
        for var in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_PATH",
        ] {
            assert!(error_without(var).contains(var), "{var}");
        }
    }

    #[test]
    fn del_needs_no_netns_and_version_needs_nothing_but_the_command() {
        let del: Vec<_> = ADD
            .iter()
            .map(|&(k, v)| {
                if k == "CNI_COMMAND" {
                    (k, "DEL")
                } else {
                    (k, v)
                }
            })
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        assert_eq!(
            Invocation::from_vars(vars(&del)).unwrap().command,
            Command::Del
        );
        let version = Invocation::from_vars(vars(&[("CNI_COMMAND", "VERSION")])).unwrap();
        assert_eq!(version.command, Command::Version);
    }

    #[test]
    fn a_container_id_that_could_escape_a_directory_is_refused() {
        let v: Vec<_> = ADD
            .iter()
            .map(|&(k, v)| {
                if k == "CNI_CONTAINERID" {
                    (k, "../x")
                } else {
                    (k, v)
                }
            })
            .collect();
        let e = Invocation::from_vars(vars(&v)).unwrap_err();
        assert!(e.to_string().contains("CNI_CONTAINERID"), "{e}");
    }
}
