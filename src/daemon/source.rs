//! Where the daemon's topology comes from: the topology file (read at start and on SIGHUP) or
//! the etcd registry (joined at start, then every change through its task). The main loop asks
//! for "the next topology" and applies it the same way whichever it is. Both carry the policy:
//! the file's own, or the registry's policy key with the records' labels (the last good one
//! while the key holds a refused one).

use super::registry::{self, Registry, RegistryConfig, Update};
use super::settings::Settings;
use super::DaemonError;
use crate::core::key::PublicKey;
use crate::core::registry::addr::RegistryAddr;
use crate::core::topology::{Document, Topology};
use std::path::PathBuf;

pub(super) enum Source {
    File(PathBuf),
    Registry(Registry),
}

impl Source {
    /// Opens the source named by the settings; its first topology and policy.
    pub(super) async fn open(
        settings: &Settings,
        public_key: &PublicKey,
    ) -> Result<(Document, Source), DaemonError> {
        match settings.source()? {
            RegistryAddr::File(path) => {
                Ok((Topology::load_with_policy(&path)?, Source::File(path)))
            }
            RegistryAddr::Etcd(members) => {
                let cfg = RegistryConfig::from_settings(settings, members)?;
                let (first, registry) = registry::start(cfg, *public_key).await?;
                Ok((of_registry(&first), Source::Registry(registry)))
            }
        }
    }

    /// The next topology and policy from the registry; never returns for a file (SIGHUP reads
    /// that).
    pub(super) async fn next(&mut self) -> Option<Document> {
        match self {
            Source::File(_) => std::future::pending().await,
            Source::Registry(r) => Some(of_registry(&*r.next().await?)),
        }
    }

    /// SIGHUP: the file is read again; the registry is listed again (its topology then comes
    /// through [`Source::next`]).
    pub(super) fn reread(&mut self) -> Result<Option<Document>, DaemonError> {
        match self {
            Source::File(path) => Ok(Some(Topology::load_with_policy(path)?)),
            Source::Registry(r) => {
                r.relist();
                Ok(None)
            }
        }
    }

    /// The topology file a key rotation edits; none with a registry.
    pub(super) fn file(&self) -> Option<PathBuf> {
        match self {
            Source::File(p) => Some(p.clone()),
            Source::Registry(_) => None,
        }
    }

    /// Publishes the node's current public key (registry only; a file is edited by the rotation).
    pub(super) fn publish_key(&mut self, key: PublicKey) {
        if let Source::Registry(r) = self {
            r.publish_key(key);
        }
    }

    /// A graceful stop: a registry node marks itself left.
    pub(super) async fn leave(self) {
        if let Source::Registry(r) = self {
            r.leave().await;
        }
    }
}

/// The registry's topology and the policy in force.
fn of_registry(update: &Update) -> Document {
    Document {
        topology: update.assembled.topology.clone(),
        policy: update.policy.clone(),
    }
}
