//! The daemon's side of the etcd registry (docs/registry.md, section 2). [`start`] joins (own
//! record, claim, presence) or, with etcd unreachable, starts from the snapshot file; then a task
//! keeps the mirror current through a watch, keeps the presence lease alive, writes the snapshot
//! and hands every assembled topology to the daemon's main loop, which applies it like a reload.
//!
//! Nothing here tears anything down: while etcd is away the last topology stays in force, and
//! while the policy key holds a refused policy the last good policy does.

mod config;
pub mod join;
mod presence;
mod start;
mod task;

pub use config::{etcd_config, RegistryConfig};
pub use start::start;

use crate::core::key::PublicKey;
use crate::core::policy::MeshPolicy;
use crate::core::registry::assemble::{AssembleError, Assembled};
use crate::core::registry::policy::PolicyRefused;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Etcd(#[from] crate::io::etcd::EtcdError),
    #[error(transparent)]
    Join(#[from] join::JoinError),
    #[error(transparent)]
    Own(#[from] crate::core::registry::own::OwnError),
    #[error("registry {registry}: {source}")]
    Assemble {
        registry: String,
        #[source]
        source: Box<AssembleError>,
    },
    #[error(transparent)]
    Snapshot(#[from] crate::io::registry_snapshot::SnapshotFileError),
    #[error("{}: {source}", path.display())]
    SnapshotContent {
        path: std::path::PathBuf,
        #[source]
        source: crate::core::registry::mirror::SnapshotError,
    },
    #[error("{cause}, and no snapshot at {} to start from", snapshot.display())]
    NoSnapshot {
        cause: crate::io::etcd::EtcdError,
        snapshot: std::path::PathBuf,
    },
    #[error("settings: mesh: {0}")]
    Mesh(#[from] crate::core::registry::keys::KeyError),
    #[error("{}: {source}", path.display())]
    Password {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("node '{node}' is in {registry} but cannot be planned: {reasons}")]
    NotPlanned {
        node: String,
        registry: String,
        reasons: String,
    },
    #[error("settings: etcd-user is set but no password: give etcd-password-file or WIREMESH_ETCD_PASSWORD")]
    NoPassword,
    #[error(
        "settings: etcd-cert and etcd-key need etcd-ca (the CA that signed etcd's certificate)"
    )]
    CertWithoutCa,
    /// At start there is no earlier good policy to keep: as with settings, the daemon exits.
    #[error("registry {registry}: {source}")]
    Policy {
        registry: String,
        #[source]
        source: PolicyRefused,
    },
}

/// What the task hands the daemon: the assembled mesh, and the policy in force, which is the
/// policy key's while it is valid and the last good one while it is refused
/// (`core/registry/policy.rs`, [`InForce`](crate::core::registry::policy::InForce)).
#[derive(Debug, Clone)]
pub struct Update {
    pub assembled: Assembled,
    pub policy: MeshPolicy,
}

/// What the daemon asks of the registry task.
#[derive(Debug)]
enum Command {
    /// Write this public key into the node's record (a rotation reached *Switched*).
    PublishKey(PublicKey),
    /// List again (SIGHUP).
    Relist,
    /// Mark the node `left`, revoke the presence lease, and stop; answered when done.
    Leave(oneshot::Sender<()>),
}

/// The running registry task.
pub struct Registry {
    updates: watch::Receiver<Arc<Update>>,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
    /// The key last handed to the task, so the main loop may offer the key at every tick and
    /// the task hears only of a change.
    published: PublicKey,
}

impl Registry {
    /// Waits for the next assembled topology and policy (the latest wins); `None` once the task
    /// is gone.
    pub async fn next(&mut self) -> Option<Arc<Update>> {
        self.updates.changed().await.ok()?;
        Some(self.updates.borrow_and_update().clone())
    }

    /// Publishes the node's public key when it differs from the last one published.
    pub fn publish_key(&mut self, key: PublicKey) {
        if key != self.published && self.commands.try_send(Command::PublishKey(key)).is_ok() {
            self.published = key;
        }
    }

    pub fn relist(&self) {
        let _ = self.commands.try_send(Command::Relist);
    }

    /// A graceful stop: the node is marked `left` and its lease revoked, within
    /// [`LEAVE_TIMEOUT`](crate::constants::REGISTRY_LEAVE_TIMEOUT); with etcd away, the peers keep
    /// the node until its next start.
    pub async fn leave(self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Leave(tx)).await.is_ok() {
            let _ = tokio::time::timeout(crate::constants::REGISTRY_LEAVE_TIMEOUT, rx).await;
        }
        self.task.abort();
    }
}
