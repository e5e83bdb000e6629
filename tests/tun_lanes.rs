//! The tun device's second queue, on a real tun device in a namespace of its own: the kernel's
//! steering program sends small packets to it and everything else to the first queue.

mod common;

use common::{require_root, unique_prefix};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};
use tun_rs::{SyncDevice, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// The namespace, removed on drop even when an assertion fails.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

/// The IP packets `queue` holds within 2 s, by length.
fn read_lengths(queue: &SyncDevice, want: usize) -> Vec<usize> {
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + 65_535];
    let mut bufs = vec![vec![0u8; 16 * 1024]; IDEAL_BATCH_SIZE];
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while got.len() < want && Instant::now() < deadline {
        match queue.recv_multiple(&mut original, &mut bufs, &mut sizes, 0) {
            Ok(n) => got.extend(&sizes[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("tun read: {e}"),
        }
    }
    got
}

#[test]
fn small_packets_are_read_from_the_second_queue_and_bulk_from_the_first() {
    if !require_root() {
        return;
    }
    let ns = Netns(format!("{}tl", unique_prefix()));
    let status = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap();
    assert!(status.success());
    ip(&ns.0, &["link", "set", "lo", "up"]);
    // no IPv6 router solicitations on the new device: only the test's packets cross it
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.0, "sysctl", "-qw"])
        .arg("net.ipv6.conf.default.disable_ipv6=1")
        .status()
        .unwrap();
    assert!(status.success());
    let name = ns.0.clone();
    let (bulk, fast) = wiremesh::lab::in_netns(&ns.0, move || {
        let addr = Ipv4Addr::new(10, 99, 0, 1);
        let dev = wiremesh::io::tun::open("wmtl0", 1420, &[addr.into()]).unwrap();
        let fast = wiremesh::io::tun_lanes::add_fast_queue(&dev).unwrap();
        ip(&name, &["route", "add", "10.99.1.0/24", "dev", "wmtl0"]);
        let sock = UdpSocket::bind((addr, 0)).unwrap();
        let to = (Ipv4Addr::new(10, 99, 1, 2), 9);
        // IP packets of 128 and 1,028 bytes, then the largest small one and the next size up
        let small = wiremesh::constants::SMALL_PACKET - 28;
        for payload in [100, 1000, small, small + 1] {
            sock.send_to(&vec![0u8; payload], to).unwrap();
        }
        (read_lengths(&dev, 2), read_lengths(&fast, 2))
    })
    .join()
    .unwrap()
    .unwrap();
    let limit = wiremesh::constants::SMALL_PACKET;
    assert_eq!(fast, vec![128, limit], "second queue");
    assert_eq!(bulk, vec![1028, limit + 1], "first queue");
}
