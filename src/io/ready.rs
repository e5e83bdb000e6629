//! Waiting for one descriptor with `poll(2)`: the data-path threads own their descriptors and
//! block here, so a wake-up lands on the thread that does the work (no reactor hop between
//! threads, no epoll registration per descriptor).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Blocks until `fd` is readable (or `writable`), or `timeout` passes. `Ok(false)` on timeout.
pub fn wait(fd: BorrowedFd<'_>, writable: bool, timeout: Duration) -> io::Result<bool> {
    wait_any(&[fd], writable, timeout)
}

/// Like [`wait`], for whichever of `fds` (at most 4) becomes ready first.
pub fn wait_any(fds: &[BorrowedFd<'_>], writable: bool, timeout: Duration) -> io::Result<bool> {
    let events = if writable {
        libc::POLLOUT
    } else {
        libc::POLLIN
    };
    let mut pfds = [libc::pollfd {
        fd: -1,
        events,
        revents: 0,
    }; 4];
    let n = fds.len().min(pfds.len());
    for (p, fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd.as_raw_fd();
    }
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `n` valid pollfds for the duration of the call.
    match unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, ms) } {
        n if n > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}
