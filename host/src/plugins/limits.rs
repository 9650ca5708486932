//! What one plugin instance may allocate, enforced twice: by the pooling
//! allocator (fixed-size slots a plugin cannot get around) and by a
//! per-instance [`Allowance`] that counts *all* its linear memories and table
//! elements together, so neither many small memories nor a grown `funcref`
//! table can add up past the cap.

use std::time::Duration;

use wasmtime::{Enabled, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter};

/// Per-call limits; the defaults are the CLI's defaults.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// A call running longer than this is stopped (HTTP 503).
    pub deadline: Duration,
    /// CPU a call may use at full speed before it is paced to ~5% of a core
    /// (`pacing`); `None`: never paced.
    pub pacing_after: Option<Duration>,
    /// Cap on all of an instance's linear memories together (growing past it traps).
    pub memory_bytes: usize,
    /// Cap on all of an instance's table elements together.
    pub table_elements: usize,
    /// Instances kept after a call and reused by later requests, of any
    /// account. 0 (the default) gives every call a fresh instance, so no
    /// plugin state survives a request. Unsafe for plugins you did not write.
    pub reuse_instances: usize,
    /// Optional instruction budget per call (wasmtime fuel); `None` = off.
    /// Deterministic where the deadline is wall-clock, at ~15% call cost.
    pub fuel: Option<u64>,
    /// Plugin instances alive at once, over all plugins (the pool's slots).
    /// A call that finds none free fails with 503.
    pub max_instances: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            deadline: Duration::from_millis(1000),
            pacing_after: Some(super::pacing::DEFAULT_PACING_AFTER),
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            reuse_instances: 0,
            fuel: None,
            max_instances: 1024,
        }
    }
}

/// Most core instances, memories and tables one component may have. A Rust
/// `wasm32-wasip2` plugin has 3 core instances, 1 memory and 2 tables; a
/// componentize-py 0.25 plugin has 14 core instances (its interpreter, libc
/// and the WASI adapter; 38 with `--stub-wasi`, whose stubs are instances). A component over them cannot
/// be instantiated, so its upload is refused. The pool's total of core
/// instances (`total_core_instances`) is shared, so many-module plugins
/// fill it sooner: 4 per slot covers Rust plugins in every slot.
pub(super) const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
pub(super) const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
pub(super) const MAX_TABLES_PER_COMPONENT: u32 = 16;
/// Bytes of a freed memory slot that may stay resident, reset in place to the
/// plugin's image instead of being returned to the kernel. With Linux's
/// `PAGEMAP_SCAN` (6.7+) only the pages a call dirtied are reset, so a fresh
/// instance costs no `madvise`, no TLB shootdown and no page faults for the
/// few pages a call touches. Bounded, so a plugin that grew its memory leaves
/// at most this much resident per slot: after a burst of 100k-id lists every
/// slot used at once kept all of it (2 MiB each before). 256 KiB costs a
/// fresh get 2–3 µs in the micro-benchmarks (512 KiB the same), within the
/// noise over HTTP, and an eighth of the memory kept after such a burst
/// (BENCHMARKS.md, "Memory after a burst").
const KEEP_RESIDENT_BYTES: usize = 256 << 10;

/// The pooling allocator: every instance, memory and table comes from a slot
/// sized by `limits`, and a freed slot keeps its copy-on-write memory image,
/// so a fresh instance per request costs a few microseconds.
pub(super) fn allocation_strategy(limits: &PluginLimits) -> InstanceAllocationStrategy {
    let instances = limits.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(3))
        // One fiber stack per call in progress: a call runs on its request's
        // task (`call_async`), on a stack from the pool. Not zeroed between
        // calls: a guest cannot read the host's stack.
        .total_stacks(instances)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_memories_per_module(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_module(MAX_TABLES_PER_COMPONENT)
        .max_memory_size(limits.memory_bytes)
        .table_elements(limits.table_elements)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(64 << 10)
        // Used where the kernel has it; elsewhere resets fall back to memset
        // of the kept bytes and madvise of the rest.
        .pagemap_scan(Enabled::Auto);
    InstanceAllocationStrategy::Pooling(pool)
}

/// A plugin asked for more than its allowance. Carried as the call's error,
/// so the failure names the limit instead of a bare trap.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(super) struct LimitExceeded(pub String);

/// What one instance holds, against its caps. `memory_growing` is also called
/// when a memory is created (with `current = 0`), so the sums include every
/// memory and table from instantiation on.
///
/// A growth is counted when allowed, even if wasmtime then fails it (over the
/// memory's declared maximum): that errs against the plugin only. Undoing it
/// in `memory_grow_failed` would not be safe, since wasmtime also calls that
/// for failures it never asked the limiter about, and a plugin could then
/// undo growths that did happen.
#[derive(Debug)]
pub(super) struct Allowance {
    memory_cap: usize,
    table_cap: usize,
    /// Bytes of linear memory over all the instance's memories.
    pub memory_bytes: usize,
    /// Elements over all the instance's tables.
    pub table_elements: usize,
}

impl Allowance {
    pub(super) fn new(limits: &PluginLimits) -> Self {
        Allowance { memory_cap: limits.memory_bytes, table_cap: limits.table_elements, memory_bytes: 0, table_elements: 0 }
    }
}

impl ResourceLimiter for Allowance {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_bytes.saturating_sub(current).saturating_add(desired);
        if total > self.memory_cap {
            return Err(wasmtime::Error::new(LimitExceeded(format!(
                "memory limit: the plugin asked for {} MiB of linear memory in all, over its cap of {} MiB",
                total.div_ceil(1 << 20),
                self.memory_cap >> 20
            ))));
        }
        self.memory_bytes = total;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.table_elements.saturating_sub(current).saturating_add(desired);
        if total > self.table_cap {
            return Err(wasmtime::Error::new(LimitExceeded(format!(
                "table limit: the plugin asked for {total} table elements in all, over its cap of {}",
                self.table_cap
            ))));
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES_PER_COMPONENT as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES_PER_COMPONENT as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES_PER_COMPONENT as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowance() -> Allowance {
        Allowance::new(&PluginLimits { memory_bytes: 64 << 20, table_elements: 1000, ..PluginLimits::default() })
    }

    #[test]
    fn memories_count_together_against_one_cap() {
        let mut a = allowance();
        assert!(a.memory_growing(0, 40 << 20, None).unwrap(), "a first memory of 40 MiB fits");
        let err = a.memory_growing(0, 30 << 20, None).unwrap_err();
        assert!(err.downcast_ref::<LimitExceeded>().is_some(), "a second memory of 30 MiB makes 70 MiB: refused");
        assert!(a.memory_growing(40 << 20, 60 << 20, None).unwrap(), "growing the first to 60 MiB still fits");
        assert_eq!(a.memory_bytes, 60 << 20);
    }

    #[test]
    fn table_elements_count_together_against_one_cap() {
        let mut a = allowance();
        assert!(a.table_growing(0, 600, None).unwrap());
        assert!(a.table_growing(0, 500, None).is_err(), "600 + 500 is over 1000");
        assert!(a.table_growing(600, 1000, None).unwrap());
        assert!(a.table_growing(1000, 1001, None).is_err());
    }
}
