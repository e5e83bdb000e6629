//! End to end: real `wiremesh up` daemons in a 4-node, 3-region full mesh, pinging every ordered
//! pair over the overlay. Needs root.

mod common;

use common::{assert_all_pairs, exe, namespaces_of, require_root, topology, unique_prefix};
use std::process::Command;
use std::time::Duration;
use wiremesh::lab::{Lab, LabOptions, Signal};

/// Per-pair timeout: generous, since the first packet of each pair waits for a handshake.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

fn running_mesh(prefix: &str) -> Lab {
    let mut lab = Lab::build(
        &topology("three-regions.toml"),
        LabOptions::new(prefix, exe()),
    )
    .unwrap();
    lab.start_daemons().unwrap();
    lab
}

#[test]
fn a_four_node_three_region_full_mesh_reaches_every_pair_over_the_overlay() {
    if !require_root() {
        return;
    }
    let lab = running_mesh(&unique_prefix());
    assert_all_pairs(&lab, PING_TIMEOUT);
    // Stock `wg` sees every daemon through its UAPI socket, each with three handshaken peers.
    for node in lab.nodes() {
        let ifname = lab.ifname(&node).unwrap();
        let out = Command::new("wg")
            .args(["show", ifname, "latest-handshakes"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let done = text.lines().filter(|l| !l.ends_with("\t0")).count();
        assert_eq!(done, 3, "{node}: {text}");
    }
}

#[test]
fn a_killed_daemon_drops_out_and_a_restarted_one_rejoins() {
    if !require_root() {
        return;
    }
    let mut lab = running_mesh(&unique_prefix());
    let c_overlay = lab.topology().unwrap().node("c").unwrap().overlay_addrs()[0];
    assert!(lab.ping("a", c_overlay, PING_TIMEOUT).unwrap().is_some());
    let old_pid = lab.daemon_pid("c").unwrap();
    lab.kill_daemon("c", Signal::Kill).unwrap();
    assert_eq!(lab.daemon_pid("c"), None);
    assert!(lab
        .ping("a", c_overlay, Duration::from_millis(500))
        .unwrap()
        .is_none());
    lab.restart_daemon("c").unwrap();
    assert_ne!(lab.daemon_pid("c"), Some(old_pid));
    let matrix = lab.ping_matrix(PING_TIMEOUT).unwrap();
    assert!(matrix.all_ok(), "after restart:\n{matrix}");
}

/// Removes a CLI-built lab even when the test panics.
struct DownOnDrop(String);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(exe())
            .args(["lab", "down", "--prefix", &self.0])
            .output();
    }
}

#[test]
fn lab_up_prints_an_all_green_matrix_and_lab_down_removes_everything() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let _guard = DownOnDrop(prefix.clone());
    let top = topology("three-regions.toml");
    let up = Command::new(exe())
        .args(["lab", "up"])
        .arg(&top)
        .args(["--prefix", &prefix])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&up.stdout);
    println!("{stdout}");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(stdout.matches('✓').count(), 12, "{stdout}");
    assert!(!stdout.contains('✗'), "{stdout}");
    assert!(stdout.contains(&format!("wiremesh lab down --prefix {prefix}")));

    let again = Command::new(exe())
        .args(["lab", "up"])
        .arg(&top)
        .args(["--prefix", &prefix])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("lab down"));

    let status = Command::new(exe())
        .args(["lab", "status", "--prefix", &prefix])
        .output()
        .unwrap();
    assert!(status.status.success());
    assert_eq!(
        String::from_utf8_lossy(&status.stdout)
            .matches("running")
            .count(),
        4
    );

    let loaded = Lab::load(&prefix).unwrap();
    let pids: Vec<u32> = loaded
        .nodes()
        .iter()
        .filter_map(|n| loaded.daemon_pid(n))
        .collect();
    assert_eq!(pids.len(), 4);
    drop(loaded); // a loaded lab is left alone on drop
    assert_eq!(namespaces_of(&prefix).len(), 5);

    let down = Command::new(exe())
        .args(["lab", "down", "--prefix", &prefix])
        .output()
        .unwrap();
    assert!(down.status.success());
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("wiremesh"),
            "daemon {pid} left running"
        );
    }
}
