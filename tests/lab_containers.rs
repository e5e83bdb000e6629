//! Containers in the lab: `wiremesh lab up --containers N` attaches container namespaces to
//! every node through the CNI plugin chain (wiremesh-cni, portmap) as a runtime does, and the
//! all-pairs matrix covers them. Two nodes in two regions (`cni-two-regions.toml`), dual stack.
//!
//! ```text
//!   P-a (node a, daemon, bridge Pb0)           P-b (node b, daemon, bridge Pb1)
//!    ├── P-c0-0  a/c0  10.244.x.2               ├── P-c1-0  b/c0  10.244.y.2
//!    └── P-c0-1  a/c1  10.244.x.3               └── P-c1-1  b/c1  10.244.y.3
//! ```

mod common;

use common::{
    namespaces_of, nft_count_from, nft_count_sources, require_root, running_lab_with_containers,
    text, topology, transfer_across_a_shrinking_path, unique_prefix, wait_node_state_mtu, wiremesh,
};
use ipnet::IpNet;
use std::time::Duration;
use wiremesh::lab::{ping_in_ns, Lab};

const TOPOLOGY: &str = "cni-two-regions.toml";

/// The MTU of a container's eth0.
fn eth0_mtu(ns: &str) -> u32 {
    let out = common::run(&["ip", "-n", ns, "-o", "link", "show", "eth0"]);
    let mtu = out.split_whitespace().skip_while(|w| *w != "mtu").nth(1);
    mtu.and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no MTU in {out}"))
}

/// Links in a namespace other than lo (`ip -o link` names, `@peer` cut off).
fn links(ns: &str) -> Vec<String> {
    let out = common::run(&["ip", "-n", ns, "-o", "link", "show"]);
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n != "lo")
        .collect()
}

#[test]
fn containers_on_two_nodes_reach_each_other_and_every_node_from_their_pod_addresses() {
    if !require_root() {
        return;
    }
    let mut lab = running_lab_with_containers(TOPOLOGY, 2);
    let topo = lab.topology().unwrap().clone();
    assert_eq!(lab.containers().len(), 4);
    for c in lab.containers() {
        let node = topo.node(&c.node).unwrap();
        assert_eq!(c.addrs.len(), 2, "{c:?}: one address per family");
        assert!(
            IpNet::V4(node.pod_cidr).contains(&c.addrs[0]),
            "{c:?} outside {node:?}"
        );
        assert!(
            IpNet::V6(node.pod_cidr_v6.unwrap()).contains(&c.addrs[1]),
            "{c:?}: IPv6 address outside the node's pod CIDR"
        );
    }

    let matrix = lab.ping_matrix(Duration::from_secs(10)).unwrap();
    println!("{matrix}");
    assert_eq!(matrix.nodes, ["a", "b", "a/c0", "a/c1", "b/c0", "b/c1"]);
    assert!(matrix.all_ok(), "failed {:?}\n{matrix}", matrix.failures());
    let node_of = |name: &str| name.split('/').next().unwrap().to_string();
    let mut across = 0;
    for (i, from) in matrix.nodes.iter().enumerate() {
        for (j, to) in matrix.nodes.iter().enumerate() {
            if from.contains('/') && to.contains('/') && node_of(from) != node_of(to) {
                assert!(matrix.rtt[i][j].is_some(), "{from} → {to}");
                across += 1;
            }
        }
    }
    assert_eq!(
        across, 8,
        "every container pair across the nodes is in the matrix"
    );

    // a/c0's packets reach b/c0 from a/c0's own pod addresses, IPv4 and IPv6 (no masquerade)
    let (from, to) = (lab.containers()[0].clone(), lab.containers()[2].clone());
    assert_eq!((from.node.as_str(), to.node.as_str()), ("a", "b"));
    let table = format!("{}ctr", lab.prefix());
    nft_count_sources(&to.ns, &table, "input", "eth0", &from.addrs);
    for (src, dst) in from.addrs.iter().zip(&to.addrs) {
        let rtt = ping_in_ns(&from.ns, *dst, Duration::from_secs(5)).unwrap();
        assert!(
            rtt.is_some(),
            "{} {src} → {} {dst}: no reply",
            from.name,
            to.name
        );
        let counted = nft_count_from(&to.ns, &table, "eth0", *src);
        println!(
            "{src} → {dst}: {rtt:?}, {counted} packets from {src} at {}",
            to.name
        );
        assert!(counted >= 1, "{} saw nothing from {src}", to.name);
    }

    // removing the containers: DEL for each, namespaces, veths, bridges and reservations gone
    let ctr_ns: Vec<String> = lab.containers().iter().map(|c| c.ns.clone()).collect();
    lab.remove_containers().unwrap();
    assert!(lab.containers().is_empty());
    for node in ["a", "b"] {
        assert!(lab.cni_reservations(node).unwrap().is_empty(), "{node}");
        let left = links(lab.node_ns(node).unwrap());
        assert_eq!(
            left.len(),
            2,
            "{node}: only eth0 and the tun should stay: {left:?}"
        );
        assert!(!left.contains(&lab.cni_bridge(node).unwrap()), "{left:?}");
    }
    let prefix = lab.prefix().to_string();
    let left: Vec<String> = namespaces_of(&prefix)
        .into_iter()
        .filter(|n| ctr_ns.contains(n))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    lab.down().unwrap();
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());
}

/// Removes a lab the CLI made, even when the test fails halfway.
struct CliLab(String);

impl Drop for CliLab {
    fn drop(&mut self) {
        let _ = Lab::down_prefix(&self.0);
    }
}

