//! The daemon's side of CNI with real daemons in namespaces: the node state each one publishes
//! (`<cni_state_dir>/<ifname>/subnet.json`), and the addressing it promises. A container behind
//! a Linux bridge that holds the gateway with the pod CIDR's prefix, while the tun device keeps
//! the same address as a host address, reaches the other node from its own pod address and is
//! reached back; the container MTU in the file follows a path that shrinks, a reload, and the
//! file goes at a clean shutdown.
//!
//! ```text
//!  <prefix>-ctr            node a's namespace                           node b's namespace
//!  vc0 10.244.A.5/24 ──veth── vh0 ─ cbr0 10.244.A.1/24   tun 10.244.A.1/32 ══ WireGuard ══ tun 10.244.B.1/32
//!      default via .1                  (connected route      (routes to remote         (nft counter:
//!                                       of the pod CIDR)      pod CIDRs)               saddr 10.244.A.5)
//! ```
//! The same with IPv6 (`fd10:244:…::5/64`, gateway `::1`).

mod common;

use common::{
    nft_count_from, nft_count_sources, node_state_path, require_root, run, running_lab,
    transfer_across_a_shrinking_path, wait_for, wait_node_state_mtu,
};
use ipnet::IpNet;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;
use wiremesh::core::node_state::NodeState;
use wiremesh::io::node_state_file;
use wiremesh::lab::{ping_in_ns, Lab, Signal};

const TOPOLOGY: &str = "cni-two-regions.toml";

fn state(lab: &Lab, node: &str) -> NodeState {
    node_state_file::read(&node_state_path(lab, node)).unwrap()
}

/// The `n`th address of a pod CIDR.
fn nth(net: IpNet, n: u32) -> IpAddr {
    match net {
        IpNet::V4(v4) => IpAddr::V4((u32::from(v4.network()) + n).into()),
        IpNet::V6(v6) => IpAddr::V6((u128::from(v6.network()) + u128::from(n)).into()),
    }
}

/// A namespace of this test's own, deleted even when the test fails.
struct Netns(String);

