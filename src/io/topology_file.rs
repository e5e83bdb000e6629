//! Edits to the topology file that keep what people wrote: comments, blank lines, key order and
//! quoting survive, because the file is edited as a `toml_edit` document rather than re-serialized.
//!
//! Every edit is checked before it lands: the edited text must still load as a [`Topology`], and
//! must still give every node the pod CIDRs it had, or nothing is written. The new file replaces
//! the old one by rename, so a reader (a daemon reloading) sees the old file or the new one,
//! never half of each.

use crate::core::key::PublicKey;
use crate::core::topology::{Topology, TopologyError};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Table, Value};

#[derive(Debug, thiserror::Error)]
pub enum TopologyFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot edit, not valid TOML: {source}", path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: toml_edit::TomlError,
    },
    #[error("{}: nodes must be written as [[node]] tables to be edited", path.display())]
    Layout { path: PathBuf },
    #[error("{}: node '{node}' is not in the file", path.display())]
    NoSuchNode { path: PathBuf, node: String },
    #[error("edit refused, the result would not load: {0}")]
    WouldBreak(#[source] TopologyError),
    #[error("{}: node '{node}' would change pod CIDR; the file changed since it was loaded, load it again", path.display())]
    Drift { path: PathBuf, node: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TopologyFileError + '_ {
    move |source| TopologyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes every pod CIDR that IPAM chose into the file as `pod-cidr` (and `pod-cidr-v6` when
/// the cluster is dual stack), so that removing a node can never move another. `topology` must
/// have been loaded from `path`. Returns how many nodes gained a pin; 0 means the file was
/// left untouched, which makes a second run a no-op.
pub fn pin_pod_cidrs(path: &Path, topology: &Topology) -> Result<usize, TopologyFileError> {
    let mut doc = read(path)?;
    let mut pinned = 0;
    // one pass over the file's tables, not one search per node: 10,000 nodes stay linear
    let mut tables: HashMap<String, &mut Table> = doc
        .get_mut("node")
        .and_then(|i| i.as_array_of_tables_mut())
        .ok_or_else(|| TopologyFileError::Layout {
            path: path.to_path_buf(),
        })?
        .iter_mut()
        .filter_map(|t| Some((t.get("name")?.as_str()?.to_string(), t)))
        .collect();
    for node in &topology.nodes {
        let table = tables
            .get_mut(&node.name)
            .ok_or_else(|| TopologyFileError::NoSuchNode {
                path: path.to_path_buf(),
                node: node.name.clone(),
            })?;
        let mut changed = false;
        if !table.contains_key("pod-cidr") {
            table.insert("pod-cidr", toml_edit::value(node.pod_cidr.to_string()));
            changed = true;
        }
        if let Some(v6) = node.pod_cidr_v6 {
            if !table.contains_key("pod-cidr-v6") {
                table.insert("pod-cidr-v6", toml_edit::value(v6.to_string()));
                changed = true;
            }
        }
        pinned += usize::from(changed);
    }
    if pinned == 0 {
        return Ok(0);
    }
    drop(tables);
    let checked = check(&doc, path)?;
    let now_by_name: HashMap<&str, &crate::core::topology::Node> =
        checked.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    for node in &topology.nodes {
        let now = now_by_name.get(node.name.as_str()).ok_or_else(|| {
            TopologyFileError::WouldBreak(TopologyError::UnknownNode(node.name.clone()))
        })?;
        if now.pod_cidrs() != node.pod_cidrs() {
            return Err(TopologyFileError::Drift {
                path: path.to_path_buf(),
                node: node.name.clone(),
            });
        }
    }
    write_atomically(path, &doc.to_string())?;
    Ok(pinned)
}

/// Replaces one node's `public-key`, keeping any comment on the same line. Used when a node's
/// static key is rotated, so the topology stays the source of truth for peers' keys.
pub fn set_public_key(path: &Path, node: &str, key: &PublicKey) -> Result<(), TopologyFileError> {
    let mut doc = read(path)?;
    let table = node_table(&mut doc, path, node)?;
    let mut value = Value::from(key.to_string());
    if let Some(old) = table.get("public-key").and_then(|i| i.as_value()) {
        *value.decor_mut() = old.decor().clone();
    }
    table.insert("public-key", toml_edit::Item::Value(value));
    check(&doc, path)?;
    write_atomically(path, &doc.to_string())
}

fn read(path: &Path) -> Result<DocumentMut, TopologyFileError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    text.parse::<DocumentMut>()
        .map_err(|source| TopologyFileError::Toml {
            path: path.to_path_buf(),
            source,
        })
}

/// The `[[node]]` table whose `name` is `name`.
fn node_table<'d>(
    doc: &'d mut DocumentMut,
    path: &Path,
    name: &str,
) -> Result<&'d mut Table, TopologyFileError> {
    let nodes = doc
        .get_mut("node")
        .and_then(|i| i.as_array_of_tables_mut())
        .ok_or_else(|| TopologyFileError::Layout {
            path: path.to_path_buf(),
        })?;
    nodes
        .iter_mut()
        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
        .ok_or_else(|| TopologyFileError::NoSuchNode {
            path: path.to_path_buf(),
            node: name.to_string(),
        })
}

