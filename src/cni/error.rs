//! The plugin's errors. Each carries the CNI code a runtime acts on (retry, clean up, give up)
//! and names the field, variable or file it concerns, because the runtime shows only `msg`.

use super::spec::{code, ErrorObject};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("environment variable {var}: {problem}")]
    Environment { var: &'static str, problem: String },

    #[error("field cniVersion: version {version:?} is not supported (supported: {supported})")]
    IncompatibleVersion { version: String, supported: String },

    #[error("field {key}: unsupported field in network configuration (value {value}){hint}")]
    UnsupportedField {
        key: String,
        value: String,
        /// `; did you mean …?` when the key is one of ours spelt another way, else empty.
        hint: String,
    },

    #[error("field {field}: {problem}")]
    InvalidConfig { field: String, problem: String },

    #[error("{what}: cannot decode JSON: {source}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("CNI_NETNS: network namespace {path} does not exist")]
    NoNetns { path: PathBuf },

    #[error("no node state at {path} (subnetFile): is the wiremesh daemon running?")]
    NoNodeState { path: PathBuf },

    #[error("node state {path}: field {field}: {problem}")]
    BadNodeState {
        path: PathBuf,
        field: &'static str,
        problem: String,
    },

    #[error("plugin {plugin:?} not found in CNI_PATH {cni_path:?}")]
    DelegateMissing { plugin: String, cni_path: String },

    #[error("delegate {plugin}: {msg}")]
    Delegate {
        plugin: String,
        code: u32,
        msg: String,
        details: String,
    },

    #[error("CHECK: interface {ifname} has MTU {mtu}, above the tunnel MTU {max} (subnetFile {state}); recreate the container")]
    MtuTooLarge {
        ifname: String,
        mtu: u32,
        max: u32,
        state: PathBuf,
    },

    #[error("masquerade (ipMasq): {0}")]
    Masquerade(String),

    #[error("GC: {} stale resources could not be removed: {}", .0.len(), .0.join("; "))]
    GcIncomplete(Vec<String>),

    #[error("STATUS: {0}")]
    NotAvailable(String),
}

impl CniError {
    /// The spec's code for this error (a delegate's own code passes through unchanged).
    pub fn code(&self) -> u32 {
        match self {
            CniError::Environment { .. } => code::INVALID_ENVIRONMENT,
            CniError::IncompatibleVersion { .. } => code::INCOMPATIBLE_VERSION,
            CniError::UnsupportedField { .. } => code::UNSUPPORTED_FIELD,
            CniError::InvalidConfig { .. } | CniError::DelegateMissing { .. } => {
                code::INVALID_CONFIG
            }
            CniError::Decode { .. } | CniError::BadNodeState { .. } => code::DECODE_FAILURE,
            CniError::Io { .. } => code::IO_FAILURE,
            CniError::NoNetns { .. } => code::UNKNOWN_CONTAINER,
            // The daemon may be starting: the runtime should retry, not give the pod up.
            CniError::NoNodeState { .. } => code::TRY_AGAIN_LATER,
            CniError::Delegate { code, .. } => *code,
            CniError::MtuTooLarge { .. } => code::MTU_TOO_LARGE,
            CniError::Masquerade(_) => code::MASQUERADE,
            CniError::GcIncomplete(_) => code::GC_INCOMPLETE,
            CniError::NotAvailable(_) => code::NOT_AVAILABLE,
        }
    }

    /// The object printed on stdout for this error, under `cni_version`.
    pub fn to_object(&self, cni_version: &str) -> ErrorObject {
        let details = match self {
            CniError::Delegate { details, .. } => details.clone(),
            _ => std::error::Error::source(self)
                .map(|s| s.to_string())
                .unwrap_or_default(),
        };
        ErrorObject {
            cni_version: cni_version.to_string(),
            code: self.code(),
            msg: self.to_string(),
            details,
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> CniError {
        CniError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn config(field: impl Into<String>, problem: impl Into<String>) -> CniError {
        CniError::InvalidConfig {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
