//! What each delegate binary said to VERSION, remembered across invocations: asking costs a
//! process per delegate (about a third of an ADD's time with Debian's `bridge` and
//! `host-local`), and the answer changes only with the binary. An entry is keyed by the
//! binary's path, size and modification time, so an upgraded plugin is asked again. Losing the
//! file (or failing to write it) only costs the question.
//!
//! Kept as hidden files beside the attachment cache (`<dataDir>/<network>/.versions-<plugin>`),
//! which `Cache::attachments` skips.

use super::delegate::Delegate;
use super::error::CniError;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    path: PathBuf,
    len: u64,
    mtime_ns: i128,
    versions: Vec<String>,
}

/// The versions `d` speaks: remembered in `dir` if its binary is unchanged, else asked.
pub fn versions(d: &Delegate, dir: &Path) -> Result<Vec<String>, CniError> {
    let Some((len, mtime_ns)) = identity(&d.path) else {
        return d.versions();
    };
    let file = dir.join(format!(".versions-{}", d.name));
    if let Some(e) = std::fs::read(&file)
        .ok()
        .and_then(|t| serde_json::from_slice::<Entry>(&t).ok())
    {
        if e.path == d.path && e.len == len && e.mtime_ns == mtime_ns {
            return Ok(e.versions);
        }
    }
    let versions = d.versions()?;
    let entry = Entry {
        path: d.path.clone(),
        len,
        mtime_ns,
        versions: versions.clone(),
    };
    remember(dir, &file, &entry);
    Ok(versions)
}

fn identity(path: &Path) -> Option<(u64, i128)> {
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.len(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    ))
}

/// Best effort: a failure here costs the next invocation one question, nothing else.
fn remember(dir: &Path, file: &Path, entry: &Entry) {
    let Ok(text) = serde_json::to_vec(entry) else {
        return;
    };
    let tmp = dir.join(format!(".tmp-versions-{}", std::process::id()));
    let _ = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, text))
        .and_then(|()| std::fs::rename(&tmp, file));
    let _ = std::fs::remove_file(&tmp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A delegate that answers VERSION and counts how often it was asked.
    fn counting_plugin(dir: &Path, versions: &str) -> Delegate {
        let path = dir.join("fake-bridge");
        let script = format!(
            "#!/bin/sh\necho x >> {}/asked\necho '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[{versions}]}}'\n",
            dir.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Delegate {
            name: "fake-bridge".into(),
            path,
        }
    }

    fn asked(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join("asked"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    #[test]
    fn a_delegate_is_asked_once_until_its_binary_changes() {
        let bin = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let d = counting_plugin(bin.path(), r#""0.4.0","1.0.0""#);
        let want = ["0.4.0", "1.0.0"];
        assert_eq!(versions(&d, cache.path()).unwrap(), want);
        assert_eq!(versions(&d, cache.path()).unwrap(), want);
        assert_eq!(asked(bin.path()), 1);
        // an upgrade (another size) is asked again
        counting_plugin(bin.path(), r#""0.4.0","1.0.0","1.1.0""#);
        assert_eq!(
            versions(&d, cache.path()).unwrap(),
            ["0.4.0", "1.0.0", "1.1.0"]
        );
        assert_eq!(asked(bin.path()), 2);
    }

    #[test]
    fn an_unwritable_or_garbled_cache_only_costs_the_question() {
        let bin = tempfile::tempdir().unwrap();
        let d = counting_plugin(bin.path(), r#""1.0.0""#);
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(cache.path().join(".versions-fake-bridge"), "{garbage").unwrap();
        assert_eq!(versions(&d, cache.path()).unwrap(), ["1.0.0"]);
        assert_eq!(
            versions(&d, Path::new("/proc/no-such-dir")).unwrap(),
            ["1.0.0"]
        );
        assert_eq!(asked(bin.path()), 2);
    }
}
