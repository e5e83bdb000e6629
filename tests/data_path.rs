//! The fast path under mixed traffic, through real daemons: datagrams of every size from one
//! byte to the path MTU (small ones take the small-packet lanes, large ones the bulk lanes),
//! and many TCP flows at once in both directions, each checked end to end.

mod common;

use common::{require_root, running_lab};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// The kernel's path MTU towards the address `sock` is connected to.
fn path_mtu(sock: &UdpSocket) -> usize {
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a connected socket and an int-sized out buffer with its length.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "IP_MTU: {}", std::io::Error::last_os_error());
    mtu as usize
}

/// A payload whose every byte depends on its size and position, so a truncated, shifted or
/// mixed-up datagram shows.
fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + size * 13) as u8).collect()
}

#[test]
fn every_datagram_size_from_one_byte_to_the_path_mtu_crosses_intact_both_ways() {
    if !require_root() {
        return;
    }
    let lab = running_lab("full-dual-stack.toml");
    let b_addr = lab.overlay_addrs("b").unwrap()[0];
    let echo_at = SocketAddr::new(b_addr, 7007);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // echoes every datagram back until 3 s pass without one
    let echo = wiremesh::lab::in_netns(lab.node_ns("b").unwrap(), move || {
        let sock = UdpSocket::bind(echo_at).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut echoed = 0usize;
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            sock.send_to(&buf[..n], from).unwrap();
            echoed += 1;
        }
        echoed
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let a_addr: IpAddr = lab.overlay_addrs("a").unwrap()[0];
    let (sizes, retries) = wiremesh::lab::in_netns(lab.node_ns("a").unwrap(), move || {
        let sock = UdpSocket::bind((a_addr, 0)).unwrap();
        sock.connect(echo_at).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let largest = path_mtu(&sock) - 28;
        let mut buf = vec![0u8; 65_536];
        let mut retries = 0;
        for size in 1..=largest {
            let sent = payload(size);
            let mut tries = 0;
            loop {
                sock.send(&sent).unwrap();
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        assert_eq!(&buf[..n], &sent[..], "datagram of {size} bytes");
                        break;
                    }
                    Err(e) if tries < 3 => {
                        // a lost datagram is retried, a corrupted one fails above
                        eprintln!("size {size}: {e}; again");
                        tries += 1;
                        retries += 1;
                    }
                    Err(e) => panic!("datagram of {size} bytes never came back: {e}"),
                }
            }
        }
        (largest, retries)
    })
    .join()
    .unwrap()
    .unwrap();
    let echoed = echo.join().unwrap().unwrap();
    println!("sizes 1..={sizes} echoed intact ({echoed} datagrams, {retries} retries)");
    assert!(
        sizes >= 1_300,
        "path MTU left only {sizes} bytes of UDP payload"
    );
    assert!(
        retries <= 3,
        "{retries} datagrams were lost on a quiet path"
    );
}

#[test]
fn sixteen_tcp_flows_at_once_both_ways_arrive_intact() {
    if !require_root() {
        return;
    }
    let lab = running_lab("full-dual-stack.toml");
    let addr = |n: &str| lab.overlay_addrs(n).unwrap()[0];
    let flows: Vec<_> = (0..16u16)
        .map(|i| {
            let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
            let (from_ns, to_ns) = (
                lab.node_ns(from).unwrap().to_string(),
                lab.node_ns(to).unwrap().to_string(),
            );
            let to_addr = addr(to);
            std::thread::spawn(move || {
                let t = wiremesh::lab::tcp_transfer(
                    &from_ns,
                    &to_ns,
                    to_addr,
                    5300 + i,
                    8 * MIB,
                    Duration::from_secs(120),
                )
                .unwrap();
                (from, to, t)
            })
        })
        .collect();
    for flow in flows {
        let (from, to, t) = flow.join().unwrap();
        println!(
            "{from}→{to}: {} bytes, {:.0} Mbit/s",
            t.bytes,
            t.mbit_per_s()
        );
        assert_eq!(t.bytes, 8 * MIB);
        assert!(
            t.intact(),
            "{from}→{to}: sha256 sent {} received {}",
            t.sent_sha256,
            t.received_sha256
        );
    }
}
