//! Topology text → checked `Topology` → every node's `Plan`. Whatever the text, parsing returns
//! a value or a typed error (whose message is rendered too, since it quotes the file), and a
//! topology that passed validation must plan for each of its nodes without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use wiremesh::core::plan::Plan;
use wiremesh::core::topology::Topology;

/// Planning is linear per node, so all nodes is quadratic: a cap keeps large inputs fast.
const MAX_PLANNED_NODES: usize = 16;

fuzz_target!(|data: &[u8]| {
    // a topology file is read with `read_to_string`: anything else never gets this far
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Topology::parse(text, Path::new("fuzz.toml")) {
        Ok(topo) => {
            for node in topo.nodes.iter().take(MAX_PLANNED_NODES) {
                match Plan::compute(&topo, &node.name) {
                    Ok(plan) => assert_eq!(plan.node, node.name),
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
