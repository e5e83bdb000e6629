//! Containers on the lab's nodes, attached the way a container runtime attaches them: each node
//! has a conflist (`wiremesh-cni`, then `portmap`) in the lab's state directory, and every
//! container is a namespace `P-c<node index>-<n>` that the chain is run for, plugin by plugin,
//! with the `CNI_*` variables in the environment, the plugin's configuration on stdin and the
//! previous plugin's result as `prevResult` (DEL in reverse order), as libcni does. The plugins
//! run inside the node's namespace (`ip netns exec`), which stands for the host: the bridge, the
//! veths' host ends and the masquerade chain are made there.
//!
//! ```text
//! <state>/cni/<node>/net.conflist   the node's network (name `P-n<idx>`, bridge `P` + `b<idx>`)
//! <state>/cni/<node>/cache/         wiremesh-cni's per-attachment cache (`dataDir`)
//! <state>/cni/<node>/ipam/          host-local's reservations (`ipam.dataDir`)
//! ```

use super::layout::NodeLayout;
use super::netns;
use super::state::StateDir;
use super::{io_at, LabError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's containernetworking-plugins put the reference plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
/// How often [`wait_node_state`] looks for a daemon's `subnet.json`.
const STATE_POLL: Duration = Duration::from_millis(20);
/// The interface every container gets.
const IFNAME: &str = "eth0";

/// One container of the lab, as recorded in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// `<node>/c<n>`: how the ping matrix and `lab status` show it.
    pub name: String,
    /// The node it is attached to.
    pub node: String,
    /// Its namespace, also its `CNI_CONTAINERID`.
    pub ns: String,
    /// Its pod addresses from the ADD result (IPv4 first), empty until ADD succeeded.
    pub addrs: Vec<IpAddr>,
}

/// A container's ADD and how long the plugin chain took (namespace creation not counted).
#[derive(Debug, Clone)]
pub struct Attached {
    pub container: Container,
    pub add_took: Duration,
}

/// The network name of a node's conflist: host-local's store and the masquerade chain follow it.
pub fn network_name(prefix: &str, idx: usize) -> String {
    format!("{prefix}-n{idx}")
}

/// The bridge of a node's containers: unique per lab and node (at most 10 + 1 + 4 characters).
pub fn bridge_name(prefix: &str, idx: usize) -> String {
    format!("{prefix}b{idx}")
}

/// The `n`th container namespace of a node. Node namespaces are `P-<name>` or `P-n<idx>`;
/// `P-c…` is taken by no node whose name starts with `c` and a digit (those stay out of labs).
pub fn container_ns(prefix: &str, idx: usize, n: usize) -> String {
    format!("{prefix}-c{idx}-{n}")
}

/// The node's `subnet.json` as the daemon publishes it (default `cni_state_dir`).
pub fn subnet_file(node: &NodeLayout) -> PathBuf {
    crate::io::node_state_file::path(Path::new(crate::constants::CNI_STATE_DIR), &node.ifname)
}

/// host-local's reservation store of a node's network.
pub fn store(dir: &StateDir, prefix: &str, idx: usize, node: &NodeLayout) -> PathBuf {
    dir.cni(&node.name)
        .join("ipam")
        .join(network_name(prefix, idx))
}

/// The addresses host-local has reserved on a node (files named by an address).
pub fn reservations(dir: &StateDir, prefix: &str, idx: usize, node: &NodeLayout) -> Vec<IpAddr> {
    let Ok(entries) = std::fs::read_dir(store(dir, prefix, idx, node)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse().ok())
        .collect()
}

/// Waits until the node's daemon has published its node state: before that, ADD fails (code 11).
pub fn wait_node_state(node: &NodeLayout, timeout: Duration) -> Result<(), LabError> {
    let file = subnet_file(node);
    let deadline = Instant::now() + timeout;
    while !file.exists() {
        if Instant::now() >= deadline {
            return Err(LabError::Cni {
                container: node.name.clone(),
                message: format!("{} did not appear within {timeout:?}", file.display()),
            });
        }
        std::thread::sleep(STATE_POLL);
    }
    Ok(())
}

/// Writes the node's conflist and prepares its namespace as a host: forwarding on (the bridge
/// plugin turns IPv4 on for a gateway, not IPv6).
pub fn prepare_node(
    dir: &StateDir,
    prefix: &str,
    idx: usize,
    node: &NodeLayout,
) -> Result<(), LabError> {
    let cni = dir.cni(&node.name);
    std::fs::create_dir_all(&cni).map_err(io_at(&cni))?;
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": network_name(prefix, idx),
        "plugins": [
            {
                "type": "wiremesh-cni",
                "subnetFile": subnet_file(node),
                "dataDir": cni.join("cache"),
                "bridge": bridge_name(prefix, idx),
                "ipam": { "dataDir": cni.join("ipam") }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    });
    let path = dir.conflist(&node.name);
    let text = serde_json::to_string_pretty(&conflist).expect("conflist serializes");
    std::fs::write(&path, text).map_err(io_at(&path))?;
    netns::sysctls_in(
        &node.ns,
        &[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ],
    )
}

