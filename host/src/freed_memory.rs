//! Memory that comes back after a burst.
//!
//! After a burst of big lists (16 connections listing 100k ids) a host held
//! 2.6× its idle RSS for good. Five holders, each bounded now (BENCHMARKS.md,
//! "Memory after a burst"):
//! - glibc gives a block of 128 KiB or more its own mapping, unmapped when
//!   freed, but after each such free it raises that threshold (up to
//!   32 MiB), and big buffers then come from the arenas, which keep them. A
//!   fixed threshold keeps big blocks in their own mappings (here).
//! - SQLite's page caches, one per pooled connection: capped over the whole
//!   process (`db::cap_memory`, `--sqlite-cache-mib`).
//! - Plugin memory slots keep their first pages resident between instances
//!   (`plugins::limits`): 256 KiB per slot, not 2 MiB.
//! - Freed pages inside glibc's per-thread arenas stay resident until
//!   trimmed: a thread trims every few seconds (here). glibc still serves
//!   SQLite and the other C code.
//! - The binary's allocator is mimalloc (`cli/src/main.rs`). A block freed
//!   on another thread than the one that allocated it waits in its page
//!   until the owner collects with force; an async worker does so when it
//!   goes idle (`worker_idle`, the runtime's `on_thread_park`), and the
//!   trimming thread purges mimalloc's free arena pages (here).
//!
//! glibc's part is Linux with glibc only; elsewhere it changes nothing.

use std::time::{Duration, Instant};

/// Blocks this large or larger get their own mapping, returned when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 256 << 10;

/// How often free arena pages go back to the kernel. A trim walks every
/// arena under its lock (about a millisecond after a burst, microseconds
/// when there is nothing to give back), so this costs nothing measurable.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// For a runtime's `on_thread_park`: an async worker that goes idle gives
/// back the pages its mimalloc heap holds free, at most once per
/// [`COLLECT_EVERY`]. Only a forced collection finds the blocks that other
/// threads freed into this thread's full pages, and a request's buffers
/// often are freed on another worker: without it, a host held 1.75× its RSS
/// after a burst of big lists. A forced collection also purges mimalloc's
/// arenas (`madvise`, a TLB shootdown): at every park it cost 7% of a GET's
/// throughput (workers park thousands of times a second between requests),
/// every 10 ms still 2% of its CPU.
pub fn worker_idle() {
    thread_local! {
        static LAST: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = Instant::now();
    let due = LAST.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < COLLECT_EVERY => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        collect_mimalloc(true);
    }
}

/// The least time between two forced collections of one worker's heap: at
/// most what a worker frees in this long stays with it once it sleeps.
const COLLECT_EVERY: Duration = Duration::from_millis(100);

/// mimalloc's collection of this thread's heap (`force`: every free page,
/// and the process's arenas purged now rather than after their delay).
/// Harmless when mimalloc is not the allocator: its heaps are then empty.
fn collect_mimalloc(force: bool) {
    // SAFETY: mi_collect only frees pages that hold no live block; it may be
    // called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(force) }
}

/// Sets glibc's policy and starts the trimming thread. Once per process.
pub(crate) fn return_memory_when_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's allocator policy, and is
        // thread-safe.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
        let started = std::thread::Builder::new().name("malloc-trim".into()).spawn(|| {
            // A thread that never allocated has no mimalloc heap, and
            // mimalloc's collection returns at once on such a thread.
            // SAFETY: initialises this thread's mimalloc heap; idempotent.
            unsafe { libmimalloc_sys::mi_thread_init() };
            loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim only returns free pages to the kernel; it
                // is thread-safe (it takes each arena's lock).
                unsafe {
                    libc::malloc_trim(0);
                }
                // mimalloc's free arena pages are the whole process's: a forced
                // collection from any thread purges them.
                collect_mimalloc(true);
            }
        });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the malloc-trim thread; freed memory stays with the process");
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = TRIM_EVERY;
}
