//! Memory that comes back after a burst.
//!
//! glibc's malloc gives a block of 128 KiB or more its own mapping,
//! unmapped when freed, but after each such free it raises that threshold
//! (up to 32 MiB), and big buffers then come from the arenas, which keep
//! them. A 100k-id list builds a few MiB of strings per request: after 16 of
//! them at once a host held four times its idle RSS for good. A fixed
//! threshold keeps big blocks in their own mappings: measured
//! (BENCHMARKS.md, "Scaling"), RSS after such a burst fell from 204 to
//! 131 MiB against 50 MiB before it. A periodic `malloc_trim` was tried on
//! top and changed nothing measurable: what stays is in use (SQLite page
//! caches of pooled connections, pooled plugin memory slots).
//!
//! Linux with glibc only; elsewhere nothing changes.

/// Blocks this large or larger get their own mapping, returned when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 256 << 10;

pub fn return_big_blocks_when_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator policy, and is
    // thread-safe.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
