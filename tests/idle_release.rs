//! Lazy peer state with real daemons in namespaces: peers that go quiet give their session
//! state back (the control socket's awake count falls to zero), and the next packet either way
//! brings them back without being lost: the first ping of each direction is answered.

mod common;

use common::{require_root, running_lab, wait_for};
use std::time::Duration;
use wiremesh::io::control_socket::{self, ControlRequest};
use wiremesh::lab::Lab;

/// Peers holding session state in `node`'s daemon.
fn awake(lab: &Lab, node: &str) -> usize {
    let socket = control_socket::socket_path(lab.ifname(node).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resp = rt
        .block_on(control_socket::request(&socket, &ControlRequest::Status))
        .unwrap();
    resp.status.expect("a status answer").awake_peers
}

#[test]
fn quiet_peers_are_released_and_the_first_packet_after_reaches_them() {
    if !require_root() {
        return;
    }
    // inherited by the lab's daemons (the settings' environment layer); this test binary
    // holds only this test, so no other test sees it
    std::env::set_var("WIREMESH_RELEASE_IDLE_AFTER", "2s");
    let lab = running_lab("three-regions.toml");
    let nodes = lab.nodes();
    let (a, b) = (nodes[0].as_str(), nodes[1].as_str());
    let to_b = lab.overlay_addrs(b).unwrap()[0];
    let to_a = lab.overlay_addrs(a).unwrap()[0];
    assert!(lab.ping(a, to_b, Duration::from_secs(5)).unwrap().is_some());
    assert!(awake(&lab, a) >= 1);

    // path-MTU confirmations stop 10 s after the last data packet; 2 s of quiet later the
    // state goes
    wait_for(
        Duration::from_secs(40),
        Duration::from_millis(500),
        "release of every peer",
        || {
            let counts: Vec<usize> = nodes.iter().map(|n| awake(&lab, n)).collect();
            if counts.iter().all(|&c| c == 0) {
                Ok(())
            } else {
                Err(format!(
                    "awake peers per node after 40 s of quiet: {counts:?}"
                ))
            }
        },
    );

    // one echo each way, each the first packet towards a released peer: it waits for the
    // handshake instead of being lost
    let rtt = lab.ping(a, to_b, Duration::from_secs(3)).unwrap();
    assert!(
        rtt.is_some(),
        "{a} -> {b}: the first packet after the release was lost"
    );
    assert_eq!(awake(&lab, a), 1);
    assert_eq!(awake(&lab, b), 1);
    let c = nodes[2].as_str();
    let to_c = lab.overlay_addrs(c).unwrap()[0];
    let rtt_c = lab.ping(c, to_a, Duration::from_secs(3)).unwrap();
    assert!(
        rtt_c.is_some(),
        "{c} -> {a}: the first packet after the release was lost"
    );
    assert!(lab.ping(b, to_c, Duration::from_secs(3)).unwrap().is_some());
    eprintln!(
        "first echo after release: {a}->{b} {:?}, {c}->{a} {:?}",
        rtt.unwrap(),
        rtt_c.unwrap()
    );
}
