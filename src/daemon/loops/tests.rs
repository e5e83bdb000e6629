//! The real loops of two nodes (all four threads each) over an in-memory tun device and UDP
//! link: a real handshake and real encryption, no root, no namespaces.

use super::*;
use crate::testing::{
    full_mesh, ipv4, memory_tun, memory_udp_pair, wait_for, MemoryKernel, MemoryTun, MemoryUdp,
};

/// One node's data path with its loops running; stops and joins them when dropped, so a
/// failing test leaves no thread behind.
struct Running {
    path: Arc<DataPath<MemoryTun, MemoryUdp>>,
    kernel: MemoryKernel,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(device: Device, udp: MemoryUdp) -> Self {
        let (bulk, small, kernel) = memory_tun().unwrap();
        let path = Arc::new(DataPath::new(
            Arc::new(device),
            Arc::new(bulk),
            Some(small),
            Arc::new(udp),
        ));
        let threads = start(&path, 0);
        Self {
            path,
            kernel,
            threads,
        }
    }

    /// The next packet the node's loops wrote to its tun device, within 10 s.
    fn delivered(&self, what: &str) -> Vec<u8> {
        wait_for(Duration::from_secs(10), Duration::ZERO, what, || {
            self.kernel.read(Duration::from_millis(100))
        })
    }

    /// Whether `bytes` appear in any datagram this node sent.
    fn sent_in_clear(&self, bytes: &[u8]) -> bool {
        let sent = self.path.udp.sent.lock().unwrap();
        sent.iter()
            .any(|d| d.windows(bytes.len()).any(|w| w == bytes))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        stop(&self.path, std::mem::take(&mut self.threads));
    }
}

#[test]
fn packets_cross_the_real_loops_of_two_nodes_encrypted_both_ways_and_on_both_lanes() {
    let mut mesh = full_mesh(&["a", "b"]).into_iter();
    let ((dev_a, addr_a), (dev_b, addr_b)) = (mesh.next().unwrap(), mesh.next().unwrap());
    let (udp_a, udp_b) = memory_udp_pair(addr_a, addr_b).unwrap();
    let a = Running::start(dev_a, udp_a);
    let b = Running::start(dev_b, udp_b);
    let (pod_a, pod_b) = ([10, 244, 1, 1], [10, 244, 2, 1]);

    // a small packet: the small tun queue, a handshake, then the fast lanes
    let ping = ipv4(pod_a, pod_b, b"ping through the real loops");
    a.kernel.write(&ping).unwrap();
    assert_eq!(b.delivered("the ping at b's tun device"), ping);

    let pong = ipv4(pod_b, pod_a, b"pong through the real loops");
    b.kernel.write(&pong).unwrap();
    assert_eq!(a.delivered("the reply at a's tun device"), pong);

    // a large one: the first tun queue and the bulk lanes
    let bulk = ipv4(pod_a, pod_b, &[0xa5; 1200]);
    assert!(bulk.len() > SMALL_PACKET);
    a.kernel.write(&bulk).unwrap();
    assert_eq!(b.delivered("the large packet at b's tun device"), bulk);

    assert!(!a.sent_in_clear(b"ping through the real loops"));
    assert!(!a.sent_in_clear(&[0xa5; 64]));
    assert!(!b.sent_in_clear(b"pong through the real loops"));
    let large = |n: &Running| {
        n.path
            .udp
            .sent
            .lock()
            .unwrap()
            .iter()
            .any(|d| d.len() > 1200)
    };
    assert!(large(&a), "the large packet crossed as one large datagram");
}

/// The segments of one flow that one batch gathers leave as one tun write: tun-rs's GRO
/// coalesces only into a buffer whose capacity holds the result, which `new_batch` gives.
#[test]
fn a_flows_segments_in_one_batch_coalesce_into_one_tun_write() {
    use crate::engine::Sink as _;
    use crate::testing::tcp_segment;
    let gro = |mut batch: Batch| {
        for i in 0..8u32 {
            batch.write_tun(&tcp_segment(1000 + i * 1388, 1388));
        }
        let offset = batch.headroom();
        let mut to_write = Vec::new();
        tun_rs::handle_gro(
            batch.tun_buffers_mut(),
            offset,
            &mut Default::default(),
            &mut Default::default(),
            false,
            &mut to_write,
        )
        .unwrap();
        let lens: Vec<usize> = to_write
            .iter()
            .map(|&i| batch.tun_buffers_mut()[i].len() - offset)
            .collect();
        lens
    };
    assert_eq!(gro(new_batch()), [40 + 8 * 1388]);
    // packet-sized buffers: every segment alone, as before
    assert_eq!(
        gro(Batch::with_headroom(VIRTIO_NET_HDR_LEN)),
        [1428; 8].to_vec()
    );
}
