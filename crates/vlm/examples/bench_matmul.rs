//! Times single f32 matmuls (`y = x Wᵀ`, W stored (n, k) as torch's `nn.Linear`) at the shapes that dominate
//! the CLIP tower and the decoder, through each available [`vlm::matmul`] backend back to back:
//! `cargo run --release -p vlm --features openblas --example bench_matmul`. A benchmark, not a test.
use candle_core::{Device, Tensor};
use std::time::Instant;
use vlm::matmul::{linear, set_matmul_backend, MatmulBackend};

fn main() -> vlm::Result<()> {
    let dev = Device::Cpu;
    let shapes = [(577, 1024, 4096), (577, 4096, 1024), (577, 1024, 1024), (2048, 2048, 2048), (626, 1024, 2816), (1, 1024, 151936)];
    let mut backends = vec![MatmulBackend::Candle];
    if set_matmul_backend(MatmulBackend::OpenBlas).is_ok() {
        backends.push(MatmulBackend::OpenBlas);
    }
    for (m, k, n) in shapes {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let reps = if m * n * k > 1 << 31 { 3 } else { 10 };
        for &backend in &backends {
            set_matmul_backend(backend)?;
            linear(&x, &w, None)?;
            let mut best = f64::INFINITY;
            for _ in 0..reps {
                let t = Instant::now();
                drop(linear(&x, &w, None)?);
                best = best.min(t.elapsed().as_secs_f64());
            }
            let gflop = 2.0 * (m * k * n) as f64 / 1e9;
            println!("{backend:?}\t{m:>5}x{k:>5}x{n:>6}\t{:>8.2} ms\t{:>6.1} GFLOP/s", best * 1e3, gflop / best);
        }
    }
    Ok(())
}
