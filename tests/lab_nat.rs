//! The lab's VPCs and NAT routers (docs/nat.md, section 6) with real daemons: a VPC pair's
//! traffic crosses its private bridge and not the public one; spokes behind an
//! endpoint-independent and an endpoint-dependent NAT reach every node through their hubs,
//! which see them at their routers' public addresses, on one outer port or on one per hub.
//! Needs root.

mod common;

use common::{assert_all_pairs, endpoint_of, exe, namespaces_of, new_lab, run, wait_for};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremesh::lab::{Lab, UDP_STREAM_TIMEOUT, UDP_TIMEOUT};

/// Per-pair timeout of the matrix: the first packet of each pair waits for a handshake.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// The goal for traffic to flow again after a path is lost.
const RECOVERY_GOAL: Duration = Duration::from_secs(5);

/// Bytes received and sent by a link in a namespace (`ip -s -j link`).
fn link_bytes(ns: &str, dev: &str) -> (u64, u64) {
    let out = run(&["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stats = &json[0]["stats64"];
    let bytes = |dir: &str| {
        stats[dir]["bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{out}"))
    };
    (bytes("rx"), bytes("tx"))
}

/// Bytes a core-side veth (a node's port on a bridge) has carried, both ways together.
fn carried(lab: &Lab, veth: &str) -> u64 {
    let (rx, tx) = link_bytes(&lab.layout().core_ns, veth);
    rx + tx
}

#[test]
fn a_vpc_pair_talks_over_its_private_bridge_and_not_the_public_one() {
    if !common::require_root() {
        return;
    }
    let mut lab = new_lab("vpc-two-regions.toml");
    lab.start_daemons().unwrap();
    let (a, b) = (
        lab.layout().node("eu-a").unwrap().clone(),
        lab.layout().node("eu-b").unwrap().clone(),
    );
    let (a_vpc, b_vpc) = (a.vpc.clone().unwrap(), b.vpc.clone().unwrap());
    // the plan's choice, and the daemon's: each sends to the other's VPC address
    let topology = lab.topology().unwrap();
    let (ta, tb) = (
        topology.node("eu-a").unwrap(),
        topology.node("eu-b").unwrap(),
    );
    assert_eq!(
        ta.endpoint_for(tb).unwrap().to_string(),
        format!("{}:51820", a_vpc.v4)
    );
    assert_all_pairs(&lab, PING_TIMEOUT);
    assert_eq!(
        endpoint_of(&lab, "eu-b", "eu-a").unwrap(),
        SocketAddr::new(a_vpc.v4.into(), 51820)
    );
    assert_eq!(
        endpoint_of(&lab, "us-a", "eu-a").unwrap(),
        SocketAddr::new(a.underlay_v4.into(), 51820),
        "a node outside the VPC uses the public side"
    );

    let veths = [&a_vpc.veth, &b_vpc.veth, &a.veth, &b.veth];
    let before: Vec<u64> = veths.iter().map(|v| carried(&lab, v)).collect();
    let bytes = 8 << 20;
    let to = lab.overlay_addrs("eu-b").unwrap()[0];
    let t = lab.transfer("eu-a", "eu-b", to, bytes).unwrap();
    assert!(t.intact() && t.bytes == bytes, "{t:?}");
    let grew: Vec<u64> = veths
        .iter()
        .zip(&before)
        .map(|(v, b)| carried(&lab, v) - b)
        .collect();
    println!(
        "bytes carried during {bytes} bytes a → b: vpc a {}, vpc b {}, public a {}, public b {}",
        grew[0], grew[1], grew[2], grew[3]
    );
    for (what, g) in [("a's VPC veth", grew[0]), ("b's VPC veth", grew[1])] {
        assert!(
            g >= bytes,
            "{what} carried {g} bytes of a {bytes}-byte transfer"
        );
    }
    for (what, g) in [("a's public veth", grew[2]), ("b's public veth", grew[3])] {
        assert!(
            g < bytes / 20,
            "{what} carried {g} bytes: the transfer went public"
        );
    }

    // the cut the failover will use: `wiremesh lab vpc NODE` takes a's side of the VPC down
    let ping_vpc = |lab: &Lab| {
        lab.ping("eu-b", a_vpc.v4.into(), Duration::from_millis(500))
            .unwrap()
    };
    assert!(ping_vpc(&lab).is_some(), "the VPC answers before the cut");
    let prefix = lab.prefix().to_string();
    let cut = run(&[
        exe().to_str().unwrap(),
        "lab",
        "vpc",
        "eu-a",
        "--prefix",
        &prefix,
    ]);
    assert!(cut.contains("cut"), "{cut}");
    assert_eq!(
        ping_vpc(&lab),
        None,
        "a's VPC address answers after the cut"
    );
    lab.set_vpc_link("eu-a", true).unwrap();
    common::wait_until(Duration::from_secs(5), "the VPC back", || {
        ping_vpc(&lab).is_some()
    });
    assert!(
        lab.set_vpc_link("us-a", false).is_err(),
        "us-a is in no VPC"
    );

    // `lab down` from another process removes the VPC bridge's links with the namespaces
    lab.stop_daemons().unwrap();
    lab.detach();
    Lab::down_prefix(&prefix).unwrap();
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());
}

