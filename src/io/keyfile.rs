//! Private key files: written 0600 before anything else sees them, refused when group or others
//! can read them (as `wg` and OpenSSH do), never echoed.

use crate::core::key::{KeyError, PrivateKey};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: mode {mode:04o} lets group or others read the private key; run `chmod 600 {}`", path.display(), path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{}: not a WireGuard private key: {source}", path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("{}: already exists; refusing to overwrite a private key (remove it first)", path.display())]
    Exists { path: PathBuf },
    #[error("{}: a mesh secret needs at least {} bytes", path.display(), crate::core::psk::MIN_SECRET_LEN)]
    ShortSecret { path: PathBuf },
}

/// A fresh private key from the operating system's CSPRNG: the one place outside tests where
/// the program draws randomness for keys (the core takes it from its caller).
pub fn generate() -> PrivateKey {
    PrivateKey::from_rng(&mut rand_core::OsRng)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_private(path: &Path) -> Result<(), KeyFileError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Reads a mesh secret file (its bytes, surrounding whitespace trimmed), refusing one that
/// group or others may read. The secret is never logged.
pub fn read_secret(path: &Path) -> Result<crate::core::psk::MeshSecret, KeyFileError> {
    check_private(path)?;
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let text = bytes.trim_ascii().to_vec();
    crate::core::psk::MeshSecret::new(text).ok_or_else(|| KeyFileError::ShortSecret {
        path: path.to_path_buf(),
    })
}

/// Reads a private key file, refusing one that group or others may read.
pub fn read_private(path: &Path) -> Result<PrivateKey, KeyFileError> {
    check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    text.trim()
        .parse()
        .map_err(|source| KeyFileError::Malformed {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a private key to a new file created with mode 0600 (never briefly wider), flushed to
/// disk before returning. With `overwrite`, an existing file is replaced atomically by rename.
pub fn write_private(path: &Path, key: &PrivateKey, overwrite: bool) -> Result<(), KeyFileError> {
    if !overwrite && path.exists() {
        return Err(KeyFileError::Exists {
            path: path.to_path_buf(),
        });
    }
    let text = format!("{}\n", key.to_base64());
    crate::io::atomic_file::replace(path, text.as_bytes(), 0o600)
        .map_err(|e| io_err(&e.path)(e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.key");
        let key = crate::io::keyfile::generate();
        write_private(&path, &key, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_private(&path).unwrap().public_key(), key.public_key());
        assert!(matches!(
            write_private(&path, &key, false),
            Err(KeyFileError::Exists { .. })
        ));
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.key");
        write_private(&path, &crate::io::keyfile::generate(), false).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Permissions { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn a_malformed_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not a key\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = read_private(&path).unwrap_err();
        assert!(err.to_string().contains("bad.key"));
    }
}
