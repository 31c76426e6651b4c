//! Times single f32 matmuls at the shapes that dominate the CLIP tower and the decoder, through candle's
//! default CPU matmul (the `gemm` crate) — `cargo run --release -p vlm --example bench_matmul`.
//! A benchmark, not a test.
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let dtype = match std::env::args().nth(1).as_deref() {
        Some("bf16") => DType::BF16,
        Some("f16") => DType::F16,
        _ => DType::F32,
    };
    // (m, k, n): y (m, n) = x (m, k) · Wᵀ with W stored (n, k) as torch's nn.Linear does.
    let shapes = [(577, 1024, 4096), (577, 4096, 1024), (577, 1024, 1024), (2048, 2048, 2048), (626, 1024, 2816), (1, 1024, 151936)];
    for (m, k, n) in shapes {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?.to_dtype(dtype)?;
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?.to_dtype(dtype)?;
        let wt = w.t()?;
        x.matmul(&wt)?;
        let reps = if m * n * k > 1 << 31 { 3 } else { 10 };
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t = Instant::now();
            let y = x.matmul(&wt)?;
            drop(y);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let gflop = 2.0 * (m * k * n) as f64 / 1e9;
        println!("{dtype:?} {m:>5}x{k:>5}x{n:>6}  {:>8.2} ms  {:>6.1} GFLOP/s", best * 1e3, gflop / best);
    }
    Ok(())
}
