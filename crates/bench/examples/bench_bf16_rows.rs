//! The bf16 product at decode's shapes, out of cache: `y = x·Wᵀ` with m = 1, 2, 4, 8 rows of `x`
//! (one decode step of m sequences) over 48 seeded random (2816, 1024) bf16 matrices (277 MB, far
//! above the last-level cache, as a decoder's weights are), through [`kernels::matmul_bf16::gemm_bf16`]
//! on this CPU's path. Prints ms per pass, GB/s of weights and ms per row; continuous batching gains
//! as long as a pass at m rows costs well under m passes at one row.
//! `RAYON_NUM_THREADS=1 cargo run --release -p vlmscale-bench --example bench_bf16_rows`. A benchmark,
//! not a test.
use half::bf16;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() {
    let (n, k, mats) = (2816usize, 1024usize, 48usize);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let ws: Vec<Vec<bf16>> =
        (0..mats).map(|_| (0..n * k).map(|_| bf16::from_f32(rng.random_range(-0.5..0.5))).collect()).collect();
    let path = |m| kernels::matmul_bf16::Bf16Path::choose(kernels::matmul_bf16::bf16_kernels(), m, n, k);
    println!("{mats} × ({n}, {k}) bf16 matrices, {} threads", kernels::threads::num_threads());
    for m in [1usize, 2, 4, 8, 32, 64] {
        let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut y = vec![0f32; m * n];
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = Instant::now();
            for w in &ws {
                kernels::matmul_bf16::gemm_bf16(&x, w, &mut y, m, n, k);
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let bytes = (mats * n * k * 2) as f64;
        println!(
            "m {m} ({:?}): {:.2} ms per pass, {:.2} GB/s of weights, {:.2} ms per row",
            path(m),
            best * 1e3,
            bytes / best / 1e9,
            best * 1e3 / m as f64
        );
    }
}
