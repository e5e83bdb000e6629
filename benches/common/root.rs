//! The gate of the benchmarks that build network namespaces.

/// Whether a root-only benchmark should run: not without root (it says so, even under CI: a
/// benchmark proves nothing), and not when cargo only lists the benchmarks.
#[allow(dead_code)] // the benchmarks that need no root do not ask
pub fn may_run(what: &str) -> bool {
    use wiremesh::testing::{has_root, UnderCi};
    has_root(&format!("the {what} benchmark"), UnderCi::Skip)
        && !std::env::args().any(|a| a == "--list")
}

/// The machine a figure was measured on: CPU model and kernel release.
#[allow(dead_code)] // not every benchmark prints it
pub fn host() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, kernel {}", kernel.trim())
}
