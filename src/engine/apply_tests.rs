//! Reloads at scale: applying a plan where one node changed touches that node's peer record
//! only (every other peer keeps its very settings object, the table is kept when no AllowedIPs
//! moved), and a node added or removed changes the table by exactly that peer.

use super::Device;
use crate::core::key::PrivateKey;
use crate::core::plan::Plan;
use crate::core::topology::Topology;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const NODES: usize = 300;

fn topology(keys: &[PrivateKey], endpoint_of_7: &str, extra: bool) -> Topology {
    let mut text = String::from("mode = \"full\"\ncluster-cidr = \"10.0.0.0/8\"\n");
    let n = if extra { keys.len() } else { keys.len() - 1 };
    for (i, key) in keys.iter().take(n).enumerate() {
        let endpoint = if i == 7 {
            endpoint_of_7.to_string()
        } else {
            format!("192.0.2.{}:51820", i % 250 + 1)
        };
        text.push_str(&format!(
            "[[node]]\nname = \"n{i}\"\ncloud = \"c\"\nregion = \"r\"\nendpoint = \"{endpoint}\"\npublic-key = \"{}\"\n",
            key.public_key()
        ));
    }
    Topology::parse(&text, Path::new("mem.toml")).unwrap()
}

fn configs(dev: &Device) -> HashMap<String, Arc<super::PeerConfig>> {
    dev.peers().iter().map(|p| (p.name(), p.config())).collect()
}

#[test]
fn a_reload_that_moves_one_node_touches_only_that_peer() {
    let keys: Vec<PrivateKey> = (0..=NODES)
        .map(|_| crate::io::keyfile::generate())
        .collect();
    let first = Plan::compute(&topology(&keys, "192.0.2.8:51820", false), "n0").unwrap();
    let dev = Device::new(keys[0].clone(), &first, Instant::now());
    let table = dev.peers();
    let before = configs(&dev);
    assert_eq!(before.len(), NODES - 1);

    let moved = Plan::compute(&topology(&keys, "192.0.2.99:51820", false), "n0").unwrap();
    assert!(dev.apply(&moved, Instant::now()).is_empty());
    assert!(
        Arc::ptr_eq(&table, &dev.peers()),
        "no AllowedIPs moved: the table stays"
    );
    let after = configs(&dev);
    let touched: Vec<&String> = after
        .iter()
        .filter(|(name, c)| !Arc::ptr_eq(c, &before[*name]))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(touched, ["n7"]);
    let n7 = dev
        .peers()
        .iter()
        .find(|p| p.name() == "n7")
        .unwrap()
        .clone();
    assert_eq!(n7.endpoint(), Some("192.0.2.99:51820".parse().unwrap()));

    // one node more: one peer created, every existing record kept
    let grown = Plan::compute(&topology(&keys, "192.0.2.99:51820", true), "n0").unwrap();
    let created = dev.apply(&grown, Instant::now());
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].name(), format!("n{NODES}"));
    let now = configs(&dev);
    assert_eq!(now.len(), NODES);
    assert!(after.iter().all(|(name, c)| Arc::ptr_eq(c, &now[name])));
    assert_eq!(dev.awake_count(), 0, "a reload wakes no peer");
}
