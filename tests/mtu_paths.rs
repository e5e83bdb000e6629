//! Path-MTU discovery with real daemons over links that differ: 1500, a 1400 MTU whose router
//! answers with ICMP (ignored: clouds drop it), and a black hole above 1360 (no ICMP at all).
//! Between every pair the discovered MTU is exact, full-size datagrams and 64 MiB of TCP get
//! through intact, one byte more gets an ICMP error back at the sender, and a link that shrinks
//! under a running transfer is re-measured within 10 s while the transfer completes.

mod common;

use common::{require_root, running_lab, wait_for};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use wiremesh::lab::{in_netns, tcp_transfer_paced, Lab, LinkLimit};

const MIB: u64 = 1024 * 1024;

/// The MTU of the kernel route from `from` to `to`'s pod CIDR, as the daemon set it.
fn route_mtu(lab: &Lab, from: &str, to: &str) -> Option<u16> {
    let dest = lab
        .topology()
        .unwrap()
        .node(to)
        .unwrap()
        .pod_cidr
        .to_string();
    let out = lab.exec(from, &["ip", "route", "show", &dest]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mtu" {
            let v = words.next()?;
            let v = if v == "lock" { words.next()? } else { v };
            return v.parse().ok();
        }
    }
    None
}

fn wait_route_mtu(lab: &Lab, from: &str, to: &str, want: u16, within: Duration) -> Duration {
    let start = Instant::now();
    wait_for(
        within,
        Duration::from_millis(100),
        &format!("route MTU {want} from {from} to {to}"),
        || match route_mtu(lab, from, to) {
            Some(got) if got == want => Ok(()),
            got => Err(format!("{from} → {to}: route MTU {got:?}, want {want}")),
        },
    );
    start.elapsed()
}

fn setsockopt(fd: i32, level: i32, name: i32, val: i32) {
    // SAFETY: valid descriptor, c_int option.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&val as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {name}: {}",
        std::io::Error::last_os_error()
    );
}

/// What the sender learned about a datagram that did not fit.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// An ICMP "fragmentation needed" carrying this MTU came back (from the engine).
    Icmp(u32),
    /// The kernel refused at once: larger than the tun device itself.
    Local,
}

/// Sends one UDP datagram whose IP packet is `ip_size` bytes, DF set, from `from` to `to`'s
/// overlay address. Returns what the receiver got, and how the sender was told it did not fit.
fn udp_probe(
    lab: &Lab,
    from: &str,
    to: &str,
    ip_size: usize,
) -> (Option<Vec<u8>>, Option<Refusal>) {
    let dst = lab.overlay_addrs(to).unwrap()[0];
    let addr = SocketAddr::new(dst, 5300);
    let payload: Vec<u8> = (0..ip_size - 28).map(|i| (i * 7 % 251) as u8).collect();
    let rx = in_netns(lab.node_ns(to).unwrap(), move || {
        let s = UdpSocket::bind(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = vec![0u8; 65536];
        s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    });
    std::thread::sleep(Duration::from_millis(200));
    let sent = payload.clone();
    let tx = in_netns(lab.node_ns(from).unwrap(), move || -> Option<Refusal> {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        let fd = s.as_raw_fd();
        // DF, sized by the interface (not the route), and ICMP errors queued for us to read
        setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        );
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1);
        s.connect(addr).unwrap();
        if let Err(e) = s.send(&sent) {
            assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
            return Some(Refusal::Local);
        }
        recv_icmp_too_big(fd, Duration::from_secs(2)).map(Refusal::Icmp)
    });
    let got = rx.join().unwrap().unwrap();
    let icmp = tx.join().unwrap().unwrap();
    (got.filter(|g| *g == payload), icmp)
}