impl Netns {
    fn add(name: String) -> Netns {
        run(&["ip", "netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn assert_published(lab: &Lab, node: &str) {
    // the UAPI socket, the lab's sign of readiness, comes a moment before the node state
    wait_for(
        Duration::from_secs(5),
        Duration::from_millis(50),
        &format!("{node}'s node state"),
        || {
            node_state_file::read(&node_state_path(lab, node))
                .map(drop)
                .map_err(|e| {
                    let log = std::fs::read_to_string(lab.log_path(node)).unwrap_or_default();
                    format!("{e}\n{log}")
                })
        },
    );
    let topo = lab.topology().unwrap();
    let n = topo.node(node).unwrap();
    let s = state(lab, node);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(s.version, 1);
    assert_eq!(s.node, node);
    assert_eq!(s.interface, lab.ifname(node).unwrap());
    assert_eq!(s.pod_cidrs, n.pod_cidrs());
    assert_eq!(s.gateways, n.overlay_addrs());
    assert_eq!(
        s.cluster_cidrs,
        vec![
            "10.244.0.0/16".parse::<IpNet>().unwrap(),
            "fd10:244::/56".parse().unwrap()
        ]
    );
    // both regions carry 1500: 1440 inside the tunnel over IPv4
    assert_eq!(s.mtu, 1440);
    assert!(now_ms - s.written_unix_ms < 120_000, "{s:?}");
}

#[test]
fn a_container_behind_the_bridge_reaches_the_other_node_from_its_own_pod_address() {
    if !require_root() {
        return;
    }
    let lab = running_lab(TOPOLOGY);
    let m = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    assert!(m.all_ok(), "{m}");
    assert_published(&lab, "a");
    assert_published(&lab, "b");

    let a = state(&lab, "a");
    let (a_ns, b_ns) = (lab.node_ns("a").unwrap(), lab.node_ns("b").unwrap());
    let (a_tun, b_tun) = (lab.ifname("a").unwrap(), lab.ifname("b").unwrap());
    let ctr = Netns::add(format!("{}-ctr", lab.prefix()));
    let mtu = a.mtu.to_string();
    let in_a = |args: &[&str]| run(&[&["ip", "netns", "exec", a_ns], args].concat());
    let in_ctr = |args: &[&str]| run(&[&["ip", "netns", "exec", &ctr.0], args].concat());
    // what the bridge plugin does with isGateway (and a CNI runtime's forwarding)
    in_a(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    in_a(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    in_a(&["ip", "link", "add", "cbr0", "type", "bridge"]);
    in_a(&[
        "ip", "link", "add", "vh0", "mtu", &mtu, "type", "veth", "peer", "name", "vc0",
    ]);
    in_a(&["ip", "link", "set", "vc0", "netns", &ctr.0]);
    in_a(&["ip", "link", "set", "vh0", "master", "cbr0", "up"]);
    let mut ctr_addrs = Vec::new();
    for (cidr, gw) in a.pod_cidrs.iter().zip(&a.gateways) {
        let on_bridge = format!("{gw}/{}", cidr.prefix_len());
        let addr = nth(*cidr, 5);
        let in_ctr_addr = format!("{addr}/{}", cidr.prefix_len());
        let gw = gw.to_string();
        if addr.is_ipv4() {
            in_a(&["ip", "addr", "add", &on_bridge, "dev", "cbr0"]);
            in_ctr(&["ip", "addr", "add", &in_ctr_addr, "dev", "vc0"]);
        } else {
            in_a(&["ip", "addr", "add", &on_bridge, "dev", "cbr0", "nodad"]);
            in_ctr(&["ip", "addr", "add", &in_ctr_addr, "dev", "vc0", "nodad"]);
        }
        ctr_addrs.push((addr, gw));
    }
    in_a(&["ip", "link", "set", "cbr0", "up"]);
    in_ctr(&["ip", "link", "set", "lo", "up"]);
    in_ctr(&["ip", "link", "set", "vc0", "up"]);
    for (addr, gw) in &ctr_addrs {
        let v = if addr.is_ipv4() { "-4" } else { "-6" };
        in_ctr(&["ip", v, "route", "add", "default", "via", gw]);
    }
    // the kernel's choice in node a: its own pod CIDR on the bridge, the other node's on the tun
    let b_addrs = lab.overlay_addrs("b").unwrap();
    for ((addr, _), b_addr) in ctr_addrs.iter().zip(&b_addrs) {
        let to_ctr = in_a(&["ip", "route", "get", &addr.to_string()]);
        assert!(to_ctr.contains("dev cbr0"), "{addr}: {to_ctr}");
        let to_b = in_a(&["ip", "route", "get", &b_addr.to_string()]);
        assert!(to_b.contains(&format!("dev {a_tun}")), "{b_addr}: {to_b}");
    }
    // node b counts what arrives on its tun from the container's own addresses
    let table = format!("{}cni", lab.prefix());
    let sources: Vec<IpAddr> = ctr_addrs.iter().map(|(addr, _)| *addr).collect();
    nft_count_sources(b_ns, &table, "input", b_tun, &sources);

    for ((addr, _), b_addr) in ctr_addrs.iter().zip(&b_addrs) {
        let rtt = ping_in_ns(&ctr.0, *b_addr, Duration::from_secs(5)).unwrap();
        assert!(
            rtt.is_some(),
            "container {addr} → node b {b_addr}: no reply"
        );
        let back = lab.ping("b", *addr, Duration::from_secs(5)).unwrap();
        assert!(back.is_some(), "node b → container {addr}: no reply");
        println!("container {addr} ↔ node b {b_addr}: {rtt:?} there, {back:?} back");
        let counted = nft_count_from(b_ns, &table, b_tun, *addr);
        assert!(
            counted >= 1,
            "node b saw nothing from {addr} on {b_tun}: the source was rewritten"
        );
    }
}

#[test]
fn the_container_mtu_follows_a_shrinking_path_and_a_reload_and_goes_at_shutdown() {
    if !require_root() {
        return;
    }
    let mut lab = running_lab(TOPOLOGY);
    let m = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    assert!(m.all_ok(), "{m}");
    let (first, _) = wait_node_state_mtu(&lab, "a", 1440, Duration::from_secs(5));
    wait_node_state_mtu(&lab, "b", 1440, Duration::from_secs(5));

    // a silent black hole above 1360 bytes between the regions, found by discovery while
    // traffic flows: 1360 − 60 inside the tunnel
    let b_addr = lab.overlay_addrs("b").unwrap()[0];
    let (from_ns, to_ns) = (
        lab.node_ns("a").unwrap().to_string(),
        lab.node_ns("b").unwrap().to_string(),
    );
    let transfer = transfer_across_a_shrinking_path(&lab, (from_ns, to_ns, b_addr), 5203, 1360);
    let (shrunk, took) = wait_node_state_mtu(&lab, "a", 1300, Duration::from_secs(15));
    println!("a's container MTU 1300 published {took:?} after the path shrank");
    assert!(shrunk.written_unix_ms > first.written_unix_ms);
    assert_eq!(shrunk.pod_cidrs, first.pod_cidrs);
    let (_, took) = wait_node_state_mtu(&lab, "b", 1300, Duration::from_secs(15));
    println!("b's container MTU 1300 published {took:?} after the path shrank");
    let t = transfer.join().unwrap().unwrap();
    assert!(t.intact(), "the transfer across the shrink arrived damaged");

    // a reload that lowers a's own tun MTU (region r1's underlay 1340 → 1280 inside)
    let topology = lab.derived_topology_path();
    let mut text = std::fs::read_to_string(&topology).unwrap();
    text += "\n[region.r1]\nunderlay-mtu = 1340\n";
    std::fs::write(&topology, text).unwrap();
    lab.kill_daemon("a", Signal::Hup).unwrap();
    let (reloaded, took) = wait_node_state_mtu(&lab, "a", 1280, Duration::from_secs(10));
    println!("a's container MTU 1280 published {took:?} after SIGHUP");
    assert!(reloaded.written_unix_ms > shrunk.written_unix_ms);

    lab.kill_daemon("a", Signal::Term).unwrap();
    let path = node_state_path(&lab, "a");
    assert!(!path.exists(), "{} outlived its daemon", path.display());
    assert!(!path.parent().unwrap().exists());
    assert!(node_state_path(&lab, "b").exists());
}
