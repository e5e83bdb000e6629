//! `wiremesh check` against real daemons in the lab: all green on a healthy four-node mesh over
//! three regions (whose underlay MTUs differ, so the full-size probe means something), and a
//! named failure once one peer's daemon is killed.

mod common;

use common::{exe, require_root, running_lab};
use std::process::Output;
use wiremesh::lab::{Lab, Signal};

/// Runs `wiremesh check` inside `node`'s namespace against the lab's derived topology.
fn check(lab: &Lab, node: &str, extra: &[&str]) -> Output {
    let topo = lab.derived_topology_path();
    let mut args = vec![
        exe().display().to_string(),
        "check".into(),
        "--topology".into(),
        topo.display().to_string(),
        "--node".into(),
        node.into(),
        "--interface".into(),
        lab.ifname(node).unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    lab.exec(node, &args).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_passes_from_every_node_of_a_healthy_mesh_and_reports_json() {
    if !require_root() {
        return;
    }
    let lab = running_lab("three-regions.toml");
    for node in lab.nodes() {
        let out = check(&lab, &node, &[]);
        println!("{}", text(&out));
        assert!(out.status.success(), "check from {node}: {}", text(&out));
        let table = String::from_utf8_lossy(&out.stdout);
        assert_eq!(table.matches(" ok").count(), 3, "{table}");
    }
    let out = check(&lab, "a", &["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let peers = report["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 3);
    for p in peers {
        assert_eq!(p["full_size"], true, "{p}");
        assert!(p["rtt_ms"].as_f64().is_some(), "{p}");
        assert!(p["handshake_age_s"].as_u64().unwrap() < 180, "{p}");
    }
}

#[test]
fn check_fails_and_names_the_peer_whose_daemon_was_killed() {
    if !require_root() {
        return;
    }
    let mut lab = running_lab("three-regions.toml");
    let first = check(&lab, "a", &[]);
    assert!(first.status.success(), "{}", text(&first));

    lab.kill_daemon("d", Signal::Kill).unwrap();
    let out = check(&lab, "a", &["--timeout", "1s"]);
    println!("{}", text(&out));
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FAIL peer d: echo to"),
        "no failure line for d: {}",
        text(&out)
    );
    assert!(
        !stderr.contains("peer b:") && !stderr.contains("peer c:"),
        "healthy peers reported as failing: {}",
        text(&out)
    );
    assert!(
        stderr.contains("1 of 3 peer(s) unhealthy"),
        "{}",
        text(&out)
    );
}
