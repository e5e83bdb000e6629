//! The node's presence key on its lease: granted at join, renewed every
//! [`REGISTRY_KEEPALIVE`](crate::constants::REGISTRY_KEEPALIVE), granted anew when it expired
//! during a partition (never a shutdown: presence informs `status` and `gc`, no plan reads it),
//! revoked at a graceful stop so the node shows as gone at once.

use crate::constants::REGISTRY_LEASE_TTL;
use crate::io::etcd::lease::{self, KeepAlive, Renewal};
use crate::io::etcd::{Etcd, EtcdError};

pub(super) struct Presence {
    key: String,
    value: Vec<u8>,
    lease: Option<i64>,
    keep: Option<KeepAlive>,
}

impl Presence {
    pub(super) fn new(key: String, value: Vec<u8>) -> Self {
        Presence {
            key,
            value,
            lease: None,
            keep: None,
        }
    }

    /// Makes sure a lease exists and carries the presence key.
    pub(super) async fn ensure(&mut self, etcd: &mut Etcd) -> Result<(), EtcdError> {
        if self.lease.is_some() {
            return Ok(());
        }
        let id = lease::grant(etcd, REGISTRY_LEASE_TTL).await?;
        etcd.put(&self.key, self.value.clone(), id).await?;
        self.lease = Some(id);
        self.keep = None;
        Ok(())
    }

    /// One keep-alive; an expired lease is replaced.
    pub(super) async fn renew(&mut self, etcd: &mut Etcd) -> Result<(), EtcdError> {
        let Some(id) = self.lease else {
            return self.ensure(etcd).await;
        };
        if self.keep.is_none() {
            self.keep = KeepAlive::open(etcd, id).await?;
            if self.keep.is_none() {
                tracing::info!(lease = id, "presence lease expired; granting a new one");
                self.lease = None;
                return self.ensure(etcd).await;
            }
        }
        let renewed = match self.keep.as_mut() {
            Some(k) => k.renew().await,
            None => return Ok(()),
        };
        match renewed {
            Ok(Renewal::Alive { .. }) => Ok(()),
            Ok(Renewal::Expired) => {
                tracing::info!(lease = id, "presence lease expired; granting a new one");
                self.lease = None;
                self.ensure(etcd).await
            }
            Err(e) => {
                // the stream is gone with the connection; a new one opens at the next renewal
                self.keep = None;
                Err(e)
            }
        }
    }

    /// Revokes the lease (the presence key goes with it).
    pub(super) async fn revoke(&mut self, etcd: &Etcd) {
        if let Some(id) = self.lease.take() {
            if let Err(e) = lease::revoke(etcd, id).await {
                tracing::warn!(error = %e, "could not revoke the presence lease; it expires by itself");
            }
        }
        self.keep = None;
    }
}
