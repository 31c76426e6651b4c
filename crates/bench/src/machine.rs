//! What the CPU can do, measured in the same run as a benchmark: the f32 matmul limit, the memory read
//! bandwidth, the f64 multiply-add limit, and the load average the timings were taken under.
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// f32 matmul throughput on this CPU through the kernels crate's matmul backend (2048² × 2048², best
/// of 3), GFLOP/s: the practical f32 limit the benchmarks compare against.
///
/// Errors: a candle error from the product.
pub fn measured_matmul_gflops() -> engine::Result<f64> {
    use candle_core::{Device, Tensor};
    let n = 2048;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut draw =
        || Tensor::from_vec((0..n * n).map(|_| rng.random_range(-1f32..1.0)).collect::<Vec<_>>(), (n, n), &Device::Cpu);
    let (a, b) = (draw()?, draw()?);
    kernels::matmul::matmul(&a, &b)?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t0 = Instant::now();
        std::hint::black_box(kernels::matmul::matmul(&a, &b)?);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

/// Memory read bandwidth of this CPU as the decode sees it: all threads summing a 512 MiB buffer
/// (best of 3 passes), GB/s. Decode is bound by this: every weight is read once per token.
pub fn measured_read_bandwidth() -> f64 {
    use rayon::prelude::*;
    let buf = vec![1u32; 128 << 20];
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t0 = Instant::now();
        let s: u32 = buf
            .par_chunks(1 << 16)
            .map(|c| {
                let lanes = c.chunks_exact(16).fold([0u32; 16], |mut acc, x| {
                    for (a, b) in acc.iter_mut().zip(x) {
                        *a = a.wrapping_add(*b);
                    }
                    acc
                });
                lanes.iter().fold(0u32, |a, b| a.wrapping_add(*b))
            })
            .reduce(|| 0, |a, b| a.wrapping_add(b));
        std::hint::black_box(s);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    (buf.len() * 4) as f64 / best / 1e9
}

/// A practical f64 arithmetic limit of this build on this CPU, FLOP/s: a multiply-add loop with
/// independent accumulators over L1-resident data, on every core (rayon).
pub fn measured_f64_limit() -> f64 {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let x: Vec<f64> = (0..2048).map(|i| 1.0 + i as f64 * 1e-6).collect();
    let reps = 20_000;
    let t0 = Instant::now();
    let sink: f64 = (0..threads)
        .into_par_iter()
        .map(|t| {
            let mut acc = [t as f64; 16];
            for _ in 0..reps {
                for ch in x.chunks_exact(16) {
                    for k in 0..16 {
                        acc[k] = acc[k] * 0.999_999 + ch[k];
                    }
                }
            }
            acc.iter().sum::<f64>()
        })
        .sum();
    let dt = t0.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    (threads * reps * x.len() * 2) as f64 / dt
}

/// `uptime`'s load averages (1, 5, 15 min) from /proc/loadavg, as text.
pub fn load_average() -> String {
    match std::fs::read_to_string("/proc/loadavg") {
        Ok(s) => format!("load average {}", s.split_whitespace().take(3).collect::<Vec<_>>().join(", ")),
        Err(_) => "load average unknown".into(),
    }
}
