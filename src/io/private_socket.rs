//! A daemon's private unix socket (UAPI, control): created mode 0600 in a 0755 directory,
//! replacing a stale socket left by a dead daemon but never one that still answers, and
//! removed on drop only if it is still the socket this process bound.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: another daemon is already listening on this socket", path.display())]
    InUse { path: PathBuf },
    #[error("{}: exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
}

/// Ownership of the socket file; dropping it removes the file if it is still ours.
#[derive(Debug)]
pub struct PrivateSocket {
    path: PathBuf,
    /// (device, inode) of the bound socket, so Drop never removes a successor's socket.
    identity: (u64, u64),
}

impl PrivateSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateSocket {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BindError + '_ {
    move |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Binds `path` for this daemon.
pub async fn bind(path: &Path) -> Result<(UnixListener, PrivateSocket), BindError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io_err(dir))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(BindError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(BindError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(io_err(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err(path))?;
    // chmod after bind: the default umask already denies others write (connect) permission,
    // and changing the process-wide umask would race with other threads creating files.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    Ok((
        listener,
        PrivateSocket {
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
        },
    ))
}
