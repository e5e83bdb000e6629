//! The gate of the benchmarks that build network namespaces.

/// Whether a root-only benchmark should run: not without root (it says so, even under CI: a
/// benchmark proves nothing), and not when cargo only lists the benchmarks.
pub fn may_run(what: &str) -> bool {
    use wiremesh::testing::{has_root, UnderCi};
    has_root(&format!("the {what} benchmark"), UnderCi::Skip)
        && !std::env::args().any(|a| a == "--list")
}
