//! Interop: one node of a wiremesh mesh is a stock `wireguard-go`, configured only from
//! `wiremesh plan --format wg` and `wg setconf`. It reaches the wiremesh nodes and they reach it.
//!
//! Stock wireguard-go drops both handshakes when both ends initiate at the same moment and
//! retries after 5 s (REKEY_TIMEOUT), so a pair with it may need several seconds.

mod common;

use common::{assert_all_pairs, exe, new_lab, require_root, wait_for, wg_handshakes};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use wiremesh::core::plan::Plan;
use wiremesh::lab::Lab;

/// The wireguard-go process we started, killed by pid even when the test fails.
struct WireguardGo(Child);

impl Drop for WireguardGo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_wireguard_go(lab: &Lab, node: &str, state: &Path) -> WireguardGo {
    let ns = lab.node_ns(node).unwrap().to_string();
    let ifname = lab.ifname(node).unwrap().to_string();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns, "wireguard-go", &ifname])
        .env("WG_PROCESS_FOREGROUND", "1")
        .stdout(std::fs::File::create(state.join("wireguard-go.log")).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wireguard-go (apt-get install wireguard-go)");
    let guard = WireguardGo(child);
    let sock = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
    wait_for(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "socket from wireguard-go",
        || {
            if sock.exists() {
                Ok(())
            } else {
                Err(format!("wireguard-go never created {}", sock.display()))
            }
        },
    );
    // configure it exactly as an operator would: from `wiremesh plan --format wg`
    let topo = lab.derived_topology_path();
    let out = Command::new(exe())
        .args(["plan", "--format", "wg", "-n", node, "-t"])
        .arg(&topo)
        .output()
        .unwrap();
    assert!(out.status.success());
    let conf = state.join(format!("{node}.wg.conf"));
    std::fs::write(&conf, &out.stdout).unwrap();
    let key = state.join("keys").join(format!("{node}.key"));
    sh(&ns, &["wg", "setconf", &ifname, conf.to_str().unwrap()]);
    sh(
        &ns,
        &["wg", "set", &ifname, "private-key", key.to_str().unwrap()],
    );
    let plan = Plan::compute(lab.topology().unwrap(), node).unwrap();
    for addr in &plan.addresses {
        let host = if addr.is_ipv4() {
            format!("{addr}/32")
        } else {
            format!("{addr}/128")
        };
        sh(&ns, &["ip", "address", "add", &host, "dev", &ifname]);
    }
    sh(
        &ns,
        &[
            "ip",
            "link",
            "set",
            &ifname,
            "mtu",
            &plan.mtu.to_string(),
            "up",
        ],
    );
    for r in &plan.routes {
        sh(
            &ns,
            &[
                "ip",
                "route",
                "replace",
                &r.destination.to_string(),
                "dev",
                &ifname,
            ],
        );
    }
    guard
}

#[test]
fn a_stock_wireguard_go_node_reaches_the_wiremesh_nodes_and_they_reach_it() {
    if !require_root() {
        return;
    }
    let mut lab = new_lab("three-regions.toml");
    lab.start_daemons_of(&["a", "b", "c"]).unwrap();
    let state = lab.state_dir().to_path_buf();
    let _wg = start_wireguard_go(&lab, "d", &state);

    assert_all_pairs(&lab, Duration::from_secs(30));

    // wireguard-go's own view: a handshake with every wiremesh node
    let seen = wg_handshakes(lab.ifname("d").unwrap());
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&t| t > 0), "{seen:?}");
    // and a transfer from the wireguard-go node into the wiremesh mesh arrives intact
    let to = lab.overlay_addrs("a").unwrap()[0];
    let t = lab.transfer("d", "a", to, 16 * 1024 * 1024).unwrap();
    assert!(t.intact());
}