#[test]
fn lab_up_with_containers_reports_them_and_lab_down_removes_them() {
    if !require_root() {
        return;
    }
    let lab = CliLab(unique_prefix());
    let p = lab.0.as_str();
    let topo = topology(TOPOLOGY);
    let up = wiremesh(&[
        "lab",
        "up",
        topo.to_str().unwrap(),
        "--prefix",
        p,
        "--containers",
        "2",
    ]);
    let up_text = text(&up);
    println!("{up_text}");
    assert!(up.status.success(), "{up_text}");
    for name in ["a/c0", "a/c1", "b/c0", "b/c1"] {
        assert!(up_text.contains(name), "{name} missing:\n{up_text}");
    }
    assert!(!up_text.contains('✗'), "{up_text}");
    let ctr_ns = format!("{p}-c1-1");
    assert!(namespaces_of(p).contains(&ctr_ns), "{:?}", namespaces_of(p));

    let status = wiremesh(&["lab", "status", "--prefix", p]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains(&ctr_ns), "{}", text(&status));

    let state = wiremesh::lab::state::StateDir::for_prefix(p);
    let down = wiremesh(&["lab", "down", "--prefix", p]);
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(namespaces_of(p), Vec::<String>::new());
    assert!(!state.root().exists(), "{}", state.root().display());
}

#[test]
fn a_restarted_daemon_frees_the_addresses_of_containers_gone_without_a_del() {
    if !require_root() {
        return;
    }
    let mut lab = running_lab_with_containers(TOPOLOGY, 2);
    let (live, dead) = (lab.containers()[0].clone(), lab.containers()[1].clone());
    assert_eq!((live.node.as_str(), dead.node.as_str()), ("a", "a"));
    // the runtime lost a/c1 without a DEL (its namespace simply went), and an address is
    // reserved by a container no cache entry knows (left from before a reboot)
    common::run(&["ip", "netns", "delete", &dead.ns]);
    let store = lab.cni_store("a").unwrap();
    let std::net::IpAddr::V4(v4) = live.addrs[0] else {
        panic!("{live:?}: IPv4 first")
    };
    let orphan = std::net::Ipv4Addr::from(u32::from(v4) & !0xff | 200);
    std::fs::write(store.join(orphan.to_string()), "gone-before-reboot\r\neth0").unwrap();
    assert_eq!(lab.cni_reservations("a").unwrap().len(), 5);

    lab.restart_daemon("a").unwrap();
    let mut left = lab.cni_reservations("a").unwrap();
    left.sort();
    let mut expected = live.addrs.clone();
    expected.sort();
    assert_eq!(
        left, expected,
        "only the live container's addresses stay reserved"
    );
    let log = std::fs::read_to_string(lab.log_path("a")).unwrap();
    assert!(
        log.contains("containers_gone=1") && log.contains("addresses_freed=3"),
        "the sweep says what it freed:\n{log}"
    );

    // the live container still reaches node b's container; a new one gets an address; DEL of
    // the swept container still succeeds (idempotent)
    let other = lab.containers()[2].clone();
    let rtt = ping_in_ns(&live.ns, other.addrs[0], Duration::from_secs(5)).unwrap();
    assert!(rtt.is_some(), "{} → {}: no reply", live.name, other.name);
    let added = lab.add_container("a").unwrap();
    assert_eq!(added.container.addrs.len(), 2);
    lab.remove_container(&dead.ns).unwrap();
    lab.remove_containers().unwrap();
    assert!(lab.cni_reservations("a").unwrap().is_empty());
    lab.down().unwrap();
}

#[test]
fn after_a_path_shrinks_an_old_container_is_told_the_new_mtu_and_a_new_one_gets_it() {
    if !require_root() {
        return;
    }
    let mut lab = running_lab_with_containers(TOPOLOGY, 1);
    let (old, far) = (lab.containers()[0].clone(), lab.containers()[1].clone());
    assert_eq!((old.node.as_str(), far.node.as_str()), ("a", "b"));
    assert_eq!(eth0_mtu(&old.ns), 1440);

    // a silent black hole above 1360 bytes between the regions while a container-to-container
    // transfer runs: the old container (MTU 1440) must learn the smaller path from the node
    // ("fragmentation needed") for its TCP to get through
    let to = (old.ns.clone(), far.ns.clone(), far.addrs[0]);
    let transfer = transfer_across_a_shrinking_path(&lab, to, 5204, 1360);
    let t = transfer.join().unwrap().unwrap();
    assert!(
        t.intact(),
        "the container transfer across the shrink arrived damaged"
    );

    // a full-size DF ping from the old container is refused with the path's MTU, named by the
    // node (ICMP) or, once learnt, by the container's own kernel; one that fits gets through
    let ping = |size: &str| {
        common::run_status(&[
            "ip",
            "netns",
            "exec",
            &old.ns,
            "ping",
            "-M",
            "do",
            "-c",
            "2",
            "-i",
            "0.3",
            "-W",
            "2",
            "-s",
            size,
            &far.addrs[0].to_string(),
        ])
    };
    let (ok, out) = ping("1372");
    println!("1400-byte DF ping: {out}");
    assert!(
        !ok,
        "a 1400-byte DF ping crossed a 1360-byte black hole: {out}"
    );
    assert!(
        out.contains("mtu = 1300") || out.contains("mtu=1300"),
        "the old container was not told the path MTU 1300: {out}"
    );
    let (ok, out) = ping("1272");
    assert!(ok, "a 1300-byte DF ping did not get through: {out}");

    // the node state now says 1300, and a container added now starts there
    wait_node_state_mtu(&lab, "a", 1300, Duration::from_secs(15));
    let added = lab.add_container("a").unwrap();
    assert_eq!(eth0_mtu(&added.container.ns), 1300);
    lab.down().unwrap();
}
