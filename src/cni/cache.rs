//! The delegate configuration each attachment was added with, kept until its DEL (flannel's
//! shape). DEL and CHECK must speak of the attachment as ADD made it even when the daemon has
//! since changed its state or stopped; the file is written before the delegate runs, so an ADD
//! that dies half-way can still be undone.
//!
//! Each entry also says where the container lived (its netns path and the boot it was added
//! in), so the daemon's start-up sweep (`stale`) can tell an attachment whose container is gone
//! without a DEL, after a reboot or a runtime's crash, from a live one.
//!
//! Layout: `<dataDir>/<network>/<containerID>@<ifname>` (a container ID cannot hold `@`).

use super::config::BridgeConf;
use super::error::CniError;
use super::spec::Attachment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cached {
    /// What `bridge` was given.
    pub delegate: BridgeConf,
    /// `CNI_NETNS` of the ADD.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The kernel's boot ID at ADD (`/proc/sys/kernel/random/boot_id`): no namespace outlives
    /// a reboot, so another boot's attachment is gone whatever its path says now.
    #[serde(default)]
    pub boot_id: Option<String>,
}

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(data_dir: &Path, network: &str) -> Cache {
        Cache {
            dir: data_dir.join(network),
        }
    }

    /// The directory of this network's entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, a: &Attachment) -> PathBuf {
        self.dir.join(format!("{}@{}", a.container_id, a.ifname))
    }

    /// Stores `entry` for `a`, atomically (a reader never sees half a file).
    pub fn save(&self, a: &Attachment, entry: &Cached) -> Result<(), CniError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| CniError::io(format!("create {} (dataDir)", self.dir.display()), e))?;
        let file = self.file(a);
        // Hidden, so never taken for an attachment: container IDs start with an alphanumeric.
        let tmp = self
            .dir
            .join(format!(".tmp-{}@{}", a.container_id, a.ifname));
        let text = serde_json::to_vec(entry).map_err(|e| CniError::Decode {
            what: "cached delegate configuration".into(),
            source: e,
        })?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &file))
            .map_err(|e| CniError::io(format!("write {}", file.display()), e))
    }

    /// What `a` was added with, if it was (and not yet deleted).
    pub fn load(&self, a: &Attachment) -> Result<Option<Cached>, CniError> {
        let file = self.file(a);
        match std::fs::read(&file) {
            Ok(text) => serde_json::from_slice(&text)
                .map(Some)
                .map_err(|e| CniError::Decode {
                    what: file.display().to_string(),
                    source: e,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CniError::io(format!("read {}", file.display()), e)),
        }
    }

    /// Forgets `a`; forgetting twice is fine (DEL may come twice).
    pub fn remove(&self, a: &Attachment) -> Result<(), CniError> {
        let file = self.file(a);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CniError::io(format!("remove {}", file.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Every attachment with a cached configuration (for GC).
    pub fn attachments(&self) -> Vec<Attachment> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .filter_map(|name| {
                let (id, ifname) = name.split_once('@')?;
                Some(Attachment {
                    container_id: id.into(),
                    ifname: ifname.into(),
                })
            })
            .collect()
    }
}

/// An entry for tests: a small network's delegate configuration, added from `netns` in boot
/// `boot`.
#[cfg(test)]
pub(crate) fn sample(netns: Option<&Path>, boot: Option<&str>) -> Cached {
    use super::config::{bridge_conf, NetConf};
    use super::state::NodeState;
    let net = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"wm","type":"wiremesh-cni"}"#)
        .expect("a valid configuration");
    let state = NodeState {
        path: "/x".into(),
        node: "n".into(),
        pods: vec![(
            "10.244.1.0/24".parse().expect("a CIDR"),
            "10.244.1.1".parse().expect("an address"),
        )],
        cluster_cidrs: vec![],
        mtu: 1420,
    };
    Cached {
        delegate: bridge_conf(&net, &state, "1.0.0"),
        netns: netns.map(Path::to_path_buf),
        boot_id: boot.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Cached {
        sample(Some(Path::new("/run/netns/c1")), Some("b1"))
    }

    #[test]
    fn a_saved_configuration_comes_back_until_removed_and_removing_twice_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path(), "wm");
        let a = Attachment {
            container_id: "c1".into(),
            ifname: "eth0.1".into(),
        };
        assert_eq!(cache.load(&a).unwrap(), None);
        cache.save(&a, &entry()).unwrap();
        assert_eq!(cache.load(&a).unwrap(), Some(entry()));
        assert_eq!(cache.attachments(), vec![a.clone()]);
        cache.remove(&a).unwrap();
        cache.remove(&a).unwrap();
        assert_eq!(cache.load(&a).unwrap(), None);
        assert!(cache.attachments().is_empty());
    }
}
