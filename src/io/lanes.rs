//! Two receive lanes on one UDP port: small datagrams apart from bulk.
//!
//! Under a saturating transfer the receiver's socket holds up to a few milliseconds of bulk
//! datagrams, and a ping, a handshake or a TCP ACK that arrives behind them waits that long
//! (measured: the receiver's socket queue was the whole p99 of ping under load). Peers send to
//! one port, as WireGuard requires, so the split happens in the kernel: two sockets share the
//! port in one `SO_REUSEPORT` group, and a classic BPF program steers each datagram by its UDP
//! payload length, at most [`SMALL`] bytes to the fast lane. The receive loop reads the fast lane
//! first. A datagram that overtakes bulk this way is still inside the replay window unless more
//! than a thousand datagrams were queued ahead of it.
//!
//! A small datagram can overtake large ones of its own flow (the short tail of a TCP write);
//! TCP takes such reordering in its stride, and flows of small packets (interactive sessions,
//! DNS, ACKs) stay in order, since all their datagrams take the same lane.

use crate::constants::SMALL_DATAGRAM;
use crate::io::udp::bind_socket;
use socket2::Socket;
use std::io;
use std::os::fd::AsRawFd;

/// Largest UDP payload steered to the fast lane ([`SMALL_DATAGRAM`]). Path-MTU probes and bulk
/// segments are larger.
pub const SMALL: u32 = SMALL_DATAGRAM as u32;

/// The bulk socket and the fast one, bound in this order to `port` (not 0: the group's
/// sockets must name the same port) in one `SO_REUSEPORT` group.
pub fn bind(port: u16, dual_stack: bool) -> io::Result<(Socket, Socket)> {
    let bulk = bind_socket(port, dual_stack, true)?;
    let fast = bind_socket(port, dual_stack, true)?;
    steer_by_size(&bulk)?;
    Ok((bulk, fast))
}

/// Attaches the steering program to the group: index 0 (the first socket bound, bulk) for
/// payloads over [`SMALL`] bytes, index 1 (fast) for the rest.
fn steer_by_size(sock: &Socket) -> io::Result<()> {
    const LD_LEN: u16 = 0x80; // BPF_LD | BPF_W | BPF_LEN: A = payload length
    const JGT_K: u16 = 0x05 | 0x20; // BPF_JMP | BPF_JGT | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let mut program = [
        libc::sock_filter {
            code: LD_LEN,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: JGT_K,
            jt: 0,
            jf: 1,
            k: SMALL,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: 1,
        },
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: a valid socket and a sock_fprog pointing at `program`, which outlives the call;
    // the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
