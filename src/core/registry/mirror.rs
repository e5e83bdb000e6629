//! The daemon's copy of the mesh's keys, kept current by a list and then a watch, and its form
//! in the snapshot file the daemon starts from when etcd is unreachable.
//!
//! The mirror holds raw values, not checked ones: a start from the snapshot file runs the same
//! validation as a start from etcd, and a value refused today is refused the same way tomorrow.

use super::{Kv, Revision, Snapshot};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(Kv),
    /// `mod_revision` is the revision of the delete.
    Delete {
        key: String,
        mod_revision: Revision,
    },
}

/// The keys under one prefix at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    prefix: String,
    snapshot: Snapshot,
}

impl Mirror {
    /// An empty mirror of `prefix`, at revision 0 (never listed).
    pub fn new(prefix: &str) -> Self {
        Mirror {
            prefix: prefix.to_string(),
            snapshot: Snapshot::default(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The revision of the last list or event; 0 before the first list.
    pub fn revision(&self) -> Revision {
        self.snapshot.revision
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// A full list at `revision` replaces everything: keys deleted while events were lost (a
    /// compacted watch) disappear with it. Keys outside the prefix are not ours and are dropped.
    pub fn handle_list(&mut self, kvs: Vec<Kv>, revision: Revision) {
        let ours = kvs
            .into_iter()
            .filter(|kv| kv.key.starts_with(&self.prefix));
        self.snapshot = Snapshot::new(revision, ours);
    }

    /// Applies a watch batch that ends at `revision`; returns whether any key changed. Events at
    /// or below the mirror's revision are replays (a watch restarted from an older revision)
    /// and are ignored.
    pub fn handle_events(&mut self, events: Vec<Event>, revision: Revision) -> bool {
        let known = self.snapshot.revision;
        let mut changed = false;
        for event in events {
            match event {
                Event::Put(kv) if kv.mod_revision > known && kv.key.starts_with(&self.prefix) => {
                    let old = self.snapshot.kvs.insert(kv.key.clone(), kv.clone());
                    changed |= old.as_ref() != Some(&kv);
                }
                Event::Delete { key, mod_revision } if mod_revision > known => {
                    changed |= self.snapshot.kvs.remove(&key).is_some();
                }
                _ => {}
            }
        }
        self.handle_progress(revision);
        changed
    }

    /// A progress notice: nothing changed up to `revision`.
    pub fn handle_progress(&mut self, revision: Revision) {
        self.snapshot.revision = self.snapshot.revision.max(revision);
    }

    /// The mirror as the snapshot file stores it.
    pub fn to_file(&self, registry: &str, saved_at: u64) -> SnapshotFile {
        SnapshotFile {
            v: SNAPSHOT_VERSION,
            registry: registry.to_string(),
            prefix: self.prefix.clone(),
            revision: self.snapshot.revision,
            saved_at,
            kvs: self.snapshot.kvs.values().map(KvFile::from).collect(),
        }
    }

    /// A mirror from the snapshot file, which must be of `prefix` (a file of another mesh
    /// would plan the wrong mesh).
    pub fn from_file(file: SnapshotFile, prefix: &str) -> Result<Self, SnapshotError> {
        if file.v != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(file.v));
        }
        if file.prefix != prefix {
            return Err(SnapshotError::Prefix {
                file: crate::core::topology::shown(&file.prefix),
                want: prefix.to_string(),
            });
        }
        let kvs = file
            .kvs
            .into_iter()
            .map(Kv::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let mut m = Mirror::new(prefix);
        m.handle_list(kvs, file.revision);
        Ok(m)
    }
}

/// The only snapshot file version this wiremesh knows.
pub const SNAPSHOT_VERSION: u64 = 1;

/// Why a snapshot file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot version {0} is not known to this wiremesh (written by a newer one?)")]
    Version(u64),
    #[error("the snapshot is of prefix '{file}', not '{want}'")]
    Prefix { file: String, want: String },
    #[error("key '{}': value-base64 is not base64", crate::core::topology::shown(.0))]
    Base64(String),
    #[error("the snapshot is not a snapshot file: {0}")]
    Parse(String),
}

/// The snapshot file (`registry-snapshot`): the raw mirror and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SnapshotFile {
    pub v: u64,
    /// The registry URL, for messages.
    pub registry: String,
    /// `/wiremesh/<mesh>/`: a daemon starts only from a snapshot of its own mesh.
    pub prefix: String,
    pub revision: Revision,
    /// Unix seconds, for the warning that names the snapshot's age.
    pub saved_at: u64,
    pub kvs: Vec<KvFile>,
}

impl SnapshotFile {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, SnapshotError> {
        serde_json::from_str(text)
            .map_err(|e| SnapshotError::Parse(crate::core::topology::clip(&e.to_string(), 400)))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a snapshot always serialises")
    }
}

/// One key in the snapshot file. The value is kept as text when it is UTF-8 (readable in the
/// file, as etcd's values almost always are) and as base64 otherwise, so that even a value
/// validation refuses is kept byte for byte and refused again the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KvFile {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

impl From<&Kv> for KvFile {
    fn from(kv: &Kv) -> Self {
        let (value, value_base64) = match std::str::from_utf8(&kv.value) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (None, Some(STANDARD.encode(&kv.value))),
        };
        KvFile {
            key: kv.key.clone(),
            value,
            value_base64,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        }
    }
}