/// Waits for an ICMP "fragmentation needed" on the socket's error queue; returns its MTU.
fn recv_icmp_too_big(fd: i32, timeout: Duration) -> Option<u32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut data = [0u8; 2048];
        let mut control = [0u8; 512];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: zeroed msghdr is valid; all pointers live across the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        // SAFETY: as above.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n >= 0 {
            // SAFETY: walking the control messages the kernel wrote into `control`.
            let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            while !cmsg.is_null() {
                let c = unsafe { &*cmsg };
                if c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_RECVERR {
                    let ee = unsafe { &*(libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err) };
                    if ee.ee_origin == libc::SO_EE_ORIGIN_ICMP && ee.ee_type == 3 && ee.ee_code == 4
                    {
                        return Some(ee.ee_info);
                    }
                }
                cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn mesh() -> Lab {
    let lab = running_lab("mtu-three-regions.toml");
    let m = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    assert!(m.all_ok(), "{m}");
    lab
}

#[test]
fn every_pair_discovers_its_exact_path_mtu_and_carries_full_size_traffic() {
    if !require_root() {
        return;
    }
    let lab = mesh();
    // (from, to, true limit − 60 bytes of WireGuard over IPv4)
    let pairs = [
        ("a", "a2", 1440),
        ("a", "b", 1440),
        ("a", "c", 1340),
        ("b", "c", 1300),
        ("c", "a", 1340),
        ("c", "b", 1300),
    ];
    let start = Instant::now();
    for (from, to, want) in pairs {
        wait_route_mtu(&lab, from, to, want, Duration::from_secs(15));
    }
    println!(
        "all paths discovered {:?} after the mesh was up",
        start.elapsed()
    );
    for (from, to, mtu) in pairs {
        let (got, icmp) = udp_probe(&lab, from, to, usize::from(mtu));
        assert!(
            got.is_some(),
            "{from} → {to}: a {mtu}-byte datagram did not arrive intact"
        );
        assert_eq!(icmp, None, "{from} → {to}: unexpected ICMP at {mtu}");
        let (got, icmp) = udp_probe(&lab, from, to, usize::from(mtu) + 1);
        assert!(
            got.is_none(),
            "{from} → {to}: {} bytes should not fit",
            mtu + 1
        );
        // beyond the tun device's own MTU the kernel refuses locally; below it, the engine
        // answers with ICMP carrying the path's MTU
        let tun_mtu = 1440;
        let want = if mtu == tun_mtu {
            Refusal::Local
        } else {
            Refusal::Icmp(u32::from(mtu))
        };
        assert_eq!(
            icmp,
            Some(want),
            "{from} → {to}: one byte too many must be refused back to the sender"
        );
    }
    for (from, to, _) in [("a", "c", 0), ("b", "c", 0), ("a", "b", 0)] {
        let to_addr = lab.overlay_addrs(to).unwrap()[0];
        let t = lab.transfer(from, to, to_addr, 64 * MIB).unwrap();
        println!("{from} → {to}: 64 MiB at {:.0} Mbit/s", t.mbit_per_s());
        assert!(t.intact(), "{from} → {to}: checksum mismatch");
    }
}

#[test]
fn a_link_that_shrinks_under_a_transfer_is_remeasured_and_the_transfer_completes() {
    if !require_root() {
        return;
    }
    let lab = mesh();
    wait_route_mtu(&lab, "a", "b", 1440, Duration::from_secs(15));
    let b_addr: IpAddr = lab.overlay_addrs("b").unwrap()[0];
    let (from_ns, to_ns) = (
        lab.node_ns("a").unwrap().to_string(),
        lab.node_ns("b").unwrap().to_string(),
    );
    // 40 MiB at 4 MiB/s: about ten seconds of traffic
    let transfer = std::thread::spawn(move || {
        tcp_transfer_paced(
            &from_ns,
            &to_ns,
            b_addr,
            5202,
            40 * MIB,
            Some(4 * MIB),
            Duration::from_secs(60),
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    lab.set_link(
        "r1",
        "r2",
        LinkLimit {
            mtu: None,
            black_hole_above: Some(1300),
        },
    )
    .unwrap();
    let took = wait_route_mtu(&lab, "a", "b", 1240, Duration::from_secs(10));
    println!("new MTU 1240 applied {took:?} after the link shrank");
    let t = transfer.join().unwrap().unwrap();
    println!("transfer: {} bytes in {:?}", t.bytes, t.elapsed);
    assert_eq!(t.bytes, 40 * MIB);
    assert!(t.intact());
}
