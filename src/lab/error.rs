//! What can go wrong in the lab, each variant naming the command, node or file it concerns, so a
//! failed test says which step broke without rerunning it by hand.

use std::path::PathBuf;

/// Errors of the lab harness.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command (`ip`, `sysctl`, ...) exited non-zero or could not be started.
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    /// The prefix cannot produce valid namespace and interface names.
    #[error("bad lab prefix '{prefix}': {reason}")]
    Prefix { prefix: String, reason: String },
    /// The topology does not fit the lab's address plan.
    #[error("topology does not fit the lab: {0}")]
    Layout(String),
    /// A lab with this prefix already exists.
    #[error("a lab with prefix '{prefix}' already exists; run `wiremesh lab down --prefix {prefix}` first")]
    Exists { prefix: String },
    /// No lab with this prefix is recorded.
    #[error("no lab with prefix '{prefix}' (no {})", state.display())]
    NotFound { prefix: String, state: PathBuf },
    #[error(transparent)]
    Topology(#[from] crate::core::topology::TopologyError),
    #[error(transparent)]
    KeyFile(#[from] crate::io::keyfile::KeyFileError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    State { path: PathBuf, message: String },
    #[error("unknown node '{0}' in this lab")]
    UnknownNode(String),
    /// A daemon did not come up, or exited; carries the end of its log.
    #[error("daemon of node '{node}' {what}; last log lines:\n{log_tail}")]
    Daemon {
        node: String,
        what: String,
        log_tail: String,
    },
    #[error("ping from namespace {ns}: {message}")]
    Ping { ns: String, message: String },
}

/// Shorthand for turning an `io::Error` into [`LabError::Io`] naming the path.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.into();
    move |source| LabError::Io { path, source }
}
