//! Live changes to a running mesh with real daemons:
//! - SIGHUP after a node is added to the topology: the new node is reached, and no existing
//!   session is reset (every pre-existing peer keeps its handshake time).
//! - SIGKILL of one daemon and a restart: connectivity returns, and the other daemons keep their
//!   processes and sessions with each other.

mod common;

use common::{assert_all_pairs, new_lab, require_root, running_lab, wg_handshakes};
use std::collections::BTreeMap;
use std::time::Duration;
use wiremesh::lab::{Lab, Signal};

const PING: Duration = Duration::from_secs(5);

fn handshakes(lab: &Lab, nodes: &[&str]) -> BTreeMap<String, BTreeMap<String, u64>> {
    nodes
        .iter()
        .map(|n| (n.to_string(), wg_handshakes(lab.ifname(n).unwrap())))
        .collect()
}

/// The topology text without the `[[node]]` table named `name`.
fn without_node(text: &str, name: &str) -> String {
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    let nodes = doc["node"].as_array_of_tables_mut().unwrap();
    let idx = nodes
        .iter()
        .position(|t| t["name"].as_str() == Some(name))
        .unwrap();
    nodes.remove(idx);
    doc.to_string()
}

#[test]
fn sighup_brings_in_a_new_node_without_resetting_any_existing_session() {
    if !require_root() {
        return;
    }
    let mut lab = new_lab("three-regions.toml");
    let path = lab.derived_topology_path();
    let full = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, without_node(&full, "d")).unwrap();
    lab.start_daemons_of(&["a", "b", "c"]).unwrap();
    for (from, to) in [("a", "b"), ("a", "c"), ("b", "c")] {
        let addr = lab.overlay_addrs(to).unwrap()[0];
        assert!(
            lab.ping(from, addr, PING).unwrap().is_some(),
            "{from} → {to}"
        );
    }
    let before = handshakes(&lab, &["a", "b", "c"]);
    for peers in before.values() {
        assert_eq!(peers.len(), 2);
    }

    std::fs::write(&path, &full).unwrap();
    for n in ["a", "b", "c"] {
        lab.kill_daemon(n, Signal::Hup).unwrap();
    }
    lab.start_daemons_of(&["d"]).unwrap();
    assert_all_pairs(&lab, PING);

    let after = handshakes(&lab, &["a", "b", "c"]);
    for (node, peers) in &before {
        assert_eq!(
            after[node].len(),
            3,
            "{node} did not add d: {:?}",
            after[node]
        );
        for (key, t) in peers {
            assert_eq!(
                after[node][key], *t,
                "{node}: the session with {key} was reset by the reload"
            );
        }
    }
}

#[test]
fn a_killed_daemon_restarts_into_the_mesh_without_touching_the_others() {
    if !require_root() {
        return;
    }
    let mut lab = running_lab("three-regions.toml");
    assert!(lab.ping_matrix(PING).unwrap().all_ok());
    let others = ["a", "b", "d"];
    let pids: Vec<_> = others.iter().map(|n| lab.daemon_pid(n)).collect();
    let c_key = lab
        .topology()
        .unwrap()
        .node("c")
        .unwrap()
        .public_key
        .to_string();
    let before = handshakes(&lab, &others);

    lab.kill_daemon("c", Signal::Kill).unwrap();
    let c = lab.overlay_addrs("c").unwrap()[0];
    assert!(lab
        .ping("a", c, Duration::from_millis(500))
        .unwrap()
        .is_none());
    lab.restart_daemon("c").unwrap();
    let matrix = lab.ping_matrix(PING).unwrap();
    println!("{matrix}");
    assert!(matrix.all_ok(), "after restart:\n{matrix}");

    let after = handshakes(&lab, &others);
    assert_eq!(
        others.iter().map(|n| lab.daemon_pid(n)).collect::<Vec<_>>(),
        pids
    );
    for (node, peers) in &before {
        for (key, t) in peers {
            if *key == c_key {
                assert!(
                    after[node][key] >= *t,
                    "{node}: handshake with the restarted c"
                );
            } else {
                assert_eq!(
                    after[node][key], *t,
                    "{node}: session with {key} was disturbed"
                );
            }
        }
    }
}
