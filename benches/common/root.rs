//! The gate of the benchmarks that build network namespaces.

/// Whether a root-only benchmark should run: not without root (it says so), and not when cargo
/// only lists the benchmarks.
pub fn may_run(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the {what} benchmark needs root (network namespaces)");
        return false;
    }
    !std::env::args().any(|a| a == "--list")
}
