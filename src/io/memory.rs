//! Handing freed heap back to the kernel.
//!
//! Loading and planning a 10,000-node topology allocates tens of MiB that are all freed once
//! the plan is applied; glibc's allocator keeps them mapped (the daemon's RSS stays at the
//! peak of that one parse) unless asked to trim. The daemon asks after every apply, so its
//! resident memory reflects the peers it holds, not the file it read.

/// Returns freed heap pages to the kernel; a no-op where the allocator is not glibc's.
pub fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
