//! The sweep a daemon runs at start for its CNI networks: an attachment whose container went
//! without a DEL (the machine rebooted, the runtime crashed) would otherwise keep its address
//! reserved in host-local's store for ever, and a node that reboots often runs out of addresses
//! ("no IP addresses available in range set", containernetworking/plugins #252, #697).
//!
//! An attachment is gone when it was added in another boot (no namespace survives a reboot) or
//! its namespace path no longer exists. Everything else is kept, including an entry that cannot
//! be read: losing a live container's address is worse than keeping a dead one's.

use super::cache::{Cache, Cached};
use super::config::NetConf;
use super::error::CniError;
use super::gc::Store;
use super::spec::Attachment;
use std::path::{Path, PathBuf};

/// Where the kernel says which boot this is.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// This boot's ID, if the kernel says.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string(BOOT_ID)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether the container of `entry` is gone, given this boot's ID and a test for a path.
pub fn is_gone(entry: &Cached, boot_id: Option<&str>, exists: impl Fn(&Path) -> bool) -> bool {
    if let (Some(then), Some(now)) = (entry.boot_id.as_deref(), boot_id) {
        if then != now {
            return true;
        }
    }
    entry.netns.as_deref().is_some_and(|p| !exists(p))
}

/// What a sweep of one network did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Attachments whose container was gone: their cache entries are removed.
    pub gone: Vec<Attachment>,
    /// host-local reservation files removed (those of the gone, and any no attachment owns).
    pub reservations: Vec<PathBuf>,
    /// What could not be read or removed, each naming its file.
    pub errors: Vec<String>,
}

/// Sweeps one network. host-local's lock is held from before the cache is read, so an ADD
/// running meanwhile (its cache entry is written before host-local reserves) is never taken for
/// an orphan.
pub fn sweep_network(conf: &NetConf, boot_id: Option<&str>) -> Result<Swept, CniError> {
    let store = Store::lock(&conf.ipam_store())?;
    let cache = Cache::new(&conf.data_dir, &conf.name);
    let mut swept = Swept::default();
    let mut live = Vec::new();
    for a in cache.attachments() {
        match cache.load(&a) {
            Ok(Some(entry)) if is_gone(&entry, boot_id, Path::exists) => match cache.remove(&a) {
                Ok(()) => swept.gone.push(a),
                Err(e) => {
                    swept.errors.push(e.to_string());
                    live.push(a);
                }
            },
            Ok(_) => live.push(a),
            Err(e) => {
                swept.errors.push(e.to_string());
                live.push(a);
            }
        }
    }
    if let Some(store) = store {
        let s = store.remove_unlisted(&live)?;
        swept.reservations = s.removed;
        swept.errors.extend(s.errors);
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(dir: &Path) -> NetConf {
        let text = serde_json::json!({
            "cniVersion": "1.0.0", "name": "wm", "type": "wiremesh-cni",
            "dataDir": dir.join("cache"), "ipam": {"dataDir": dir.join("ipam")},
        });
        NetConf::parse(text.to_string().as_bytes()).unwrap()
    }

    fn entry(netns: Option<&Path>, boot: Option<&str>) -> Cached {
        crate::cni::cache::sample(netns, boot)
    }

    #[test]
    fn an_attachment_is_gone_after_a_reboot_or_when_its_namespace_is() {
        let here = |_: &Path| true;
        let nowhere = |_: &Path| false;
        let ns = Some(Path::new("/run/netns/c1"));
        assert!(!is_gone(&entry(ns, Some("b1")), Some("b1"), here));
        assert!(is_gone(&entry(ns, Some("b0")), Some("b1"), here));
        assert!(is_gone(&entry(ns, Some("b1")), Some("b1"), nowhere));
        // what cannot be judged is kept
        assert!(!is_gone(&entry(None, None), Some("b1"), nowhere));
        assert!(!is_gone(&entry(ns, Some("b0")), None, here));
    }

    fn attachment(id: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_sweep_frees_the_addresses_of_gone_containers_and_orphans_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let conf = conf(dir.path());
        let live_ns = dir.path().join("live-netns");
        std::fs::write(&live_ns, "").unwrap();
        let cache = Cache::new(&conf.data_dir, &conf.name);
        cache
            .save(&attachment("live"), &entry(Some(&live_ns), Some("b1")))
            .unwrap();
        cache
            .save(&attachment("rebooted"), &entry(Some(&live_ns), Some("b0")))
            .unwrap();
        let dead_ns = dir.path().join("dead-netns");
        cache
            .save(&attachment("dead"), &entry(Some(&dead_ns), Some("b1")))
            .unwrap();
        std::fs::write(conf.data_dir.join("wm").join("broken@eth0"), "{").unwrap();
        let store = conf.ipam_store();
        std::fs::create_dir_all(&store).unwrap();
        for (ip, id) in [
            ("10.244.1.2", "live"),
            ("10.244.1.3", "rebooted"),
            ("10.244.1.4", "dead"),
            ("10.244.1.5", "broken"),
            ("10.244.1.6", "orphan"),
        ] {
            std::fs::write(store.join(ip), format!("{id}\r\neth0")).unwrap();
        }
        let swept = sweep_network(&conf, Some("b1")).unwrap();
        let mut gone: Vec<_> = swept.gone.iter().map(|a| a.container_id.clone()).collect();
        gone.sort();
        assert_eq!(gone, ["dead", "rebooted"]);
        assert_eq!(swept.reservations.len(), 3);
        assert_eq!(swept.errors.len(), 1, "{:?}", swept.errors);
        assert!(
            swept.errors[0].contains("broken@eth0"),
            "{:?}",
            swept.errors
        );
        assert_eq!(names(&store), ["10.244.1.2", "10.244.1.5", "lock"]);
        assert_eq!(
            names(&conf.data_dir.join("wm")),
            ["broken@eth0", "live@eth0"]
        );
    }

    #[test]
    fn a_network_with_no_store_and_no_cache_is_swept_without_error() {
        let dir = tempfile::tempdir().unwrap();
        let swept = sweep_network(&conf(dir.path()), Some("b1")).unwrap();
        assert!(swept.gone.is_empty() && swept.reservations.is_empty() && swept.errors.is_empty());
    }
}
