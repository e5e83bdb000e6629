//! What went wrong talking to etcd, sorted into the few cases an operator acts on differently:
//! nothing answers (check the address, the daemon carries on from its snapshot), the credential is
//! refused (fix it), TLS fails (fix the CA or the certificate: not retried, like a refused
//! credential), a key is outside our role (fix the role), the history we asked for is gone
//! (relist), and anything else.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("no etcd endpoint given: the registry is etcd://HOST:PORT[,HOST:PORT...]")]
    NoEndpoints,
    #[error("cannot reach etcd at {endpoints}: {reason}")]
    Unreachable { endpoints: String, reason: String },
    #[error("etcd at {endpoints} refused the credentials: {reason}")]
    Auth { endpoints: String, reason: String },
    #[error("etcd at {endpoints} denied access to {key}: {reason} (see the roles in docs/registry.md, section 3)")]
    PermissionDenied {
        endpoints: String,
        key: String,
        reason: String,
    },
    #[error("etcd at {endpoints} has compacted the revisions asked for: {reason}")]
    Compacted { endpoints: String, reason: String },
    #[error(
        "TLS with etcd at {endpoints} failed: {reason} (etcd-ca must be the CA that signed \
         etcd's certificate, which must name the address dialled; etcd-cert and etcd-key a \
         client certificate signed by etcd's --trusted-ca-file)"
    )]
    Tls { endpoints: String, reason: String },
    #[error("TLS file {}: {reason}", file.display())]
    TlsFile { file: PathBuf, reason: String },
    #[error("etcd at {endpoints} failed a request on {key}: {reason}")]
    Request {
        endpoints: String,
        key: String,
        reason: String,
    },
}

impl EtcdError {
    /// Sorts a client error; `key` is the key the request was about, for messages.
    pub(crate) fn from_client(endpoints: &str, key: &str, e: etcd_client::Error) -> Self {
        use etcd_client::Error as E;
        use tonic::Code;
        let endpoints = endpoints.to_string();
        let key = crate::core::registry::shown_key(key);
        let tls = match &e {
            E::GRpcStatus(status) => tls_failure(status),
            E::TransportError(t) => tls_failure(t),
            _ => None,
        };
        if let Some(reason) = tls {
            return EtcdError::Tls { endpoints, reason };
        }
        match e {
            E::GRpcStatus(status) => {
                let reason = status_reason(&status);
                match status.code() {
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                        EtcdError::Unreachable { endpoints, reason }
                    }
                    Code::Unauthenticated => EtcdError::Auth { endpoints, reason },
                    Code::InvalidArgument if reason.contains("authentication failed") => {
                        EtcdError::Auth { endpoints, reason }
                    }
                    Code::PermissionDenied => EtcdError::PermissionDenied {
                        endpoints,
                        key,
                        reason,
                    },
                    Code::OutOfRange if reason.contains("compacted") => {
                        EtcdError::Compacted { endpoints, reason }
                    }
                    _ => EtcdError::Request {
                        endpoints,
                        key,
                        reason,
                    },
                }
            }
            E::TransportError(t) => EtcdError::Unreachable {
                endpoints,
                reason: deepest(&t),
            },
            E::IoError(io) => EtcdError::Unreachable {
                endpoints,
                reason: io.to_string(),
            },
            other => EtcdError::Request {
                endpoints,
                key,
                reason: deepest(&other),
            },
        }
    }

    /// Whether retrying later may help (the store is away), as opposed to a refusal that will
    /// not change until someone fixes a credential, a role or a file.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EtcdError::Unreachable { .. } | EtcdError::Request { .. } | EtcdError::Compacted { .. }
        )
    }
}

/// A status's message, or, when etcd sent none (a transport failure inside tonic), the deepest
/// cause: "connection refused" says more than "transport error".
fn status_reason(status: &tonic::Status) -> String {
    use std::error::Error as _;
    if !status.message().is_empty() {
        let mut reason = status.message().to_string();
        if let Some(source) = status.source() {
            let deep = deepest(source);
            if !reason.contains(&deep) {
                reason = format!("{reason}: {deep}");
            }
        }
        return reason;
    }
    deepest(status)
}

/// The TLS failure among `e`'s causes, if any. tokio-rustls reports every one (a server
/// certificate we do not trust, the alert of a server that does not trust ours, a peer that
/// does not speak TLS) as an `io::Error` of kind `InvalidData`, whatever tonic and hyper wrap
/// it in: "invalid peer certificate: UnknownIssuer", "received fatal alert: BadCertificate".
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::InvalidData {
                return Some(io.to_string());
            }
        }
        next = cause.source();
    }
    None
}

/// The message of the innermost cause of `e`.
fn deepest(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}
