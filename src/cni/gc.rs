//! GC of host-local's reservations. Debian's host-local (plugins 1.1.1) predates spec 1.1.0 and
//! cannot be asked to GC, so its store is swept here: one file per reserved address, named by
//! the address, holding `<containerID>\r\n<ifname>` (older versions: the ID alone), beside a
//! `lock` file that host-local holds with `flock` while it allocates; we hold it too.

use super::error::CniError;
use super::spec::Attachment;
use std::collections::HashSet;
use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Reservation files removed.
    pub removed: Vec<PathBuf>,
    /// What could not be removed, each naming its file.
    pub errors: Vec<String>,
}

/// Removes from host-local's store `dir` every reservation whose attachment is not in `valid`.
/// A missing store is an empty one.
pub fn sweep(dir: &Path, valid: &[Attachment]) -> Result<Sweep, CniError> {
    match Store::lock(dir)? {
        Some(store) => store.remove_unlisted(valid),
        None => Ok(Sweep::default()),
    }
}

/// host-local's store, held with its own lock: while it is held, host-local reserves nothing, so
/// the attachments a caller lists meanwhile are all there are.
pub struct Store {
    dir: PathBuf,
    _lock: std::fs::File,
}

impl Store {
    /// Locks the store at `dir`; `None` when there is no store.
    pub fn lock(dir: &Path) -> Result<Option<Store>, CniError> {
        match std::fs::metadata(dir) {
            Ok(_) => Ok(Some(Store {
                dir: dir.to_path_buf(),
                _lock: lock(dir)?,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CniError::io(format!("read {}", dir.display()), e)),
        }
    }

    /// Removes every reservation whose attachment is not in `valid`.
    pub fn remove_unlisted(&self, valid: &[Attachment]) -> Result<Sweep, CniError> {
        let dir = &self.dir;
        let mut sweep = Sweep::default();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| CniError::io(format!("read {}", dir.display()), e))?;
        let valid: HashSet<(&str, &str)> = valid
            .iter()
            .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
            .collect();
        for entry in entries.flatten() {
            let path = entry.path();
            let is_reservation = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<IpAddr>().is_ok());
            if !is_reservation {
                continue; // `lock`, `last_reserved_ip.N`
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    sweep.errors.push(format!("read {}: {e}", path.display()));
                    continue;
                }
            };
            let mut lines = text.lines().map(str::trim);
            let id = lines.next().unwrap_or_default();
            let keep = match lines.next() {
                Some(ifname) => valid.contains(&(id, ifname)),
                None => valid.iter().any(|(v, _)| *v == id),
            };
            if keep {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => sweep.removed.push(path),
                Err(e) => sweep.errors.push(format!("remove {}: {e}", path.display())),
            }
        }
        Ok(sweep)
    }
}

/// host-local's own lock on its store, held until dropped.
fn lock(dir: &Path) -> Result<std::fs::File, CniError> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CniError::io(format!("open {}", path.display()), e))?;
    // SAFETY: flock on a descriptor we own; released when `file` closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(CniError::io(format!("flock {}", path.display()), e));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(id: &str, ifname: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn only_reservations_of_attachments_not_listed_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("10.244.1.2"), "keep\r\neth0").unwrap();
        std::fs::write(d.join("fd00::2"), "keep\r\neth0").unwrap();
        std::fs::write(d.join("10.244.1.3"), "gone\r\neth0").unwrap();
        std::fs::write(d.join("10.244.1.4"), "keep\r\neth1").unwrap();
        std::fs::write(d.join("10.244.1.5"), "keep").unwrap();
        std::fs::write(d.join("last_reserved_ip.0"), "gone").unwrap();
        let s = sweep(d, &[attachment("keep", "eth0")]).unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "10.244.1.2",
                "10.244.1.5",
                "fd00::2",
                "last_reserved_ip.0",
                "lock"
            ]
        );
        assert_eq!(s.removed.len(), 2);
    }

    #[test]
    fn a_store_that_does_not_exist_is_swept_without_error() {
        let s = sweep(Path::new("/nonexistent/store"), &[]).unwrap();
        assert!(s.removed.is_empty() && s.errors.is_empty());
    }
}
