//! Static-key rotation with real daemons in namespaces (four-node dual-stack full mesh):
//! pings every 10 ms and a TCP transfer cross the mesh while one node rotates, then while all
//! rotate at once; the old key is refused after the grace window; a daemon restarted right
//! after its rotation comes back with the new key.

mod common;

use boringtun::noise::{Tunn, TunnResult};
use common::{daemon_status as status, ping_stream, require_root, rotate, running_lab, wait_for};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremesh::core::key::PrivateKey;
use wiremesh::core::topology::Topology;
use wiremesh::io::keyfile;
use wiremesh::lab::{in_netns, Lab};

/// Short, so the test sees the old key refused without waiting two minutes.
const GRACE: &str = "4s";
const PING_EVERY: Duration = Duration::from_millis(10);

/// Waits until every daemon sends over sessions under everyone's newest keys and nobody
/// holds a previous key any more (`retired`), or only the former (`!retired`).
fn wait_converged(lab: &Lab, retired: bool, within: Duration) -> Duration {
    let t0 = Instant::now();
    wait_for(within, Duration::from_millis(20), "convergence", || {
        let done = lab.nodes().iter().all(|n| {
            status(lab, n)
                .peers
                .iter()
                .all(|p| p.on_newest_keys && (!retired || p.previous_key.is_none()))
        });
        if done {
            Ok(())
        } else {
            Err("a peer is not on its newest keys yet")
        }
    });
    t0.elapsed()
}

/// Sends a handshake initiation made with `private` to `peer`'s underlay from `node`'s
/// namespace; whether any answer came back within a second.
fn old_key_gets_an_answer(lab: &Lab, node: &str, private: PrivateKey, peer: &str) -> bool {
    let topo = Topology::load(&lab.derived_topology_path()).unwrap();
    let peer_key = topo.node(peer).unwrap().public_key;
    let port = topo.node(peer).unwrap().listen_port;
    let to = SocketAddr::new(IpAddr::V4(lab.underlay_addr(peer).unwrap()), port);
    in_netns(lab.node_ns(node).unwrap(), move || {
        let mut tunn = Tunn::new(
            private.secret().clone(),
            peer_key.to_x25519(),
            None,
            None,
            7,
            None,
        );
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = vec![0u8; 2048];
        let TunnResult::WriteToNetwork(init) = tunn.format_handshake_initiation(&mut buf, false)
        else {
            panic!("no initiation");
        };
        sock.send_to(init, to).unwrap();
        let mut answer = [0u8; 2048];
        sock.recv_from(&mut answer).is_ok()
    })
    .join()
    .unwrap()
    .unwrap()
}

fn key_path(lab: &Lab, node: &str) -> std::path::PathBuf {
    lab.state_dir().join("keys").join(format!("{node}.key"))
}

#[test]
fn rotation_loses_no_ping_refuses_the_old_key_and_survives_a_restart() {
    if !require_root() {
        return;
    }
    // inherited by the lab's daemons (settings' environment layer); this binary has one test
    std::env::set_var("WIREMESH_ROTATION_GRACE", GRACE);
    let mut lab = running_lab("full-dual-stack.toml");
    let matrix = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    assert!(matrix.all_ok(), "{matrix}");
    let addr = |n: &str| lab.overlay_addrs(n).unwrap()[0];

    // 1. one node rotates under pings every 10 ms and a paced TCP transfer
    let old_a = keyfile::read_private(&key_path(&lab, "a")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = [("b", "a"), ("a", "c"), ("d", "a"), ("c", "d")]
        .iter()
        .map(|(from, to)| ping_stream(&lab, from, addr(to), PING_EVERY, stop.clone()))
        .collect();
    let (b_ns, a_ns, a_addr) = (
        lab.node_ns("b").unwrap().to_string(),
        lab.node_ns("a").unwrap().to_string(),
        addr("a"),
    );
    let transfer = std::thread::spawn(move || {
        wiremesh::lab::tcp_transfer_paced(
            &b_ns,
            &a_ns,
            a_addr,
            5301,
            24 << 20,
            Some(6 << 20),
            Duration::from_secs(60),
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    let new_a = rotate(&lab, "a");
    let switched = wait_converged(&lab, false, Duration::from_secs(15));
    let since_rotate = t0.elapsed();
    wait_converged(&lab, true, Duration::from_secs(30));
    let unused = t0.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let t = transfer.join().unwrap().unwrap();
    let mut longest = Duration::ZERO;
    for s in streams {
        let s = s.join().unwrap().unwrap();
        println!("stream: {s:?}");
        assert_eq!(s.lost, 0, "a ping was lost during the rotation: {s:?}");
        longest = longest.max(s.longest_gap);
    }
    println!(
        "one rotation: traffic on the new key everywhere {switched:?} after asking \
         ({since_rotate:?} incl. polling), old key unused by every peer {unused:?}, \
         longest ping gap {longest:?}"
    );
    assert!(t.intact() && t.bytes == 24 << 20, "transfer {t:?}");
    for n in ["b", "c", "d"] {
        let a = status(&lab, n)
            .peers
            .into_iter()
            .find(|p| p.name == "a")
            .unwrap();
        assert_eq!(a.public_key, new_a, "{n} uses a's new key");
    }
    let topo = Topology::load(&lab.derived_topology_path()).unwrap();
    assert_eq!(topo.node("a").unwrap().public_key.to_string(), new_a);
    // after the grace window the old private key completes no handshake anywhere
    for peer in ["b", "c", "d"] {
        assert!(
            !old_key_gets_an_answer(&lab, "a", old_a.clone(), peer),
            "{peer} answered a's old key"
        );
    }

    // 2. every node at the same moment
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = [("b", "a"), ("c", "d")]
        .iter()
        .map(|(from, to)| ping_stream(&lab, from, addr(to), PING_EVERY, stop.clone()))
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let new_keys: Vec<(String, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| {
                let (barrier, lab) = (barrier.clone(), &lab);
                s.spawn(move || {
                    barrier.wait();
                    (n.to_string(), rotate(lab, n))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all = wait_converged(&lab, true, Duration::from_secs(40));
    stop.store(true, Ordering::Relaxed);
    for s in streams {
        let s = s.join().unwrap().unwrap();
        println!("stream (all rotating): {s:?}");
        assert_eq!(s.lost, 0, "{s:?}");
    }
    println!("all four rotating at once: converged and retired in {all:?}");
    let topo = Topology::load(&lab.derived_topology_path()).unwrap();
    for (n, key) in &new_keys {
        assert_eq!(&topo.node(n).unwrap().public_key.to_string(), key);
        assert_eq!(&status(&lab, n).public_key, key);
    }
    let matrix = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    assert!(matrix.all_ok(), "{matrix}");

    // 3. a daemon restarted right after its rotation comes back with the new key
    let new_c = rotate(&lab, "c");
    std::thread::sleep(Duration::from_millis(300));
    lab.restart_daemon("c").unwrap();
    assert_eq!(status(&lab, "c").public_key, new_c);
    wait_converged(&lab, false, Duration::from_secs(20));
    let matrix = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    assert!(matrix.all_ok(), "{matrix}");
    for n in ["a", "b", "d"] {
        let c = status(&lab, n)
            .peers
            .into_iter()
            .find(|p| p.name == "c")
            .unwrap();
        assert_eq!(c.public_key, new_c, "{n} accepts c's new key");
    }
    lab.down().unwrap();
}
