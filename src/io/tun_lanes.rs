//! Two queues on the tun device: small outgoing packets apart from bulk, the tun side of
//! [`crate::io::lanes`].
//!
//! Under a saturating TCP transfer the tun device's queue holds up to a millisecond of TSO
//! super-packets (TCP small queues let each socket keep about that much in flight below it),
//! and a ping or an ACK that the kernel queues behind them waits until the outbound thread has
//! encrypted them all (traced: p99 0.38 ms of a ping's round trip, at the sender). The device is
//! opened multi-queue with a second queue, and a steering program (`TUNSETSTEERINGEBPF`, four
//! eBPF instructions) sends packets of at most [`SMALL_PACKET`] bytes to it; the fast-lane
//! thread reads that queue, the outbound thread the first.
//!
//! Without the program (no `CAP_BPF` or `CAP_SYS_ADMIN`, or a kernel without eBPF) the device
//! keeps one queue and everything works as before. As with the UDP lanes, a small packet may
//! overtake bulk of its own flow; flows of small packets stay in order.

use crate::constants::SMALL_PACKET;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tun_rs::SyncDevice;

/// `TUNSETSTEERINGEBPF`: `_IOR('T', 224, int)`.
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

/// Adds a second queue to `dev` (opened multi-queue) and steers small packets to it. Returns
/// the new queue, non-blocking.
pub fn add_fast_queue(dev: &SyncDevice) -> io::Result<SyncDevice> {
    let program = load_steering()?;
    let fast = dev.try_clone()?;
    fast.set_nonblocking(true)?;
    let fd: libc::c_int = program.as_raw_fd();
    // SAFETY: a valid tun descriptor and a pointer to an int holding a program descriptor;
    // the kernel takes its own reference to the program.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), TUNSETSTEERINGEBPF as _, &fd) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fast)
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
struct Insn {
    code: u8,
    /// dst register in the low nibble, src in the high one
    regs: u8,
    off: i16,
    imm: i32,
}

/// The head of `union bpf_attr` for `BPF_PROG_LOAD`; the kernel takes the rest as zero.
#[repr(C, align(8))]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// Loads `return skb->len > SMALL_PACKET ? 0 : 1` as a socket filter program: the queue index.
fn load_steering() -> io::Result<OwnedFd> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const SOCKET_FILTER: u32 = 1;
    const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const JGT_K: u8 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
    const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    let program = [
        // r0 = skb->len (the first field of struct __sk_buff, pointed to by r1)
        Insn {
            code: LDX_W,
            regs: 1 << 4,
            off: 0,
            imm: 0,
        },
        Insn {
            code: JGT_K,
            regs: 0,
            off: 2,
            imm: SMALL_PACKET as i32,
        },
        Insn {
            code: MOV_K,
            regs: 0,
            off: 0,
            imm: 1,
        },
        Insn {
            code: EXIT,
            regs: 0,
            off: 0,
            imm: 0,
        },
        Insn {
            code: MOV_K,
            regs: 0,
            off: 0,
            imm: 0,
        },
        Insn {
            code: EXIT,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let license = c"GPL";
    let attr = ProgLoad {
        prog_type: SOCKET_FILTER,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `attr` points at `program` and `license`, both alive for the call; the kernel
    // copies them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}