impl TryFrom<KvFile> for Kv {
    type Error = SnapshotError;
    fn try_from(f: KvFile) -> Result<Self, SnapshotError> {
        let value = match (f.value, f.value_base64) {
            (Some(text), _) => text.into_bytes(),
            (None, Some(b64)) => STANDARD
                .decode(b64)
                .map_err(|_| SnapshotError::Base64(f.key.clone()))?,
            (None, None) => Vec::new(),
        };
        // a lease does not outlive the process that held it: not kept
        Ok(Kv {
            key: f.key,
            value,
            create_revision: f.create_revision,
            mod_revision: f.mod_revision,
            lease: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/wiremesh/prod/";

    fn kv(key: &str, value: &[u8], rev: Revision) -> Kv {
        Kv {
            key: format!("{P}{key}"),
            value: value.to_vec(),
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        }
    }

    #[test]
    fn events_after_the_list_apply_and_replays_are_ignored() {
        let mut m = Mirror::new(P);
        m.handle_list(vec![kv("settings", b"s", 3), kv("claims/a", b"a", 5)], 10);
        assert!(m.handle_events(vec![Event::Put(kv("claims/b", b"b", 11))], 11));
        // a restarted watch replays 11, and an old delete of a
        let replay = vec![
            Event::Put(kv("claims/b", b"stale", 11)),
            Event::Delete {
                key: format!("{P}claims/a"),
                mod_revision: 9,
            },
        ];
        assert!(!m.handle_events(replay, 11));
        assert_eq!(m.snapshot().kvs[&format!("{P}claims/b")].value, b"b");
        assert!(m.handle_events(
            vec![Event::Delete {
                key: format!("{P}claims/a"),
                mod_revision: 12
            }],
            12
        ));
        assert_eq!(m.snapshot().kvs.len(), 2);
        assert_eq!(m.revision(), 12);
    }

    #[test]
    fn a_relist_replaces_the_mirror_so_deletions_in_a_gap_disappear() {
        let mut m = Mirror::new(P);
        m.handle_list(vec![kv("claims/a", b"a", 5), kv("claims/b", b"b", 6)], 6);
        m.handle_list(vec![kv("claims/b", b"b", 6)], 40);
        assert_eq!(m.snapshot().kvs.len(), 1);
        assert_eq!(m.revision(), 40);
    }

    #[test]
    fn keys_of_other_meshes_are_dropped() {
        let mut m = Mirror::new(P);
        let other = Kv {
            key: "/wiremesh/prod2/settings".into(),
            ..kv("x", b"", 2)
        };
        m.handle_list(vec![other.clone()], 2);
        assert!(!m.handle_events(
            vec![Event::Put(Kv {
                mod_revision: 3,
                ..other
            })],
            3
        ));
        assert!(m.snapshot().kvs.is_empty());
    }

    #[test]
    fn the_snapshot_file_keeps_every_value_byte_for_byte() {
        let mut m = Mirror::new(P);
        m.handle_list(
            vec![
                kv("settings", b"{\"v\":1}", 2),
                kv("claims/x", b"\xff\x00bad", 3),
            ],
            7,
        );
        let text = m.to_file("etcd://10.0.0.1:2379", 1_767_180_000).to_json();
        assert!(text.contains("\"value-base64\""), "{text}");
        let back = Mirror::from_file(SnapshotFile::parse(&text).unwrap(), P).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_snapshot_of_another_mesh_or_version_is_refused() {
        let m = Mirror::new(P);
        let file = m.to_file("etcd://x", 0);
        let err = Mirror::from_file(file.clone(), "/wiremesh/other/").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the snapshot is of prefix '/wiremesh/prod/', not '/wiremesh/other/'"
        );
        let newer = SnapshotFile { v: 2, ..file };
        assert_eq!(Mirror::from_file(newer, P), Err(SnapshotError::Version(2)));
        for bad in ["", "{}", "[]", "{\"v\":1,\"extra\":1}", "\u{0}"] {
            assert!(SnapshotFile::parse(bad).is_err(), "{bad:?}");
        }
    }
}