#[test]
fn a_vpc_pair_moves_to_the_public_side_within_seconds_of_a_cut_and_back_once_it_heals() {
    if !common::require_root() {
        return;
    }
    let mut lab = new_lab("vpc-two-regions.toml");
    lab.start_daemons().unwrap();
    let a = lab.layout().node("eu-a").unwrap().clone();
    let a_vpc = SocketAddr::new(a.vpc.clone().unwrap().v4.into(), 51820);
    let a_public = SocketAddr::new(a.underlay_v4.into(), 51820);
    let to = lab.overlay_addrs("eu-a").unwrap()[0];
    assert!(lab.ping("eu-b", to, PING_TIMEOUT).unwrap().is_some());
    assert_eq!(endpoint_of(&lab, "eu-b", "eu-a").unwrap(), a_vpc);

    let stop = Arc::new(AtomicBool::new(false));
    let stream = common::ping_stream(&lab, "eu-b", to, Duration::from_millis(20), stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    lab.set_vpc_link("eu-a", false).unwrap();
    let cut = Instant::now();
    let moved = wait_for(
        Duration::from_secs(15),
        Duration::from_millis(100),
        "the public side",
        || match endpoint_of(&lab, "eu-b", "eu-a") {
            Ok(e) if e == a_public => Ok(cut.elapsed()),
            other => Err(format!("{other:?}")),
        },
    );
    let flowing = wait_for(
        Duration::from_secs(15),
        Duration::from_millis(10),
        "answers again",
        || match lab.ping("eu-b", to, Duration::from_millis(200)) {
            Ok(Some(_)) => Ok(cut.elapsed()),
            other => Err(format!("{other:?}")),
        },
    );
    // the stream's longest gap ends at a reply: let it see some after the move
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let s = stream.join().unwrap().unwrap();
    println!(
        "VPC cut: eu-b sends to eu-a's public address after {moved:?}, answered after \
         {flowing:?}; {} pings, {} lost, longest gap {:?}",
        s.sent, s.lost, s.longest_gap
    );
    assert!(flowing <= RECOVERY_GOAL, "answers again after {flowing:?}");
    assert!(
        s.longest_gap <= RECOVERY_GOAL,
        "longest gap {:?} over the {RECOVERY_GOAL:?} goal",
        s.longest_gap
    );
    let status = common::daemon_status(&lab, "eu-b");
    let p = status.peers.iter().find(|p| p.name == "eu-a").unwrap();
    assert!(p.endpoint_failovers >= 1, "{p:#?}");
    assert_eq!(p.candidates.len(), 2, "{p:#?}");

    // healed: the better path is probed and taken again
    lab.set_vpc_link("eu-a", true).unwrap();
    let healed = Instant::now();
    let back = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(250),
        "the VPC again",
        || {
            let _ = lab.ping("eu-b", to, Duration::from_millis(500));
            match endpoint_of(&lab, "eu-b", "eu-a") {
                Ok(e) if e == a_vpc => Ok(healed.elapsed()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    println!("VPC healed: back on it after {back:?}");
    assert!(lab.ping("eu-b", to, PING_TIMEOUT).unwrap().is_some());
    assert_eq!(
        endpoint_of(&lab, "eu-a", "eu-b").unwrap().ip(),
        IpAddr::from(lab.layout().node("eu-b").unwrap().vpc.clone().unwrap().v4)
    );
}

#[test]
fn nated_spokes_reach_everyone_through_their_hubs_which_see_the_routers_mappings() {
    if !common::require_root() {
        return;
    }
    let mut lab = new_lab("hub-nat.toml");
    let prefix = lab.prefix().to_string();
    for spoke in ["eu-ind", "eu-dep"] {
        let router = lab.nat_router(spoke).unwrap().unwrap().to_string();
        for (key, want) in [
            ("net.netfilter.nf_conntrack_udp_timeout", UDP_TIMEOUT),
            (
                "net.netfilter.nf_conntrack_udp_timeout_stream",
                UDP_STREAM_TIMEOUT,
            ),
        ] {
            let got = run(&["ip", "netns", "exec", &router, "sysctl", "-n", key]);
            assert_eq!(got.trim(), want.to_string(), "{router} {key}");
        }
    }
    assert_eq!(lab.nat_router("eu-hub-a").unwrap(), None);
    lab.start_daemons().unwrap();
    assert_all_pairs(&lab, PING_TIMEOUT);

    // each NATed spoke talks to both of its hubs (its own address at each is routed to it)
    for spoke in ["eu-ind", "eu-dep"] {
        for hub in ["eu-hub-a", "eu-hub-b"] {
            let to = lab.overlay_addrs(hub).unwrap()[0];
            let rtt = lab.ping(spoke, to, PING_TIMEOUT).unwrap();
            assert!(rtt.is_some(), "{spoke} → {hub}");
        }
    }
    let seen = |spoke: &str| -> (SocketAddr, SocketAddr) {
        let at = |hub| {
            wait_for(
                Duration::from_secs(5),
                Duration::from_millis(100),
                "an endpoint",
                || endpoint_of(&lab, hub, spoke),
            )
        };
        (at("eu-hub-a"), at("eu-hub-b"))
    };
    for spoke in ["eu-ind", "eu-dep"] {
        let public = lab.underlay_addr(spoke).unwrap();
        let (a, b) = seen(spoke);
        println!(
            "{spoke} ({}) seen by eu-hub-a at {a}, by eu-hub-b at {b}",
            lab.layout()
                .node(spoke)
                .unwrap()
                .nat
                .as_ref()
                .unwrap()
                .router_ns
        );
        assert_eq!(
            (a.ip(), b.ip()),
            (public.into(), public.into()),
            "{spoke}: translated"
        );
        if spoke == "eu-ind" {
            assert_eq!(
                a.port(),
                b.port(),
                "independent: one outer port for both hubs"
            );
        } else {
            assert_ne!(a.port(), b.port(), "dependent: an outer port per hub");
        }
    }

    // each spoke asked both hubs, in the tunnel, where its datagrams come from, and tells its
    // NAT's kind from the two answers (docs/nat.md, section 2)
    for (spoke, want) in [("eu-ind", "independent"), ("eu-dep", "dependent")] {
        let nat = wait_for(
            Duration::from_secs(10),
            Duration::from_millis(250),
            "two answers",
            || {
                let nat = common::daemon_status(&lab, spoke).nat.unwrap();
                if nat.seen_by.len() == 2 {
                    Ok(nat)
                } else {
                    Err(format!("{nat:?}"))
                }
            },
        );
        println!("{spoke}: {}", nat.render().trim_end());
        assert_eq!(nat.kind, want, "{spoke}: {nat:?}");
        let (a, b) = seen(spoke);
        assert_eq!(nat.seen_by["eu-hub-a"], a, "{spoke}: the hub's own view");
        assert_eq!(nat.seen_by["eu-hub-b"], b);
        let shared = (want == "independent").then_some(a);
        assert_eq!(nat.reflexive, shared, "{spoke}: an address to share");
    }
    let hub = wait_for(
        Duration::from_secs(10),
        Duration::from_millis(250),
        "the other hubs' answers",
        || {
            let nat = common::daemon_status(&lab, "eu-hub-a").nat.unwrap();
            if nat.seen_by.is_empty() {
                Err(format!("{nat:?}"))
            } else {
                Ok(nat)
            }
        },
    );
    assert_eq!(
        hub.kind, "none",
        "a hub is seen at its own address: {hub:?}"
    );

    // a flushed mapping: the dependent router draws a fresh port, the hub follows it
    assert!(lab.nat_mappings("eu-dep").unwrap() > 0);
    let (old, _) = seen("eu-dep");
    lab.flush_nat("eu-dep").unwrap();
    let hub = lab.overlay_addrs("eu-hub-a").unwrap()[0];
    let fresh = wait_for(
        Duration::from_secs(10),
        Duration::from_millis(200),
        "a fresh mapping",
        || {
            let _ = lab.ping("eu-dep", hub, Duration::from_millis(500));
            match endpoint_of(&lab, "eu-hub-a", "eu-dep") {
                Ok(now) if now != old => Ok(now),
                Ok(now) => Err(format!("still {now}")),
                Err(e) => Err(e),
            }
        },
    );
    println!("after conntrack -F: eu-dep seen by eu-hub-a at {fresh}, was {old}");
    assert_eq!(fresh.ip(), old.ip());
    assert!(lab.flush_nat("eu-hub-a").is_err(), "a hub has no router");

    drop(lab);
    assert_eq!(
        namespaces_of(&prefix),
        Vec::<String>::new(),
        "routers removed too"
    );
}
