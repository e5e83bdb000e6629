//! Where the engine puts packets it wants sent.
//!
//! The hot path encrypts straight into the sink ([`Sink::datagram_space`], then
//! [`Sink::commit_datagram`]), so a datagram is written once, into the memory the I/O loop hands
//! to the kernel. [`Batch`] keeps datagrams back to back in one arena, in order, so the flush can
//! hand a run of same-size datagrams to one peer to the kernel as one UDP GSO send
//! ([`Batch::datagram_runs`]); packets for the tun device sit in buffers of their own with
//! headroom in front, for a driver header (virtio-net) and for coalescing (tun GRO).

use crate::constants::SMALL_DATAGRAM;
use std::net::SocketAddr;
use std::ops::Range;

/// Receives the engine's output. Slices passed in point into the engine's scratch buffers and
/// are reused right after the call: implementations copy what they need.
pub trait Sink {
    /// A datagram for the underlay.
    fn send(&mut self, to: SocketAddr, datagram: &[u8]);
    /// An IP packet for the local tun device.
    fn write_tun(&mut self, packet: &[u8]);
    /// At least `len` bytes to write the next datagram into, in place. Nothing is sent unless
    /// [`Sink::commit_datagram`] follows.
    fn datagram_space(&mut self, len: usize) -> &mut [u8];
    /// Sends the first `len` bytes last written into [`Sink::datagram_space`] to `to`.
    fn commit_datagram(&mut self, to: SocketAddr, len: usize);
}

/// Largest UDP payload handed to the kernel in one GSO send: the IPv4/IPv6 length fields
/// (65,535) less the IPv6 and UDP headers, rounded down.
pub const MAX_GSO_BYTES: usize = 65_000;

/// A sink that gathers packets until the I/O loop flushes them. Its memory is kept across
/// [`Batch::clear`], so a loop that reuses one batch allocates only while warming up.
#[derive(Debug, Default)]
pub struct Batch {
    /// Datagrams back to back; `len()` is the high-water mark, `used` the part in use.
    arena: Vec<u8>,
    used: usize,
    net: Vec<(SocketAddr, Range<usize>)>,
    /// One buffer per tun packet: `headroom` bytes, then the packet. Only `tun_len` are in use.
    tun: Vec<Vec<u8>>,
    tun_len: usize,
    headroom: usize,
    /// What each tun buffer can hold after its headroom: a driver that coalesces packets in
    /// place (tun GRO) appends the next segments to the first one's buffer, and refuses to when
    /// they do not fit, so a coalescing driver needs room for a whole super-packet.
    tun_room: usize,
}

/// Room for one packet and some: what a tun buffer holds unless the driver coalesces.
const PACKET_ROOM: usize = 2048;

/// A run of datagrams to one address, back to back in memory, all `segment` bytes long except
/// possibly the last (which may be shorter): what one UDP GSO send carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run<'a> {
    pub to: SocketAddr,
    pub contents: &'a [u8],
    pub segment: usize,
}

impl Batch {
    pub fn new() -> Self {
        Self::with_headroom(0)
    }

    /// A batch whose tun packets have `headroom` free bytes in front (for a driver header).
    pub fn with_headroom(headroom: usize) -> Self {
        Self::with_tun_room(headroom, PACKET_ROOM)
    }

    /// A batch whose tun buffers have `headroom` free bytes in front and room for `room` bytes
    /// after it: a driver that coalesces in place needs a super-packet's worth (64 KiB). The
    /// room is capacity, not memory in use: a buffer's pages are touched only as far as a
    /// coalesced packet reaches.
    pub fn with_tun_room(headroom: usize, room: usize) -> Self {
        Self {
            arena: Vec::with_capacity(256 * 1024),
            headroom,
            tun_room: room,
            ..Self::default()
        }
    }

    pub fn headroom(&self) -> usize {
        self.headroom
    }

    pub fn is_empty(&self) -> bool {
        self.net.is_empty() && self.tun_len == 0
    }

    /// Number of datagrams and tun packets held.
    pub fn len(&self) -> usize {
        self.net.len() + self.tun_len
    }

    /// Datagrams for the underlay, in the order they were produced.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.net.iter().map(|(a, r)| (*a, &self.arena[r.clone()]))
    }

    /// Datagrams grouped for GSO: consecutive, contiguous, to the same address, equal in
    /// length (the last of a run may be shorter), at most `max_segments` and
    /// [`MAX_GSO_BYTES`] per run. Order is kept, so no flow is reordered. A small datagram
    /// ([`SMALL_DATAGRAM`]) never ends a run of large ones: alone, the receiver sees its
    /// length and steers it to the fast lane. Small ones run together, so a flood of them keeps
    /// GSO (one at a time halved the packets per second of a 100-byte UDP flood).
    pub fn datagram_runs(&self, max_segments: usize) -> Runs<'_> {
        Runs {
            batch: self,
            next: 0,
            max_segments: max_segments.max(1),
        }
    }

    /// Packets for the tun device, in the order they were produced.
    pub fn tun_packets(&self) -> impl Iterator<Item = &[u8]> {
        self.tun[..self.tun_len].iter().map(|b| &b[self.headroom..])
    }

    /// The tun packets' buffers, each `headroom` bytes then the packet, for a driver that
    /// writes its header in front or coalesces them in place.
    pub fn tun_buffers_mut(&mut self) -> &mut [Vec<u8>] {
        &mut self.tun[..self.tun_len]
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.used = 0;
        self.net.clear();
        self.tun_len = 0;
    }
}

