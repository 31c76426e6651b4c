//! Resident memory of this process: the high-water mark the benchmarks report, and handing freed heap
//! memory back to the operating system.
//!
//! Linux only (`/proc/self/status`, `/proc/self/clear_refs`, glibc's `malloc_trim`); elsewhere the
//! functions report nothing and do nothing.

/// Resident-set high-water mark of this process (`VmHWM` in `/proc/self/status`), bytes; `None` where
/// unavailable.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Current resident set (`VmRSS`), bytes; `None` where unavailable.
pub fn rss_bytes() -> Option<u64> {
    status_kb("VmRSS:").map(|kb| kb * 1024)
}

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the high-water mark to the current resident set (`echo 5 > /proc/self/clear_refs`); false
/// where that is not possible (then [`peak_rss_bytes`] covers the process's whole life).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Returns free heap memory to the operating system (glibc `malloc_trim(0)`).
///
/// glibc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold in its arenas, so after
/// weights are converted (f32 → bf16) or temporaries of their initialisation are dropped, the freed
/// bytes still count as resident until trimmed. Call after such a step; it does not touch live data.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Lets glibc keep freed activation buffers for reuse instead of returning them to the kernel after
/// every op: `mallopt(M_MMAP_THRESHOLD, 64 MiB)` (allocations below come from the heap, not a fresh
/// `mmap`) and `mallopt(M_TRIM_THRESHOLD, 256 MiB)` (free memory at the top of the heap is kept up to
/// that much). With the defaults each large temporary (a CLIP-L MLP activation is 9.5 MB) is a new
/// mapping whose pages the kernel faults in and zeroes again: 14 % of the bf16 tower's time in a
/// profile. Measured (bench infer, bf16 weights): vision tower 1.49 → 1.34 s, peak resident memory
/// 1.26× → 1.18× the weights.
///
/// And one allocator arena for every thread (`mallopt(M_ARENA_MAX, 1)`): a forward pass runs on
/// whichever rayon worker picks it up (`crate::threads::in_pool`), and with an arena per thread the
/// buffers one pass freed in its worker's arena (kept there, as above) could not serve the next pass on
/// the other worker, which took fresh memory instead (the KV cache of a long prefill after the vision
/// tower had run on the other thread). Small allocations still come from each thread's cache
/// (`tcache`) without the arena's lock. Measured (bench infer, 2 threads, two runs each, peak resident
/// memory over all weights held): q4_0 LLM 1.30× → 1.22×, q8_0 1.23–1.26× → 1.17×, bf16 1.20–1.21× →
/// 1.14×.
///
/// Call once at the start of an inference command, before loading weights and before any thread
/// allocates (a thread keeps the arena it was given); [`release_free_memory`] still returns what is free
/// after a weight conversion. No-op off glibc.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
