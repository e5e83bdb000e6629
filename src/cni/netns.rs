//! Reading an interface's MTU inside a container's network namespace, given its path. A
//! thread of our own enters the namespace (`setns` moves only the calling thread), so the rest
//! of the plugin stays in the node's.

use super::error::CniError;
use std::os::fd::AsRawFd as _;
use std::path::Path;

/// The MTU of `ifname` in the network namespace at `netns`.
pub fn mtu_in(netns: &Path, ifname: &str) -> Result<u32, CniError> {
    let ns = std::fs::File::open(netns)
        .map_err(|e| CniError::io(format!("CNI_NETNS: open {}", netns.display()), e))?;
    let name = ifname.to_string();
    let what = format!("interface {ifname} in {}", netns.display());
    std::thread::spawn(move || {
        // SAFETY: `ns` is an open namespace descriptor; setns affects only this thread, which
        // ends when the closure returns.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        interface_mtu(&name)
    })
    .join()
    .map_err(|_| CniError::io(&what, std::io::Error::other("reader thread panicked")))?
    .map_err(|e| CniError::io(what, e))
}

/// `SIOCGIFMTU` on a socket opened in the current thread's namespace.
fn interface_mtu(ifname: &str) -> std::io::Result<u32> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: an all-zero ifreq is valid; the name is copied within IFNAMSIZ - 1 bytes.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = ifname.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifr_ifru.ifru_mtu of `req`, which we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the ioctl succeeded, so the union holds the MTU.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_of_our_own_namespace_has_a_readable_mtu() {
        let mtu = mtu_in(Path::new("/proc/self/ns/net"), "lo").unwrap();
        assert!(mtu >= 1500, "{mtu}");
    }

    #[test]
    fn a_missing_interface_is_named_in_the_error() {
        let e = mtu_in(Path::new("/proc/self/ns/net"), "nosuchif0").unwrap_err();
        assert!(e.to_string().contains("nosuchif0"), "{e}");
    }
}
