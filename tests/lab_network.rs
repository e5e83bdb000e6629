//! The lab's underlay in real namespaces: routes between regions, per-region MTUs, and teardown
//! that leaves nothing behind, also after a build that failed halfway. Needs root.

mod common;

use common::{exe, namespaces_of, require_root, topology, unique_prefix};
use std::path::Path;
use std::time::Duration;
use wiremesh::lab::{Lab, LabError, LabOptions};

fn build(prefix: &str) -> Lab {
    Lab::build(
        &topology("three-regions.toml"),
        LabOptions::new(prefix, exe()),
    )
    .expect("lab builds")
}

#[test]
fn every_node_reaches_every_other_over_the_underlay_across_three_regions() {
    if !require_root() {
        return;
    }
    let lab = build(&unique_prefix());
    let nodes = lab.nodes();
    for a in &nodes {
        for b in nodes.iter().filter(|b| *b != a) {
            let to = lab.underlay_addr(b).unwrap().into();
            let rtt = lab.ping(a, to, Duration::from_secs(2)).unwrap();
            assert!(rtt.is_some(), "no underlay reply from {a} to {b} ({to})");
        }
    }
    let nobody = "172.31.1.99".parse().unwrap();
    let rtt = lab.ping("a", nobody, Duration::from_millis(300)).unwrap();
    assert_eq!(rtt, None, "an address no namespace holds must not answer");
    let v6 = lab.layout().node("d").unwrap().underlay_v6;
    assert!(
        lab.ping("a", v6.into(), Duration::from_secs(3))
            .unwrap()
            .is_some(),
        "IPv6 underlay a -> d"
    );
}

#[test]
fn region_mtus_are_set_on_eth0_the_veth_peer_and_the_bridge() {
    if !require_root() {
        return;
    }
    let lab = build(&unique_prefix());
    let core = lab.layout().core_ns.clone();
    for (node, want) in [("a", 1500), ("b", 1500), ("c", 1460), ("d", 1400)] {
        let n = lab.layout().node(node).unwrap();
        let bridge = &lab.layout().region(&n.region).unwrap().bridge;
        assert_eq!(lab.link_mtu(&n.ns, "eth0").unwrap(), want, "{node} eth0");
        assert_eq!(lab.link_mtu(&core, &n.veth).unwrap(), want, "{node} veth");
        assert_eq!(lab.link_mtu(&core, bridge).unwrap(), want, "{node} bridge");
    }
}

#[test]
fn the_derived_topology_loads_with_the_lab_keys_and_endpoints() {
    if !require_root() {
        return;
    }
    let lab = build(&unique_prefix());
    let derived = wiremesh::core::topology::Topology::load(&lab.derived_topology_path()).unwrap();
    for node in &derived.nodes {
        let lay = lab.layout().node(&node.name).unwrap();
        assert_eq!(
            node.endpoint.as_ref().unwrap().to_string(),
            format!("{}:51820", lay.underlay_v4)
        );
        let key = wiremesh::io::keyfile::read_private(
            &lab.state_dir()
                .join("keys")
                .join(format!("{}.key", node.name)),
        );
        assert_eq!(key.unwrap().public_key(), node.public_key);
    }
}

#[test]
fn dropping_the_lab_removes_its_namespaces_and_state_directory() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let lab = build(&prefix);
    let dir = lab.state_dir().to_path_buf();
    assert_eq!(namespaces_of(&prefix).len(), 5);
    drop(lab);
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_second_lab_with_the_same_prefix_is_refused() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let _lab = build(&prefix);
    let err = Lab::build(
        &topology("three-regions.toml"),
        LabOptions::new(&prefix, exe()),
    )
    .unwrap_err();
    assert!(matches!(err, LabError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("lab down"), "{err}");
}

#[test]
fn a_build_that_fails_halfway_leaves_nothing_it_created() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    // A stray namespace where node c's will go makes the build fail after core, a and b exist.
    let stray = format!("{prefix}-c");
    run("ip", &["netns", "add", &stray]);
    let err = Lab::build(
        &topology("three-regions.toml"),
        LabOptions::new(&prefix, exe()),
    )
    .unwrap_err();
    assert!(err.to_string().contains(&stray), "{err}");
    assert_eq!(
        namespaces_of(&prefix),
        vec![stray.clone()],
        "only the stray namespace may remain"
    );
    assert!(!Path::new("/run/wiremesh-lab").join(&prefix).exists());
    run("ip", &["netns", "delete", &stray]);
}

#[test]
fn down_removes_a_half_built_lab_and_is_idempotent() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let lab = build(&prefix);
    lab.detach();
    // Simulate a crash mid-build: the state file is gone, one namespace was never created.
    std::fs::remove_file(
        Path::new("/run/wiremesh-lab")
            .join(&prefix)
            .join("state.json"),
    )
    .unwrap();
    run("ip", &["netns", "delete", &format!("{prefix}-d")]);
    Lab::down_prefix(&prefix).unwrap();
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());
    assert!(!Path::new("/run/wiremesh-lab").join(&prefix).exists());
    Lab::down_prefix(&prefix).unwrap();
}

#[test]
fn starting_a_missing_daemon_executable_fails_and_still_tears_down() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let mut lab = Lab::build(
        &topology("three-regions.toml"),
        LabOptions::new(&prefix, "/nonexistent/wiremesh"),
    )
    .unwrap();
    let err = lab.start_daemons().unwrap_err();
    assert!(matches!(err, LabError::Daemon { .. }), "{err}");
    drop(lab);
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());
}

fn run(program: &str, args: &[&str]) {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "{program} {args:?}");
}