/// Runs the node's conflist for one container: ADD (each plugin in order, the previous result
/// as `prevResult`) or DEL (in reverse order, every plugin even after one failed). Returns the
/// last ADD result.
pub fn run_chain(
    command: &str,
    conflist: &Path,
    node_ns: &str,
    container_ns: &str,
    cni_path: &str,
) -> Result<Value, LabError> {
    let fail = |message: String| LabError::Cni {
        container: container_ns.to_string(),
        message,
    };
    let text = std::fs::read_to_string(conflist).map_err(io_at(conflist))?;
    let list: Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("{}: {e}", conflist.display())))?;
    let plugins = list["plugins"]
        .as_array()
        .ok_or_else(|| fail(format!("{}: no `plugins`", conflist.display())))?;
    let mut order: Vec<&Value> = plugins.iter().collect();
    if command == "DEL" {
        order.reverse();
    }
    let mut prev: Option<Value> = None;
    let mut first_err = None;
    for plugin in order {
        let mut conf = plugin.clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();
        if let Some(p) = &prev {
            conf["prevResult"] = p.clone();
        }
        let kind = plugin["type"].as_str().unwrap_or_default();
        let result = exec_plugin(kind, command, &conf, node_ns, container_ns, cni_path);
        match (result, command) {
            (Ok(out), "ADD") => prev = Some(out),
            (Ok(_), _) => {}
            (Err(e), "DEL") => {
                first_err.get_or_insert(fail(e));
            }
            (Err(e), _) => return Err(fail(e)),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(prev.unwrap_or(Value::Null)),
    }
}

/// One plugin, found in `cni_path`, run in the node's namespace with exactly the CNI
/// environment (and `PATH`, for the `nft`/`iptables` the plugins call).
fn exec_plugin(
    kind: &str,
    command: &str,
    conf: &Value,
    node_ns: &str,
    container_ns: &str,
    cni_path: &str,
) -> Result<Value, String> {
    let exe = cni_path
        .split(':')
        .map(|d| Path::new(d).join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("plugin `{kind}` not found in CNI_PATH {cni_path}"))?;
    let netns_path = format!("/run/netns/{container_ns}");
    let mut child = Command::new("ip")
        .args(["netns", "exec", node_ns])
        .arg(&exe)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_ns)
        .env("CNI_NETNS", &netns_path)
        .env("CNI_IFNAME", IFNAME)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(conf.to_string().as_bytes())
            .map_err(|e| format!("{} stdin: {e}", exe.display()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{kind} {command}: {} {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&stdout).map_err(|e| format!("{kind} {command}: result not JSON: {e}"))
}

/// The addresses of an ADD result (`ips[].address`, `10.244.1.5/24`), in result order.
pub fn result_addrs(result: &Value) -> Vec<IpAddr> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .collect()
}

/// IPv4 first, as the matrix pings the first address.
pub fn sorted_addrs(mut addrs: Vec<IpAddr>) -> Vec<IpAddr> {
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs
}

/// `CNI_PATH` for the lab: the directory of `wiremesh-cni` (next to the `wiremesh` executable),
/// then the reference plugins.
pub fn cni_path(exe: &Path) -> String {
    let own = exe.parent().unwrap_or(Path::new("."));
    format!("{}:{REFERENCE_PLUGINS}", own.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_add_result_gives_its_addresses_ipv4_first() {
        let result = json!({"cniVersion": "1.0.0", "ips": [
            {"address": "fd00:10:244:1::5/64", "gateway": "fd00:10:244:1::1"},
            {"address": "10.244.1.5/24", "gateway": "10.244.1.1"}]});
        let addrs = sorted_addrs(result_addrs(&result));
        let want: Vec<IpAddr> = vec![
            "10.244.1.5".parse().unwrap(),
            "fd00:10:244:1::5".parse().unwrap(),
        ];
        assert_eq!(addrs, want);
        assert!(result_addrs(&json!({})).is_empty());
    }

    #[test]
    fn the_cni_path_puts_our_plugin_before_the_reference_ones() {
        let p = cni_path(Path::new("/x/target/debug/wiremesh"));
        assert_eq!(p, "/x/target/debug:/usr/lib/cni");
    }
}
