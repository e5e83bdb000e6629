//! Rotating this node's static key from the daemon: make a key, persist it where a restart
//! will find it (the key file first, then the topology file, when the mesh is a file; a
//! registry node publishes its record's key once the rotation settles, see [`settled_key`]),
//! and only then hand it to the
//! engine, which announces it to every peer. A restart at any moment afterwards comes back with
//! a key the peers accept: before the announcement, nobody uses the new key yet; after it, the
//! peers accept both.

use crate::core::key::PublicKey;
use crate::core::rotation::{NodeState, RotationError};
use crate::engine::Device;
use crate::io::keyfile::{self, KeyFileError};
use crate::io::topology_file::{self, TopologyFileError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Busy(#[from] RotationError),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    Topology(#[from] TopologyFileError),
    #[error("{}: cannot lock: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Everything a rotation touches.
pub struct Rotator {
    pub device: Arc<Device>,
    pub node: String,
    pub key_path: PathBuf,
    /// The topology file to edit; `None` when the mesh lives in a registry.
    pub topology: Option<PathBuf>,
}

impl Rotator {
    /// Rotates now; returns the new public key.
    pub fn rotate(&self) -> Result<PublicKey, RotateError> {
        if let NodeState::Announced { old, new, .. } | NodeState::Switched { old, new, .. } =
            self.device.rotation_state()
        {
            return Err(RotationError::Busy { old, new }.into());
        }
        let old = keyfile::read_private(&self.key_path)?;
        let new = crate::io::keyfile::generate();
        keyfile::write_private(&self.key_path, &new, true)?;
        if let Err(e) = self.set_topology_key(&new.public_key()) {
            // without the topology entry a restart would refuse the new key: keep the old one
            keyfile::write_private(&self.key_path, &old, true)?;
            return Err(e);
        }
        match self.device.rotate(new, Instant::now()) {
            Ok(public) => Ok(public),
            Err(e) => {
                keyfile::write_private(&self.key_path, &old, true)?;
                self.set_topology_key(&old.public_key())?;
                Err(e.into())
            }
        }
    }

    /// Writes our new public key into the topology file under an exclusive lock: nodes
    /// sharing one file (the lab, a mounted volume) may rotate at the same moment, and each
    /// edit is a read-modify-write.
    fn set_topology_key(&self, key: &PublicKey) -> Result<(), RotateError> {
        let Some(topology) = &self.topology else {
            return Ok(());
        };
        let lock_path = topology.with_extension("lock");
        let lock_err = |source| RotateError::Lock {
            path: lock_path.clone(),
            source,
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(lock_err)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; released when `lock` closes below.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(lock_err(std::io::Error::last_os_error()));
        }
        let result = topology_file::set_public_key(topology, &self.node, key);
        drop(lock);
        Ok(result?)
    }
}

/// The key the node's registry record should carry: the old one while the new one is only
/// announced (a peer that read the new key from the registry before the announcement reached
/// it would start a session the node cannot yet answer under that key), the new one from
/// *Switched* on, when every peer accepts it.
pub fn settled_key(device: &Device) -> PublicKey {
    match device.rotation_state() {
        NodeState::Stable { key } => key,
        NodeState::Announced { old, .. } => old,
        NodeState::Switched { new, .. } => new,
    }
}

/// Rotates every `every` until the task is aborted.
pub async fn every(rotator: Arc<Rotator>, every: Duration) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        interval.tick().await;
        let r = rotator.clone();
        match tokio::task::spawn_blocking(move || r.rotate()).await {
            Ok(Ok(key)) => tracing::info!(new_key = %key, "scheduled key rotation started"),
            Ok(Err(e)) => tracing::warn!(error = %e, "scheduled key rotation failed"),
            Err(e) => tracing::warn!(error = %e, "scheduled key rotation panicked"),
        }
    }
}
