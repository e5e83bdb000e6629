//! The thin driver over `etcd-client` (docs/registry.md, section 4): it connects, lists, runs
//! transactions, watches and keeps a lease, and turns what etcd says into the plain types of
//! `core/registry`. It decides nothing: which CIDR to take, what a record means and when to
//! retry are `core/registry`'s.

mod auth;
mod errors;
pub mod lease;
pub mod watch;

pub use errors::EtcdError;

use crate::constants::{REGISTRY_CONNECT_TIMEOUT, REGISTRY_LIST_PAGE, REGISTRY_REQUEST_TIMEOUT};
pub(crate) use crate::core::registry::keys::prefix_end;
use crate::core::registry::{Kv, Revision, TxnOutcome, TxnSpec};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use std::path::PathBuf;

/// How to reach etcd: what `--registry etcd://…` and the `etcd-*` settings say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `HOST:PORT` of each member, as given.
    pub endpoints: Vec<String>,
    pub tls: Option<TlsFiles>,
    /// User and password; without it, the client certificate's CN (or nothing) identifies us.
    pub user: Option<(String, String)>,
}

/// The PEM files of a TLS client: the CA that signed the server, and our certificate and key
/// when the server asks for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl EtcdConfig {
    /// The endpoints as the client dials them: `https://` with TLS, `http://` without.
    fn urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect()
    }

    /// The endpoints for messages: `10.0.0.1:2379,10.0.0.2:2379`.
    pub fn shown(&self) -> String {
        self.endpoints.join(",")
    }

    fn options(&self) -> Result<ConnectOptions, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(REGISTRY_CONNECT_TIMEOUT)
            .with_timeout(REGISTRY_REQUEST_TIMEOUT)
            .with_keep_alive(REGISTRY_CONNECT_TIMEOUT, REGISTRY_CONNECT_TIMEOUT)
            .with_require_leader(true)
            .with_auto_token_refresh(true);
        if let Some((user, password)) = &self.user {
            options = options.with_user(user, password);
        }
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.options()?);
        }
        Ok(options)
    }
}

impl TlsFiles {
    fn options(&self) -> Result<TlsOptions, EtcdError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| EtcdError::TlsFile {
                file: path.clone(),
                reason: e.to_string(),
            })
        };
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&self.ca)?));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            (Some(file), None) | (None, Some(file)) => {
                return Err(EtcdError::TlsFile {
                    file: file.clone(),
                    reason: "a client certificate needs both etcd-cert and etcd-key".into(),
                })
            }
        }
        Ok(tls)
    }
}

/// A connected client. Cheap to clone: clones share one HTTP/2 connection per member.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    shown: String,
}

impl Etcd {
    /// Connects to one member and proves the connection with a read of `probe` (a key the
    /// caller may read), so an unreachable member, a wrong password or a wrong CA is reported
    /// here, not at the first real request. Members are tried in turn, starting at a different
    /// one each time, and the first that answers carries every request of this client, as
    /// etcd's own clients do: tonic's balancing keeps sending a share of requests to a dead
    /// member, while a pinned connection fails over only when its member fails.
    pub async fn connect(config: &EtcdConfig, probe: &str) -> Result<Self, EtcdError> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let shown = config.shown();
        let n = config.endpoints.len();
        if n == 0 {
            return Err(EtcdError::NoEndpoints);
        }
        let options = config.options()?;
        let urls = config.urls();
        let first = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let url = &urls[(first + i) % n];
            match Self::connect_one(url, &options, &shown, probe).await {
                Ok(etcd) => return Ok(etcd),
                Err(e) if e.is_transient() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one member was tried"))
    }

    async fn connect_one(
        url: &str,
        options: &ConnectOptions,
        shown: &str,
        probe: &str,
    ) -> Result<Self, EtcdError> {
        let client = Client::connect([url], Some(options.clone()))
            .await
            .map_err(|e| EtcdError::from_client(shown, probe, e))?;
        let mut etcd = Etcd {
            client,
            shown: shown.to_string(),
        };
        etcd.get(probe).await?;
        Ok(etcd)
    }

