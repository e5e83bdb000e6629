//! The registry snapshot file (docs/registry.md, section 2): the daemon's last good mirror of
//! etcd, from which it starts when etcd is unreachable. Written atomically (temp file in the same
//! directory, fsync, rename, fsync of the directory), mode 0600: a crash leaves the old file or
//! the new one, never half of one.

use crate::core::registry::mirror::{SnapshotError, SnapshotFile};
use crate::io::atomic_file;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Content {
        path: PathBuf,
        #[source]
        source: SnapshotError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotFileError + '_ {
    move |source| SnapshotFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the file; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<SnapshotFile>, SnapshotFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    SnapshotFile::parse(&text)
        .map(Some)
        .map_err(|source| SnapshotFileError::Content {
            path: path.to_path_buf(),
            source,
        })
}

/// Replaces the file with `file`, atomically (creating its directory).
pub fn write(path: &Path, file: &SnapshotFile) -> Result<(), SnapshotFileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    atomic_file::replace(path, file.to_json().as_bytes(), 0o600).map_err(|e| {
        SnapshotFileError::Io {
            path: e.path,
            source: e.source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry::mirror::Mirror;
    use crate::core::registry::Kv;

    #[test]
    fn a_written_snapshot_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/wm0.registry.json");
        let mut m = Mirror::new("/wiremesh/p/");
        m.handle_list(
            vec![Kv {
                key: "/wiremesh/p/settings".into(),
                value: b"{\"v\":1}".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                lease: 0,
            }],
            7,
        );
        let file = m.to_file("etcd://127.0.0.1:1", 1_767_180_000);
        write(&path, &file).unwrap();
        assert_eq!(read(&path).unwrap(), Some(file));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_missing_file_is_none_and_a_garbled_one_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        assert_eq!(read(&path).unwrap(), None);
        std::fs::write(&path, "{not json").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }
}
