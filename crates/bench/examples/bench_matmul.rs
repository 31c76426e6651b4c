//! Times single f32 matmuls (`y = x Wᵀ`, W stored (n, k) as torch's `nn.Linear`) at the shapes that dominate
//! the CLIP tower and the decoder, through each available [`kernels::matmul`] backend back to back:
//! `cargo run --release -p vlmscale-bench --features vlmscale-kernels/openblas --example bench_matmul`. A benchmark, not a test.
use candle_core::{DType, Device, Tensor};
use kernels::matmul::{linear, set_matmul_backend, MatmulBackend};
use std::time::Instant;

/// One warm-up call of `f`, then the best wall time of `reps` calls, seconds.
fn best_secs(reps: usize, f: impl Fn() -> engine::Result<Tensor>) -> engine::Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        drop(f()?);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> engine::Result<()> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let dev = Device::Cpu;
    let shapes = [
        (577, 1024, 4096),
        (577, 4096, 1024),
        (577, 1024, 1024),
        (2048, 2048, 2048),
        (626, 1024, 2816),
        (51, 1024, 2816),
        (51, 2816, 1024),
        (51, 1024, 1024),
        (1, 1024, 151936),
        (1, 1024, 2816),
        (1, 2816, 1024),
    ];
    let mut backends = vec![MatmulBackend::Candle];
    if set_matmul_backend(MatmulBackend::OpenBlas).is_ok() {
        backends.push(MatmulBackend::OpenBlas);
    }
    for (m, k, n) in shapes {
        let x = kernels::random::randn(&mut rng, 1.0, (m, k), candle_core::DType::F32, &dev)?;
        let w = kernels::random::randn(&mut rng, 1.0, (n, k), candle_core::DType::F32, &dev)?;
        let reps = if m * n * k > 1 << 31 { 3 } else { 10 };
        for &backend in &backends {
            set_matmul_backend(backend)?;
            let best = best_secs(reps, || linear(&x, &w, None))?;
            let gflop = 2.0 * (m * k * n) as f64 / 1e9;
            println!(
                "{backend:?}\t{m:>5}x{k:>5}x{n:>6}\t{:>8.2} ms\t{:>6.1} GFLOP/s\t{:>5.1} GB/s of f32 weights",
                best * 1e3,
                gflop / best,
                (n * k * 4) as f64 / best / 1e9
            );
        }
        // bf16 weights (kernels::matmul_bf16): AMX or AVX512-BF16 for m ≥ 16, AVX-512 mat-vec below
        // (`VLM_NO_AMX=1` / `VLM_NO_DPBF16=1` switch a kernel off, to compare).
        let wb = w.to_dtype(DType::BF16)?;
        let best = best_secs(reps, || linear(&x, &wb, None))?;
        let gflop = 2.0 * (m * k * n) as f64 / 1e9;
        let path = kernels::matmul_bf16::Bf16Path::choose(kernels::matmul_bf16::bf16_kernels(), m, n, k);
        println!(
            "bf16 {path:?}\t{m:>5}x{k:>5}x{n:>6}\t{:>8.2} ms\t{:>6.1} GFLOP/s\t{:>5.1} GB/s of bf16 weights",
            best * 1e3,
            gflop / best,
            (n * k * 2) as f64 / best / 1e9
        );
    }
    Ok(())
}
