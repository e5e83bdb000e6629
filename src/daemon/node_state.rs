//! Publishes this node's state for the CNI plugin (`core::node_state`): written once the tun
//! device and routes are up, rewritten after every reload and whenever the container MTU
//! moves with a path, removed at a clean shutdown. A write that fails after start-up is logged
//! and retried with the next change: the mesh itself does not depend on the file.

use super::routes::path_mtus;
use crate::core::node_state::NodeState;
use crate::core::plan::Plan;
use crate::engine::Device;
use crate::io::node_state_file::{self, NodeStateFileError};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct NodeStatePublisher {
    state_dir: PathBuf,
    interface: String,
    /// What the file holds now; `None` before the first write and after a failed one.
    written: Option<NodeState>,
}

impl NodeStatePublisher {
    pub fn new(state_dir: PathBuf, interface: String) -> Self {
        Self {
            state_dir,
            interface,
            written: None,
        }
    }

    /// The file this publisher writes (`<state_dir>/<interface>/subnet.json`).
    pub fn file(&self) -> PathBuf {
        node_state_file::path(&self.state_dir, &self.interface)
    }

    /// Derives the state from `plan` and the peers' current path MTUs and writes it, unless it
    /// equals what the file already holds (`force` writes regardless: after a reload, so a file
    /// someone removed comes back).
    pub fn publish(
        &mut self,
        plan: &Plan,
        device: &Device,
        force: bool,
    ) -> Result<(), NodeStateFileError> {
        let by_name = path_mtus(device);
        let state = NodeState::derive(
            plan,
            &self.interface,
            |n| by_name.get(n).copied(),
            unix_ms(SystemTime::now()),
        );
        let unchanged = self
            .written
            .as_ref()
            .is_some_and(|w| !state.differs_from(w));
        if unchanged && !force {
            return Ok(());
        }
        let was = self.written.take().map(|w| w.mtu);
        let file = node_state_file::write(&self.state_dir, &state)?;
        if was != Some(state.mtu) {
            tracing::info!(file = %file.display(), mtu = state.mtu, was = ?was, "container MTU published");
        }
        self.written = Some(state);
        Ok(())
    }

    /// [`publish`](Self::publish), logging a failure instead of returning it.
    pub fn publish_or_warn(&mut self, plan: &Plan, device: &Device, force: bool) {
        if let Err(e) = self.publish(plan, device, force) {
            tracing::warn!(error = %e, "could not publish the node state for CNI");
        }
    }

    /// Removes the file: containers must not be set up from the state of a stopped daemon.
    pub fn remove(&mut self) {
        self.written = None;
        if let Err(e) = node_state_file::remove(&self.state_dir, &self.interface) {
            tracing::warn!(error = %e, "could not remove the node state");
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
