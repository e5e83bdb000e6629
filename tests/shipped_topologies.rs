//! Every example in `topologies/` is brought up in namespaces, daemons and all, and reaches
//! every ordered pair: a shipped example that does not work is a bug (the two-hub example once
//! reached 36 of its 42 pairs while `lab up` printed the failure and exited 0).

mod common;

use common::{assert_all_pairs, exe, require_root, unique_prefix};
use std::path::Path;
use std::time::Duration;
use wiremesh::lab::{Lab, LabOptions};

#[test]
fn every_shipped_topology_reaches_all_its_pairs() {
    if !require_root() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        println!("{}", file.display());
        let mut lab = Lab::build(&file, LabOptions::new(unique_prefix(), exe())).unwrap();
        lab.start_daemons().unwrap();
        assert_all_pairs(&lab, Duration::from_secs(5));
        lab.down().unwrap();
    }
}

#[test]
fn lab_up_exits_non_zero_when_a_pair_fails() {
    if !require_root() {
        return;
    }
    // a daemon that exits at once leaves its pairs unreachable: `--no-daemons` would not ping,
    // so start the lab and kill one node, then ask `lab status`, which pings every pair
    let prefix = unique_prefix();
    let mut lab = Lab::build(
        &common::topology("three-regions.toml"),
        LabOptions::new(prefix.clone(), exe()),
    )
    .unwrap();
    lab.start_daemons().unwrap();
    let ok = std::process::Command::new(exe())
        .args(["lab", "status", "--prefix", &prefix])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let victim = lab.nodes()[0].clone();
    lab.kill_daemon(&victim, wiremesh::lab::Signal::Kill)
        .unwrap();
    let out = std::process::Command::new(exe())
        .args(["lab", "status", "--prefix", &prefix])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a failed pair must fail the command");
    assert!(stderr.contains("6 of 12 pairs got no reply"), "{stderr}");
    assert!(stderr.contains(&victim), "{stderr}");
}
