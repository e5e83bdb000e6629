//! One invocation, start to end: the command picks the work, the answer is what goes on
//! stdout. STATUS and GC are ours to answer: Debian's reference plugins (1.1.1) speak up to
//! spec 1.0.0, so neither can be forwarded to them.

use super::attach::{self, Delegates};
use super::cache::Cache;
use super::check;
use super::config::{requested_version, NetConf};
use super::env::Invocation;
use super::error::CniError;
use super::gc;
use super::spec::{self, Command, VersionResult};
use super::state::NodeState;

/// Runs `inv` with the runtime's `stdin`; what to print on stdout on success (may be empty).
pub fn run(inv: &Invocation, stdin: &[u8]) -> Result<String, CniError> {
    if inv.command == Command::Version {
        return Ok(to_json(&version(stdin)));
    }
    let conf = NetConf::parse(stdin)?;
    match inv.command {
        Command::Add => attach::add(inv, &conf).map(|r| to_json(&r)),
        Command::Del => attach::del(inv, &conf).map(|()| String::new()),
        Command::Check => check::check(inv, &conf).map(|()| String::new()),
        Command::Status => status(inv, &conf).map(|()| String::new()),
        Command::Gc => collect_garbage(&conf).map(|()| String::new()),
        Command::Version => unreachable!("answered above"),
    }
}

/// The cniVersion an error answer carries: the request's if we speak it.
pub fn answer_version(stdin: &[u8]) -> String {
    requested_version(stdin)
        .filter(|v| spec::is_supported(v))
        .unwrap_or_else(|| spec::HIGHEST_VERSION.into())
}

fn version(stdin: &[u8]) -> VersionResult {
    VersionResult {
        cni_version: requested_version(stdin).unwrap_or_else(|| spec::HIGHEST_VERSION.into()),
        supported_versions: spec::SUPPORTED_VERSIONS
            .iter()
            .map(|v| v.to_string())
            .collect(),
    }
}

/// STATUS: ready when the daemon has published node state and the delegates are installed.
fn status(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    let not_available = |e: CniError| CniError::NotAvailable(e.to_string());
    NodeState::load(&conf.subnet_file).map_err(not_available)?;
    if inv.cni_path.is_some() {
        Delegates::find(inv).map_err(not_available)?;
    }
    Ok(())
}

/// GC: host-local reservations and our cached configurations of attachments not listed.
fn collect_garbage(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.as_deref().ok_or_else(|| {
        CniError::config(
            "cni.dev/valid-attachments",
            "missing: GC needs the list of valid attachments",
        )
    })?;
    let mut sweep = gc::sweep(&conf.ipam_store(), valid)?;
    let cache = Cache::new(&conf.data_dir, &conf.name);
    for stale in cache.attachments().iter().filter(|a| !valid.contains(a)) {
        if let Err(e) = cache.remove(stale) {
            sweep.errors.push(e.to_string());
        }
    }
    for removed in &sweep.removed {
        eprintln!("wiremesh-cni: GC removed {}", removed.display());
    }
    if sweep.errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::GcIncomplete(sweep.errors))
    }
}

fn to_json(v: &impl serde::Serialize) -> String {
    // Our own types always serialize; a failure would be a bug worth showing, not hiding.
    serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
