//! The node state file, `<state_dir>/<interface>/subnet.json`: written atomically (a temp file
//! in the same directory, synced, then renamed over the old one), so a CNI plugin running at
//! any moment reads the old state or the new one, never half of one. File 0644 and directory
//! 0755: the plugin may run as another user than the daemon, and nothing in it is secret.

use crate::constants::NODE_STATE_FILE;
use crate::core::node_state::{NodeState, NodeStateError};
use crate::io::atomic_file;
use std::fs::{DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NodeStateFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Bad {
        path: PathBuf,
        #[source]
        source: NodeStateError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeStateFileError + '_ {
    move |source| NodeStateFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the state of `interface` lives under `state_dir`.
pub fn path(state_dir: &Path, interface: &str) -> PathBuf {
    state_dir.join(interface).join(NODE_STATE_FILE)
}

/// Reads and checks a node state file; errors name the file and the field.
pub fn read(path: &Path) -> Result<NodeState, NodeStateFileError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    NodeState::from_json(&text).map_err(|source| NodeStateFileError::Bad {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `state` to `<state_dir>/<state.interface>/subnet.json`, replacing any earlier one
/// atomically; returns the file's path.
pub fn write(state_dir: &Path, state: &NodeState) -> Result<PathBuf, NodeStateFileError> {
    let dir = state_dir.join(&state.interface);
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(io_err(&dir))?;
    // the umask may have narrowed a directory made just now
    std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).map_err(io_err(&dir))?;
    let file = dir.join(NODE_STATE_FILE);
    atomic_file::replace(&file, state.to_json().as_bytes(), 0o644).map_err(|e| {
        NodeStateFileError::Io {
            path: e.path,
            source: e.source,
        }
    })?;
    Ok(file)
}

/// Removes the state of `interface` and its directory (when nothing else is left in it). A
/// state already gone is no error.
pub fn remove(state_dir: &Path, interface: &str) -> Result<(), NodeStateFileError> {
    let file = path(state_dir, interface);
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&file)(e)),
    }
    // other tools may keep files of their own beside ours: leave the directory to them
    let _ = std::fs::remove_dir(state_dir.join(interface));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn state(mtu: u16) -> NodeState {
        NodeState {
            version: 1,
            node: "n1".into(),
            interface: "wm3".into(),
            pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
            gateways: vec!["10.244.1.1".parse().unwrap()],
            cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
            mtu,
            written_unix_ms: 7,
        }
    }

    #[test]
    fn a_written_state_reads_back_with_its_modes_and_no_temp_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run/wiremesh");
        let file = write(&root, &state(1420)).unwrap();
        assert_eq!(file, path(&root, "wm3"));
        assert_eq!(read(&file).unwrap(), state(1420));
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o644);
        let d = std::fs::metadata(root.join("wm3")).unwrap();
        assert_eq!(d.mode() & 0o777, 0o755);
        write(&root, &state(1300)).unwrap();
        assert_eq!(read(&file).unwrap().mtu, 1300);
        let names: Vec<_> = std::fs::read_dir(root.join("wm3"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(NODE_STATE_FILE)]);
    }

    #[test]
    fn removing_takes_the_file_and_its_empty_directory_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &state(1420)).unwrap();
        remove(dir.path(), "wm3").unwrap();
        assert!(!dir.path().join("wm3").exists());
        remove(dir.path(), "wm3").unwrap();
    }

    #[test]
    fn a_bad_file_is_named_with_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), &state(1420)).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("1420", "-1")).unwrap();
        let e = read(&file).unwrap_err().to_string();
        assert!(e.starts_with(&file.display().to_string()), "{e}");
        assert!(e.contains("field `mtu`"), "{e}");
        let missing = dir.path().join("nope/subnet.json");
        assert!(read(&missing).unwrap_err().to_string().contains("nope"));
    }
}
