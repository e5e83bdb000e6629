//! Replacing a file so that a reader at any moment sees the old content or the new, never half
//! of one, and a crash leaves one of the two: a temp file in the same directory (so the rename
//! stays on one file system), created with its final mode (never briefly wider), written,
//! synced, renamed over the old one, and the directory synced (the rename itself is durable only
//! then). The node state, the registry snapshot, the topology file and key files all go this way.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// A failure, with the path it concerns (the temp file, the target or the directory).
#[derive(Debug)]
pub struct AtomicWriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes `bytes` to `path` with permissions `mode`, replacing any earlier file atomically.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AtomicWriteError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |source| AtomicWriteError { path: p, source }
    };
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(at(&tmp))?;
        // the umask may have narrowed the mode given at creation
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(at(&tmp))?;
        f.write_all(bytes).map_err(at(&tmp))?;
        f.sync_all().map_err(at(&tmp))?;
        std::fs::rename(&tmp, path).map_err(at(path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_has_the_new_content_and_mode_and_no_temp_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        replace(&path, b"old", 0o644).unwrap();
        replace(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failure_names_the_path_it_concerns() {
        let err = replace(Path::new("/nonexistent-dir/f"), b"x", 0o600).unwrap_err();
        assert!(err.path.starts_with("/nonexistent-dir"), "{:?}", err.path);
    }
}
