//! Running a delegate plugin (`bridge`, which runs `host-local`) the way a runtime runs us: found
//! in `CNI_PATH`, the command and attachment in `CNI_*` variables, the configuration on stdin,
//! its stderr passed through to ours, its result or error object read from stdout.

use super::env::Invocation;
use super::error::CniError;
use super::spec::{self, code, AddResult, Command, ErrorObject, VersionResult};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

/// A delegate plugin binary, found.
#[derive(Debug, Clone)]
pub struct Delegate {
    pub name: String,
    pub path: PathBuf,
}

impl Delegate {
    /// Finds `name` in the directories of `cni_path`, first match wins, as runtimes search.
    pub fn find(name: &str, cni_path: &str) -> Result<Delegate, CniError> {
        cni_path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d).join(name))
            .find(|p| is_executable(p))
            .map(|path| Delegate {
                name: name.into(),
                path,
            })
            .ok_or_else(|| CniError::DelegateMissing {
                plugin: name.into(),
                cni_path: cni_path.into(),
            })
    }

    /// The spec versions the delegate speaks (its VERSION answer).
    pub fn versions(&self) -> Result<Vec<String>, CniError> {
        let stdin = format!(r#"{{"cniVersion":"{}"}}"#, spec::BASE_VERSION);
        let out = self.exec(Command::Version, None, stdin.as_bytes())?;
        let v: VersionResult = serde_json::from_slice(&out).map_err(|e| CniError::Decode {
            what: format!("{}'s VERSION answer", self.name),
            source: e,
        })?;
        Ok(v.supported_versions)
    }

    /// Runs `command` for the attachment in `inv` with `config` on stdin; the result of ADD
    /// (or CHECK's and DEL's empty answer as `None`).
    pub fn run(
        &self,
        command: Command,
        inv: &Invocation,
        config: &impl serde::Serialize,
    ) -> Result<Option<AddResult>, CniError> {
        let stdin = serde_json::to_vec(config).map_err(|e| CniError::Decode {
            what: format!("configuration for {}", self.name),
            source: e,
        })?;
        let out = self.exec(command, Some(inv), &stdin)?;
        if out.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&out)
            .map(Some)
            .map_err(|e| CniError::Decode {
                what: format!("{}'s {} result", self.name, command.as_str()),
                source: e,
            })
    }

    fn exec(
        &self,
        command: Command,
        inv: Option<&Invocation>,
        stdin: &[u8],
    ) -> Result<Vec<u8>, CniError> {
        let mut p = Process::new(&self.path);
        p.env("CNI_COMMAND", command.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(inv) = inv {
            let vars = [
                ("CNI_CONTAINERID", inv.container_id.clone()),
                (
                    "CNI_NETNS",
                    inv.netns.as_ref().map(|p| p.display().to_string()),
                ),
                ("CNI_IFNAME", inv.ifname.clone()),
                ("CNI_PATH", inv.cni_path.clone()),
            ];
            for (k, v) in vars {
                match v {
                    Some(v) => p.env(k, v),
                    None => p.env_remove(k),
                };
            }
        }
        let what = format!("run {} {}", self.path.display(), command.as_str());
        let mut child = p.spawn().map_err(|e| CniError::io(&what, e))?;
        if let Some(mut pipe) = child.stdin.take() {
            // A delegate may exit before reading all of stdin; its answer says why.
            let _ = pipe.write_all(stdin);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| CniError::io(&what, e))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(match serde_json::from_slice::<ErrorObject>(&out.stdout) {
            Ok(e) => CniError::Delegate {
                plugin: self.name.clone(),
                code: e.code,
                msg: e.msg,
                details: e.details,
            },
            Err(_) => CniError::Delegate {
                plugin: self.name.clone(),
                code: code::IO_FAILURE,
                msg: format!("{} without an error object", out.status),
                details: String::from_utf8_lossy(&out.stdout).into_owned(),
            },
        })
    }
}

/// The version to speak to delegates when a request came in `requested`: that one if they all
/// speak it, else 1.0.0, whose result shape is the same (1.1.0 only added route fields and
/// commands). Debian's plugins 1.1.1 speak up to 1.0.0.
/// `remembered` is where the delegates' answers are kept between invocations
/// (`version_cache`); `None` asks each delegate.
pub fn common_version(
    requested: &str,
    delegates: &[&Delegate],
    remembered: Option<&std::path::Path>,
) -> Result<String, CniError> {
    let mut all = Vec::new();
    for d in delegates {
        let versions = match remembered {
            Some(dir) => super::version_cache::versions(d, dir)?,
            None => d.versions()?,
        };
        all.push((d.name.clone(), versions));
    }
    for candidate in [requested, spec::BASE_VERSION] {
        if all.iter().all(|(_, v)| v.iter().any(|x| x == candidate)) {
            return Ok(candidate.into());
        }
    }
    let (name, versions) = all
        .iter()
        .find(|(_, v)| !v.iter().any(|x| x == spec::BASE_VERSION))
        .cloned()
        .unwrap_or_default();
    Err(CniError::IncompatibleVersion {
        version: format!(
            "{requested} (delegate {name} speaks {})",
            versions.join(", ")
        ),
        supported: spec::SUPPORTED_VERSIONS.join(", "),
    })
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_missing_from_every_directory_is_named_with_the_path_searched() {
        let e = Delegate::find("no-such-plugin", "/nonexistent:/also-not").unwrap_err();
        assert_eq!(e.code(), code::INVALID_CONFIG);
        assert!(e.to_string().contains("no-such-plugin"), "{e}");
        assert!(e.to_string().contains("/also-not"), "{e}");
    }

    #[test]
    fn the_first_directory_holding_the_plugin_wins() {
        let d = Delegate::find("sh", "/nonexistent:/bin:/usr/bin").unwrap();
        assert_eq!(d.path, PathBuf::from("/bin/sh"));
    }
}
