//! Hub mode with real daemons: two regions, a hub and two spokes each. Every pair reaches every
//! other (spoke → hub → hub → spoke across regions), and `wg show` on each spoke's UAPI socket
//! lists its region's hub as its only peer.

mod common;

use common::{assert_all_pairs, require_root, running_lab, wg_peers};
use std::time::Duration;

#[test]
fn every_pair_reaches_every_other_and_spokes_peer_only_with_their_hub() {
    if !require_root() {
        return;
    }
    let lab = running_lab("hub-two-regions.toml");
    assert_all_pairs(&lab, Duration::from_secs(5));

    let topo = lab.topology().unwrap().clone();
    for node in &topo.nodes {
        let peers = wg_peers(lab.ifname(&node.name).unwrap());
        if node.hub {
            // the other hub, plus this region's two spokes
            assert_eq!(peers.len(), 3, "{}: {peers:?}", node.name);
        } else {
            let hub = topo.hubs_of(&node.region).next().unwrap();
            assert_eq!(
                peers,
                vec![hub.public_key.to_string()],
                "{} must peer only with {}",
                node.name,
                hub.name
            );
        }
    }

    // a spoke-to-spoke transfer across regions crosses both hubs intact
    let to = lab.overlay_addrs("us-s2").unwrap()[0];
    let t = lab
        .transfer("eu-s1", "us-s2", to, 16 * 1024 * 1024)
        .unwrap();
    println!("eu-s1 → us-s2 via two hubs: {:.0} Mbit/s", t.mbit_per_s());
    assert!(t.intact());
}
