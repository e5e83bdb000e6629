//! The daemon's view of a runtime's CNI configuration directory: which networks are its own.
//! A network is ours when one of its plugins is `wiremesh-cni` reading this daemon's node state
//! (`subnetFile`), so two daemons on one host (two interfaces) never touch each other's stores.
//!
//! Files are read as libcni reads them: `*.conflist` (a `plugins` list) and `*.conf`, `*.json`
//! (one plugin). A file that cannot be read or parsed is reported by name and skipped: it may be
//! another network's, and the sweep it feeds is a convenience, not a condition of starting.

use super::config::NetConf;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The plugin type this crate answers to.
const PLUGIN_TYPE: &str = "wiremesh-cni";

/// The networks in `dir` whose `wiremesh-cni` plugin reads `subnet_file`, and a note for each
/// file that could not be used (naming it). A missing directory has none.
pub fn networks_of(dir: &Path, subnet_file: &Path) -> (Vec<NetConf>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (found, problems);
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "conflist" | "conf" | "json"))
        })
        .collect();
    files.sort();
    for file in files {
        match plugin_confs(&file) {
            Ok(confs) => found.extend(
                confs
                    .into_iter()
                    .filter(|c| same_file(&c.subnet_file, subnet_file)),
            ),
            Err(problem) => problems.push(format!("{}: {problem}", file.display())),
        }
    }
    (found, problems)
}

/// Every `wiremesh-cni` plugin of one file, as the runtime would hand it to the plugin: its own
/// keys plus the list's `cniVersion` and `name`.
fn plugin_confs(file: &Path) -> Result<Vec<NetConf>, String> {
    let text = std::fs::read(file).map_err(|e| e.to_string())?;
    let top: Map<String, Value> = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let plugins: Vec<&Map<String, Value>> = match top.get("plugins") {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_object).collect(),
        Some(_) => return Err("`plugins` is not a list".into()),
        None => vec![&top],
    };
    let mut confs = Vec::new();
    for plugin in plugins {
        if plugin.get("type").and_then(Value::as_str) != Some(PLUGIN_TYPE) {
            continue;
        }
        let mut conf = plugin.clone();
        for key in ["cniVersion", "name"] {
            if let Some(v) = top.get(key) {
                conf.insert(key.into(), v.clone());
            }
        }
        let bytes = serde_json::to_vec(&conf).map_err(|e| e.to_string())?;
        confs.push(NetConf::parse(&bytes).map_err(|e| e.to_string())?);
    }
    Ok(confs)
}

/// Whether two paths name one file (also when written differently); equal paths are equal even
/// when the file is not there yet.
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (a.canonicalize(), b.canonicalize()),
            (Ok(x), Ok(y)) if x == y
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_networks_reading_this_daemons_node_state_are_ours_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ours = |name: &str, subnet: &str| {
            serde_json::json!({
                "cniVersion": "1.0.0", "name": name,
                "plugins": [
                    {"type": PLUGIN_TYPE, "subnetFile": subnet},
                    {"type": "portmap", "capabilities": {"portMappings": true}}
                ]
            })
            .to_string()
        };
        std::fs::write(
            d.join("10-a.conflist"),
            ours("a", "/run/wiremesh/wm0/subnet.json"),
        )
        .unwrap();
        std::fs::write(
            d.join("20-b.conflist"),
            ours("b", "/run/wiremesh/wm1/subnet.json"),
        )
        .unwrap();
        std::fs::write(
            d.join("30-c.conf"),
            r#"{"cniVersion":"1.0.0","name":"c","type":"wiremesh-cni","subnetFile":"/run/wiremesh/wm0/subnet.json"}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("40-other.conflist"),
            r#"{"cniVersion":"1.0.0","name":"o","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(d.join("50-broken.conflist"), "{").unwrap();
        std::fs::write(d.join("README"), "not a config").unwrap();
        let (found, problems) = networks_of(d, Path::new("/run/wiremesh/wm0/subnet.json"));
        let names: Vec<_> = found.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("50-broken.conflist"), "{problems:?}");
    }

    #[test]
    fn a_missing_directory_has_no_networks() {
        let (found, problems) = networks_of(Path::new("/nonexistent/net.d"), Path::new("/x"));
        assert!(found.is_empty() && problems.is_empty());
    }
}
