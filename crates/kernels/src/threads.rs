//! The CPU thread count the engine's kernels use, looked up once per process.
//!
//! candle's `candle_core::utils::get_num_threads` answers from `RAYON_NUM_THREADS` when it is set, and
//! otherwise re-derives the physical core count (CPU mask, `/proc/cpuinfo`) on **every call** — and
//! candle calls it on every CPU matmul. Measured on a 2-vCPU VM: ≈ 16 µs per call, i.e.
//! 1–3 ms per decoded token at 24 layers × 4–9 products. [`num_threads`] caches the
//! answer; [`pin_rayon_threads`] (called by the CLI at start-up) exports it as `RAYON_NUM_THREADS` so
//! candle's own lookups take the cheap path too, without changing the count.
use std::sync::OnceLock;

/// candle's thread count (`RAYON_NUM_THREADS`, else the physical cores), computed on the first call.
pub fn num_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

/// Sets `RAYON_NUM_THREADS` to [`num_threads`] when it is unset (the same count candle and rayon would
/// use). Call it at the start of `main`, before any thread is spawned; a value the user set is kept.
pub fn pin_rayon_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = num_threads();
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

/// Runs `f` on a worker thread of rayon's global pool, the calling thread waiting for it (inline when
/// already on a worker).
///
/// Every parallel kernel (bf16 products, candle's gemm, [`crate::attention`]) started
/// from a thread outside the pool hands its work to the pool and sleeps until a worker wakes, picks it
/// up and finishes — a cross-thread wake-up per op, ~10–100 µs on a VM. Started from a worker, the
/// same kernel runs one part inline while the other workers steal the rest. One hand-off per forward
/// pass instead of one per op; measured on a 2-vCPU VM (Qwen-1.5-0.5B shape, bf16 weights, 2
/// threads): decode 75 → 58 ms/token, prefill of 626 tokens 1.8 → 1.2 s.
///
/// Used for inference forward passes only: training runs its data-parallel shards on its own threads.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Splits `0..n` into at most `parts` ranges whose starts are multiples of `align` (the columns or
/// weight rows each thread of a product takes; empty ranges are left out).
pub fn split_ranges(n: usize, align: usize, parts: usize) -> Vec<(usize, usize)> {
    let blocks = n.div_ceil(align);
    let parts = parts.clamp(1, blocks.max(1));
    (0..parts)
        .map(|p| ((blocks * p / parts * align).min(n), (blocks * (p + 1) / parts * align).min(n)))
        .filter(|(a, b)| a < b)
        .collect()
}