fn check(doc: &DocumentMut, path: &Path) -> Result<Topology, TopologyFileError> {
    Topology::parse(&doc.to_string(), path).map_err(TopologyFileError::WouldBreak)
}

/// The file replaced atomically, keeping its permissions.
fn write_atomically(path: &Path, text: &str) -> Result<(), TopologyFileError> {
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    crate::io::atomic_file::replace(path, text.as_bytes(), mode)
        .map_err(|e| io_err(&e.path)(e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dual_stack: bool) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.toml");
        let v6 = if dual_stack {
            "cluster-cidr-v6 = \"fd10::/56\"\n"
        } else {
            ""
        };
        let text = format!(
            "# the mesh\nmode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"  # pods\n{v6}\n\
             # first node, pinned by hand\n[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\n\
             public-key = \"{}\" # rotated yearly\npod-cidr = \"10.244.7.0/24\"\n\n\
             # second node, left to IPAM\n[[node]]\nname = \"b\"\ncloud = \"c\"\nregion = \"r\"\n\
             public-key = \"{}\"\n",
            crate::io::keyfile::generate().public_key(),
            crate::io::keyfile::generate().public_key(),
        );
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn pinning_writes_the_assigned_cidrs_and_keeps_comments() {
        let (_dir, path) = file(false);
        let before = Topology::load(&path).unwrap();
        assert_eq!(pin_pod_cidrs(&path, &before).unwrap(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        for comment in [
            "# the mesh",
            "# pods",
            "# first node, pinned by hand",
            "# second node, left to IPAM",
            "# rotated yearly",
        ] {
            assert!(text.contains(comment), "{comment} lost:\n{text}");
        }
        let b = before.node("b").unwrap().pod_cidr;
        assert!(text.contains(&format!("pod-cidr = \"{b}\"")), "{text}");
        let after = Topology::load(&path).unwrap();
        assert!(after.nodes.iter().all(|n| n.pod_cidr_pinned));
        assert_eq!(after.node("b").unwrap().pod_cidr, b);
    }

    #[test]
    fn pinning_twice_changes_nothing_the_second_time() {
        let (_dir, path) = file(true);
        assert_eq!(
            pin_pod_cidrs(&path, &Topology::load(&path).unwrap()).unwrap(),
            2
        );
        let once = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            pin_pod_cidrs(&path, &Topology::load(&path).unwrap()).unwrap(),
            0
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), once);
        let t = Topology::load(&path).unwrap();
        assert!(t
            .nodes
            .iter()
            .all(|n| n.pod_cidr_pinned && n.pod_cidr_v6_pinned));
    }

    #[test]
    fn pinning_a_file_that_no_longer_loads_is_refused_and_writes_nothing() {
        let (_dir, path) = file(false);
        let stale = Topology::load(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let moved = text.replace("name = \"b\"", "name = \"b\"\nnode-typo = 1");
        std::fs::write(&path, &moved).unwrap();
        assert!(matches!(
            pin_pod_cidrs(&path, &stale),
            Err(TopologyFileError::WouldBreak(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), moved);
    }

    #[test]
    fn setting_a_public_key_replaces_only_that_value() {
        let (_dir, path) = file(false);
        let key = crate::io::keyfile::generate().public_key();
        set_public_key(&path, "a", &key).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("public-key = \"{key}\" # rotated yearly")),
            "{text}"
        );
        assert_eq!(
            Topology::load(&path).unwrap().node("a").unwrap().public_key,
            key
        );
    }

    #[test]
    fn setting_a_key_another_node_already_has_is_refused() {
        let (_dir, path) = file(false);
        let b_key = Topology::load(&path).unwrap().node("b").unwrap().public_key;
        let before = std::fs::read_to_string(&path).unwrap();
        let err = set_public_key(&path, "a", &b_key).unwrap_err();
        assert!(err.to_string().contains("same key as node"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn an_unknown_node_is_named_in_the_error() {
        let (_dir, path) = file(false);
        let err =
            set_public_key(&path, "zz", &crate::io::keyfile::generate().public_key()).unwrap_err();
        assert!(matches!(&err, TopologyFileError::NoSuchNode { node, .. } if node == "zz"));
        assert!(err.to_string().contains("mesh.toml"));
    }

    #[test]
    fn the_edited_file_keeps_its_permissions() {
        let (_dir, path) = file(false);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        pin_pod_cidrs(&path, &Topology::load(&path).unwrap()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