impl Sink for Batch {
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) {
        self.datagram_space(datagram.len())[..datagram.len()].copy_from_slice(datagram);
        self.commit_datagram(to, datagram.len());
    }

    fn write_tun(&mut self, packet: &[u8]) {
        if self.tun_len == self.tun.len() {
            self.tun.push(Vec::with_capacity(
                self.headroom + self.tun_room.max(PACKET_ROOM),
            ));
        }
        let buf = &mut self.tun[self.tun_len];
        buf.clear();
        buf.resize(self.headroom, 0);
        buf.extend_from_slice(packet);
        self.tun_len += 1;
    }

    fn datagram_space(&mut self, len: usize) -> &mut [u8] {
        let end = self.used + len;
        if self.arena.len() < end {
            // grows only until the high-water mark of the loop's bursts is reached
            self.arena.resize(end.max(self.arena.len() * 2), 0);
        }
        &mut self.arena[self.used..end]
    }

    fn commit_datagram(&mut self, to: SocketAddr, len: usize) {
        let start = self.used;
        self.used += len;
        self.net.push((to, start..self.used));
    }
}

/// Iterator over [`Batch::datagram_runs`].
pub struct Runs<'a> {
    batch: &'a Batch,
    next: usize,
    max_segments: usize,
}

impl<'a> Iterator for Runs<'a> {
    type Item = Run<'a>;

    fn next(&mut self) -> Option<Run<'a>> {
        let net = &self.batch.net;
        let (to, first) = net.get(self.next)?.clone();
        let segment = first.len();
        let mut end = first.end;
        let mut count = 1;
        while let Some((t, r)) = net.get(self.next + count) {
            let fits = count < self.max_segments && r.end - first.start <= MAX_GSO_BYTES;
            // a small datagram never rides at the tail of large ones
            let small_tail = r.len() <= SMALL_DATAGRAM && segment > SMALL_DATAGRAM;
            // all but the last must be exactly `segment` long: a shorter one ends the run
            if !fits || small_tail || *t != to || r.start != end || r.len() > segment {
                break;
            }
            end = r.end;
            count += 1;
            if r.len() < segment {
                break;
            }
        }
        self.next += count;
        Some(Run {
            to,
            contents: &self.batch.arena[first.start..end],
            segment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn runs(batch: &Batch, max: usize) -> Vec<(u16, usize, usize)> {
        batch
            .datagram_runs(max)
            .map(|r| (r.to.port(), r.contents.len(), r.segment))
            .collect()
    }

    #[test]
    fn equal_datagrams_to_one_peer_form_one_run_with_a_shorter_tail() {
        let mut b = Batch::new();
        for len in [1000, 1000, 1000, 400] {
            b.send(addr(1), &vec![7; len]);
        }
        assert_eq!(runs(&b, 64), vec![(1, 3400, 1000)]);
    }

    #[test]
    fn a_small_datagram_never_rides_at_the_tail_of_large_ones_but_small_ones_run_together() {
        let mut b = Batch::new();
        for len in [1000, 1000, SMALL_DATAGRAM, 300, 300, 100, 100, 100, 60] {
            b.send(addr(1), &vec![7; len]);
        }
        assert_eq!(
            runs(&b, 64),
            vec![
                (1, 2000, 1000),
                (1, SMALL_DATAGRAM, SMALL_DATAGRAM),
                (1, 600, 300),
                (1, 360, 100)
            ]
        );
    }

    #[test]
    fn a_new_address_a_longer_datagram_or_the_segment_limit_starts_a_new_run() {
        let mut b = Batch::new();
        b.send(addr(1), &[0; 1000]);
        b.send(addr(1), &[0; 1000]);
        b.send(addr(2), &[0; 1000]);
        b.send(addr(2), &[0; 1200]);
        b.send(addr(2), &[0; 1200]);
        b.send(addr(2), &[0; 1200]);
        assert_eq!(
            runs(&b, 2),
            vec![
                (1, 2000, 1000),
                (2, 1000, 1000),
                (2, 2400, 1200),
                (2, 1200, 1200)
            ]
        );
    }

    #[test]
    fn a_run_ends_after_a_shorter_datagram_and_order_is_kept() {
        let mut b = Batch::new();
        for (i, len) in [1000, 500, 1000, 1000].into_iter().enumerate() {
            b.send(addr(1), &vec![i as u8; len]);
        }
        assert_eq!(runs(&b, 64), vec![(1, 1500, 1000), (1, 2000, 1000)]);
        let bytes: Vec<u8> = b
            .datagram_runs(64)
            .flat_map(|r| r.contents.to_vec())
            .collect();
        let direct: Vec<u8> = b.datagrams().flat_map(|(_, d)| d.to_vec()).collect();
        assert_eq!(bytes, direct);
    }

    #[test]
    fn runs_stay_under_the_gso_byte_limit() {
        let mut b = Batch::new();
        for _ in 0..100 {
            b.send(addr(1), &[0; 1452]);
        }
        let r = runs(&b, 128);
        assert!(r.iter().all(|(_, len, _)| *len <= MAX_GSO_BYTES));
        assert_eq!(r.iter().map(|(_, len, _)| len).sum::<usize>(), 145_200);
    }

    #[test]
    fn clearing_keeps_memory_and_tun_packets_keep_their_headroom() {
        let mut b = Batch::with_headroom(12);
        b.write_tun(&[1, 2, 3]);
        b.send(addr(1), &[9; 10]);
        assert_eq!(b.tun_packets().next(), Some(&[1u8, 2, 3][..]));
        assert_eq!(b.tun_buffers_mut()[0].len(), 15);
        let cap = b.arena.len();
        b.clear();
        assert!(b.is_empty());
        b.write_tun(&[4]);
        assert_eq!(b.tun_packets().collect::<Vec<_>>(), vec![&[4u8][..]]);
        assert_eq!(b.arena.len(), cap);
    }
}
