//! A dual-stack full mesh of four real daemons over three regions: every pair reaches every
//! other, and 64 MiB cross the tunnels intact over IPv4 and over IPv6 inner traffic.

mod common;

use common::{require_root, running_lab};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

#[test]
fn every_pair_reaches_every_other_and_64_mib_arrive_intact_over_ipv4_and_ipv6() {
    if !require_root() {
        return;
    }
    let lab = running_lab("full-dual-stack.toml");
    let matrix = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    println!("{matrix}");
    assert!(
        matrix.all_ok(),
        "failed pairs {:?}\n{matrix}",
        matrix.failures()
    );

    // a (eu-west, 1500) → d (onprem, 1400): crosses the router between two regions
    let d = lab.overlay_addrs("d").unwrap();
    let v4 = lab.transfer("a", "d", d[0], 64 * MIB).unwrap();
    println!(
        "IPv4 a→d: {} bytes in {:?} ({:.0} Mbit/s)",
        v4.bytes,
        v4.elapsed,
        v4.mbit_per_s()
    );
    assert_eq!(v4.bytes, 64 * MIB);
    assert!(
        v4.intact(),
        "sha256 sent {} received {}",
        v4.sent_sha256,
        v4.received_sha256
    );

    let c = lab.overlay_addrs("c").unwrap();
    assert!(c[1].is_ipv6());
    let v6 = lab.transfer("b", "c", c[1], 64 * MIB).unwrap();
    println!(
        "IPv6 b→c: {} bytes in {:?} ({:.0} Mbit/s)",
        v6.bytes,
        v6.elapsed,
        v6.mbit_per_s()
    );
    assert_eq!(v6.bytes, 64 * MIB);
    assert!(
        v6.intact(),
        "sha256 sent {} received {}",
        v6.sent_sha256,
        v6.received_sha256
    );
}

#[test]
fn an_ipv6_underlay_carries_the_mesh_and_its_paths_lose_80_bytes() {
    if !require_root() {
        return;
    }
    let mut opts = wiremesh::lab::LabOptions::new(common::unique_prefix(), common::exe());
    opts.ipv6_underlay = true;
    let mut lab = wiremesh::lab::Lab::build(&common::topology("three-regions.toml"), opts).unwrap();
    let a = lab.topology().unwrap().node("a").unwrap().clone();
    assert!(
        a.endpoint.unwrap().to_string().starts_with("[fd31:"),
        "the lab gave IPv6 endpoints"
    );
    lab.start_daemons().unwrap();
    let matrix = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    println!("{matrix}");
    assert!(
        matrix.all_ok(),
        "failed pairs {:?}\n{matrix}",
        matrix.failures()
    );
    let b = lab.overlay_addrs("b").unwrap()[0];
    let t = lab.transfer("a", "b", b, 16 * MIB).unwrap();
    assert!(t.intact());
    // a and b share a 1500-byte region: 1500 - 40 (IPv6) - 8 (UDP) - 32 (WireGuard)
    let dest = lab
        .topology()
        .unwrap()
        .node("b")
        .unwrap()
        .pod_cidr
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let out = lab.exec("a", &["ip", "route", "show", &dest]).unwrap();
        let route = String::from_utf8_lossy(&out.stdout).to_string();
        if route.contains("mtu 1420") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "route to b: {route}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
