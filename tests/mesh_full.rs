//! A dual-stack full mesh of four real daemons over three regions: every pair reaches every
//! other, and 64 MiB cross the tunnels intact over IPv4 and over IPv6 inner traffic.

mod common;

use common::{assert_all_pairs, assert_transfer, require_root, running_lab, wait_for};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

#[test]
fn every_pair_reaches_every_other_and_64_mib_arrive_intact_over_ipv4_and_ipv6() {
    if !require_root() {
        return;
    }
    let lab = running_lab("full-dual-stack.toml");
    assert_all_pairs(&lab, Duration::from_secs(5));

    // a (eu-west, 1500) → d (onprem, 1400): crosses the router between two regions
    let d = lab.overlay_addrs("d").unwrap();
    assert_transfer(&lab, "IPv4 a→d", ("a", "d"), d[0], 64 * MIB);

    let c = lab.overlay_addrs("c").unwrap();
    assert!(c[1].is_ipv6());
    assert_transfer(&lab, "IPv6 b→c", ("b", "c"), c[1], 64 * MIB);

    // the transfers ran on real-time data-path threads, the bulk receiver one above the sender
    // and the fast lane one above that; the timers stay in the normal class
    let pid = lab.daemon_pid("a").unwrap();
    let threads = wiremesh::io::sched::threads(pid).unwrap();
    let class = |name: &str| {
        let t = threads.iter().find(|t| t.0 == name);
        t.map(|t| (t.1, t.2))
            .unwrap_or_else(|| panic!("{name} missing in {threads:?}"))
    };
    let rt = u32::from(wiremesh::constants::DATA_PATH_PRIORITY);
    assert_eq!(class("wm-outbound"), (libc::SCHED_RR, rt), "{threads:?}");
    assert_eq!(class("wm-inbound"), (libc::SCHED_RR, rt + 1), "{threads:?}");
    assert_eq!(
        class("wm-fastlane"),
        (libc::SCHED_RR, rt + 2),
        "{threads:?}"
    );
    assert_eq!(class("wm-timers"), (libc::SCHED_OTHER, 0), "{threads:?}");
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
    assert_all_pairs(&lab, Duration::from_secs(5));
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
    wait_for(
        Duration::from_secs(15),
        Duration::from_millis(200),
        "route to b with mtu 1420",
        || {
            let out = lab.exec("a", &["ip", "route", "show", &dest]).unwrap();
            let route = String::from_utf8_lossy(&out.stdout).to_string();
            if route.contains("mtu 1420") {
                Ok(())
            } else {
                Err(format!("route to b: {route}"))
            }
        },
    );
}