    /// The endpoints, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    pub(crate) fn error(&self, key: &str, e: etcd_client::Error) -> EtcdError {
        EtcdError::from_client(&self.shown, key, e)
    }

    /// One key, or `None`.
    pub async fn get(&mut self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let mut answer = self
            .client
            .get(key, None)
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(answer.take_kvs().into_iter().find_map(to_kv))
    }

    /// Every key under `prefix` at one revision, read in pages of [`REGISTRY_LIST_PAGE`] keys
    /// (each page at the first page's revision, so the whole list is one moment).
    pub async fn list(&mut self, prefix: &str) -> Result<(Vec<Kv>, Revision), EtcdError> {
        let end = prefix_end(prefix);
        let mut from = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut kvs = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(REGISTRY_LIST_PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut page = self
                .client
                .get(from.clone(), Some(options))
                .await
                .map_err(|e| self.error(prefix, e))?;
            if revision == 0 {
                revision = page.header().map_or(0, |h| h.revision());
            }
            let more = page.more();
            let got = page.take_kvs();
            let Some(last) = got.last() else { break };
            // The next page starts just after the last key: the key with a zero byte appended.
            from = last.key().to_vec();
            from.push(0);
            kvs.extend(got.into_iter().filter_map(to_kv));
            if !more {
                break;
            }
        }
        Ok((kvs, revision))
    }

    /// Runs `spec` as one transaction: the compares, then the puts and deletes, else the reads.
    pub async fn txn(&mut self, spec: &TxnSpec) -> Result<TxnOutcome, EtcdError> {
        let first = spec
            .puts
            .first()
            .map(|(k, _)| k.as_str())
            .or(spec.deletes.first().map(String::as_str))
            .or(spec.compare_absent.first().map(String::as_str))
            .unwrap_or("");
        let mut compares: Vec<Compare> = spec
            .compare_absent
            .iter()
            .map(|k| Compare::create_revision(k.as_str(), CompareOp::Equal, 0))
            .collect();
        compares.extend(
            spec.compare_unchanged
                .iter()
                .map(|(k, rev)| Compare::mod_revision(k.as_str(), CompareOp::Equal, *rev)),
        );
        let mut then: Vec<TxnOp> = spec
            .puts
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), v.clone(), None))
            .collect();
        then.extend(spec.deletes.iter().map(|k| TxnOp::delete(k.as_str(), None)));
        let otherwise: Vec<TxnOp> = spec
            .gets_on_failure
            .iter()
            .map(|k| TxnOp::get(k.as_str(), None))
            .collect();
        let txn = Txn::new().when(compares).and_then(then).or_else(otherwise);
        let answer = self
            .client
            .txn(txn)
            .await
            .map_err(|e| self.error(first, e))?;
        if answer.succeeded() {
            return Ok(TxnOutcome::Committed(
                answer.header().map_or(0, |h| h.revision()),
            ));
        }
        let found = answer
            .op_responses()
            .into_iter()
            .map(|op| match op {
                TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().find_map(to_kv),
                _ => None,
            })
            .collect();
        Ok(TxnOutcome::Conflict(found))
    }

    /// Writes one key, attached to `lease` when it is not 0.
    pub async fn put(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<Revision, EtcdError> {
        let options = (lease != 0).then(|| etcd_client::PutOptions::new().with_lease(lease));
        let answer = self
            .client
            .put(key, value, options)
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(answer.header().map_or(0, |h| h.revision()))
    }

    /// Compacts history up to `revision` and waits for it to be physical, so a watch from an
    /// older revision is refused at once. Administrators and tests only.
    pub async fn compact(&mut self, revision: Revision) -> Result<(), EtcdError> {
        let options = etcd_client::CompactionOptions::new().with_physical();
        self.client
            .compact(revision, Some(options))
            .await
            .map_err(|e| self.error("", e))?;
        Ok(())
    }
}

/// A key-value as `core/registry` sees it; a key that is not UTF-8 cannot be ours and is dropped.
pub(crate) fn to_kv(kv: KeyValue) -> Option<Kv> {
    let (create_revision, mod_revision, lease) =
        (kv.create_revision(), kv.mod_revision(), kv.lease());
    let (key, value) = kv.into_key_value();
    Some(Kv {
        key: String::from_utf8(key).ok()?,
        value,
        create_revision,
        mod_revision,
        lease,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_the_scheme_of_the_tls_setting() {
        let mut c = EtcdConfig {
            endpoints: vec!["10.0.0.1:2379".into(), "10.0.0.2:2379".into()],
            ..EtcdConfig::default()
        };
        assert_eq!(c.urls()[1], "http://10.0.0.2:2379");
        c.tls = Some(TlsFiles {
            ca: "ca.pem".into(),
            cert: None,
            key: None,
        });
        assert_eq!(c.urls()[0], "https://10.0.0.1:2379");
        assert_eq!(c.shown(), "10.0.0.1:2379,10.0.0.2:2379");
    }

    #[test]
    fn a_certificate_without_its_key_is_refused_naming_the_file() {
        let tls = TlsFiles {
            ca: "/nonexistent/ca.pem".into(),
            cert: None,
            key: None,
        };
        let err = tls.options().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
