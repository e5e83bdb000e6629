//! The presence lease: granted with a TTL, kept alive over one stream, revoked at a graceful
//! stop. A keep-alive answered with TTL 0 means the lease expired while we were cut off; the
//! caller grants a new one (never a shutdown: presence is information, not permission).

use super::{Etcd, EtcdError};

/// What a keep-alive learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease lives on, for this many seconds.
    Alive { ttl: i64 },
    /// etcd no longer knows the lease: it expired.
    Expired,
}

/// Grants a lease of `ttl` seconds; its id.
pub async fn grant(etcd: &Etcd, ttl: i64) -> Result<i64, EtcdError> {
    let answer = etcd
        .client()
        .lease_grant(ttl, None)
        .await
        .map_err(|e| etcd.error("a new lease", e))?;
    Ok(answer.id())
}

/// Revokes a lease: its keys go at once.
pub async fn revoke(etcd: &Etcd, id: i64) -> Result<(), EtcdError> {
    etcd.client()
        .lease_revoke(id)
        .await
        .map_err(|e| etcd.error(&format!("lease {id:x}"), e))?;
    Ok(())
}

/// The keep-alive stream of one lease.
pub struct KeepAlive {
    keeper: etcd_client::LeaseKeeper,
    stream: etcd_client::LeaseKeepAliveStream,
    etcd: Etcd,
}

impl KeepAlive {
    /// Opens the stream; [`Renewal::Expired`] as an error-free answer is not possible here, so an
    /// unknown lease comes back as `Ok(None)`.
    pub async fn open(etcd: &Etcd, id: i64) -> Result<Option<Self>, EtcdError> {
        match etcd.client().lease_keep_alive(id).await {
            Ok((keeper, stream)) => Ok(Some(KeepAlive {
                keeper,
                stream,
                etcd: etcd.clone(),
            })),
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(None),
            Err(e) => Err(etcd.error("", e)),
        }
    }

    /// Sends one keep-alive and waits for its answer.
    pub async fn renew(&mut self) -> Result<Renewal, EtcdError> {
        self.keeper
            .keep_alive()
            .await
            .map_err(|e| self.etcd.error("", e))?;
        let answer = self
            .stream
            .message()
            .await
            .map_err(|e| self.etcd.error("", e))?;
        match answer {
            Some(a) if a.ttl() > 0 => Ok(Renewal::Alive { ttl: a.ttl() }),
            Some(_) => Ok(Renewal::Expired),
            None => Err(EtcdError::Unreachable {
                endpoints: self.etcd.shown().to_string(),
                reason: "the keep-alive stream closed".into(),
            }),
        }
    }
}
