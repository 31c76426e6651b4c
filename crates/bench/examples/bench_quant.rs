//! Times the GGML Q8_0 / Q4_0 products of `quant` beside the bf16 products of `kernels::matmul_bf16`
//! at Qwen1.5-0.5B shapes, and a plain read of memory for the bandwidth they are held against:
//! `cargo run --release -p vlmscale-bench --example bench_quant [-- REPS]`. A benchmark, not a test.
//!
//! Decode (mat-vec): each shape is repeated over enough distinct matrices to hold at least 768 MiB of
//! weights in each format (this CPU's L3 is 260 MiB), and one timed sweep runs the product once per
//! matrix, so the weights come from DRAM as in a decode step (not from cache). Reported per product: best / median / worst of REPS sweeps (ms) and GB/s of
//! weight bytes read (bytes / time). Prefill (M rows): the int8 dot kernel, the bf16-panel route, and
//! bf16 weights. `RAYON_NUM_THREADS` sets the pool; the quantised products are also run on 1 thread.
use candle_core::{DType, Device, Tensor};
use quant::{matmul_bf16_panels, matmul_with, QuantFormat, QuantMatrix, QuantPath};
use std::hint::black_box;
use std::time::Instant;

/// Sweep time statistics over `reps` runs after one warm-up: (best, median, worst) seconds.
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (t[0], t[t.len() / 2], t[t.len() - 1])
}

/// CPU time of the calling thread, seconds (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn line(label: &str, bytes: f64, per: f64, (b, m, w): (f64, f64, f64)) {
    let (b, m, w) = (b / per, m / per, w / per);
    println!(
        "{label:<44} {:>8.3} {:>8.3} {:>8.3} ms   {:>5.1} {:>5.1} {:>5.1} GB/s",
        b * 1e3,
        m * 1e3,
        w * 1e3,
        bytes / b / 1e9,
        bytes / m / 1e9,
        bytes / w / 1e9
    );
}

/// Read bandwidth: sum of a 1 GiB buffer of u64 split over `threads` rayon tasks.
fn read_bandwidth(reps: usize, threads: usize) {
    use rayon::prelude::*;
    let buf: Vec<u64> = (0..(128usize << 20)).map(|i| i as u64).collect();
    let bytes = (buf.len() * 8) as f64;
    let chunk = buf.len().div_ceil(threads);
    let t = time(reps, || {
        let s: u64 = buf.par_chunks(chunk).map(|c| c.iter().fold(0u64, |a, v| a.wrapping_add(*v))).sum();
        black_box(s);
    });
    line(&format!("read 1 GiB, {threads} thread(s)"), bytes, 1.0, t);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reps: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(7);
    let threads = rayon::current_num_threads();
    println!(
        "quantised paths here: {:?}; best {}; rayon threads {threads}",
        QuantPath::available_paths(),
        QuantPath::best()
    );
    println!("{:<44} {:>8} {:>8} {:>8}      {:>5} {:>5} {:>5}", "", "best", "median", "worst", "best", "med", "worst");
    read_bandwidth(reps, 1);
    read_bandwidth(reps, threads);

    let dev = Device::Cpu;
    // Qwen1.5-0.5B: q/k/v/o (1024, 1024), gate/up (2816, 1024), down (1024, 2816), lm_head (151936, 1024).
    let shapes = [
        (1024usize, 1024usize, "q/k/v/o_proj"),
        (2816, 1024, "gate/up_proj"),
        (1024, 2816, "down_proj"),
        (151936, 1024, "lm_head"),
    ];
    let budget = 768usize << 20;
    let copies_for = |bytes: usize| budget.div_ceil(bytes);
    for (n, k, name) in shapes {
        let copies = copies_for(n * k * 2);
        let x: Vec<f32> = (0..k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let xt = Tensor::from_slice(&x, (1, k), &dev)?;
        // bf16 weights, decode: candle's linear → the AVX-512 mat-vec of matmul_bf16.
        let ws: Vec<Tensor> = (0..copies)
            .map(|c| Tensor::randn(0f32, 0.05, (n, k), &dev).and_then(|t| (t + c as f64 * 1e-3)?.to_dtype(DType::BF16)))
            .collect::<Result<_, _>>()?;
        let t = time(reps, || {
            for w in &ws {
                black_box(kernels::matmul_bf16::linear_bf16(&xt, w, None).unwrap());
            }
        });
        line(&format!("{name} ({n}, {k}) bf16 mat-vec"), (n * k * 2) as f64, copies as f64, t);
        let f32w: Vec<f32> = ws[0].to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        drop(ws);
        for fmt in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
            let q0 = QuantMatrix::from_f32(name, fmt, n, k, &f32w)?;
            let bytes = q0.bytes() as f64;
            let copies = copies_for(q0.bytes());
            let qs: Vec<QuantMatrix> = (0..copies).map(|_| q0.clone()).collect();
            let mut y = vec![0f32; n];
            for path in QuantPath::available_paths() {
                for th in [threads, 1] {
                    if path == QuantPath::Scalar && n > 4096 {
                        continue;
                    }
                    let t = time(reps, || {
                        for q in &qs {
                            matmul_with(path, q, &x, 1, &mut y, th).unwrap();
                        }
                    });
                    line(&format!("{name} ({n}, {k}) {fmt} {path} {th}t"), bytes, copies as f64, t);
                }
            }
        }
    }

    // Cache-resident (one (1024, 1024) matrix, 1 thread, 200 products per sweep): the kernels' compute
    // ceiling, to tell a memory-bound mat-vec from a compute-bound one.
    {
        let (n, k) = (1024usize, 1024usize);
        let x: Vec<f32> = (0..k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev)?;
        let f32w: Vec<f32> = w.flatten_all()?.to_vec1()?;
        for fmt in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
            let q = QuantMatrix::from_f32("hot", fmt, n, k, &f32w)?;
            let mut y = vec![0f32; n];
            for path in QuantPath::available_paths() {
                let t = time(reps, || {
                    for _ in 0..200 {
                        matmul_with(path, &q, &x, 1, &mut y, 1).unwrap();
                    }
                });
                line(&format!("cache-resident (1024, 1024) {fmt} {path} 1t"), q.bytes() as f64, 200.0, t);
                // The same sweep in this thread's CPU time (not wall time): what the kernel costs when
                // it has the core, independent of other processes sharing it.
                let c0 = thread_cpu_secs();
                for _ in 0..200 * reps {
                    matmul_with(path, &q, &x, 1, &mut y, 1).unwrap();
                }
                let c = (thread_cpu_secs() - c0) / (200 * reps) as f64;
                println!(
                    "{:<44} {:>8.3} ms CPU time   {:>5.1} GB/s per core-second, {:.2} ns per block",
                    format!("  same, CPU time"),
                    c * 1e3,
                    q.bytes() as f64 / c / 1e9,
                    c * 1e9 / (n * k / 32) as f64
                );
            }
        }
    }

    // Prefill: M rows through the int8 kernel, the bf16 panels, and bf16 weights.
    for (n, k, name) in [(2816usize, 1024usize, "gate/up_proj"), (1024, 2816, "down_proj")] {
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev)?;
        let f32w: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let wb = w.to_dtype(DType::BF16)?;
        for m in [51usize, 626] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let xt = Tensor::from_slice(&x, (m, k), &dev)?;
            let r = reps.min(5);
            let flops = 2.0 * (m * n * k) as f64;
            let t = time(r, || drop(black_box(kernels::matmul_bf16::linear_bf16(&xt, &wb, None).unwrap())));
            println!(
                "{name} ({n}, {k}) M {m:>3} bf16 weights             {:>8.2} ms  {:>6.1} GFLOP/s",
                t.1 * 1e3,
                flops / t.1 / 1e9
            );
            for fmt in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
                let q = QuantMatrix::from_f32(name, fmt, n, k, &f32w)?;
                let mut y = vec![0f32; m * n];
                let t = time(r, || matmul_with(QuantPath::best(), &q, &x, m, &mut y, threads).unwrap());
                println!(
                    "{name} ({n}, {k}) M {m:>3} {fmt} int8 dot {:<12} {:>8.2} ms  {:>6.1} GFLOP/s",
                    QuantPath::best().name(),
                    t.1 * 1e3,
                    flops / t.1 / 1e9
                );
                let t = time(r, || matmul_bf16_panels(&q, &x, m, &mut y).unwrap());
                println!(
                    "{name} ({n}, {k}) M {m:>3} {fmt} bf16 panels            {:>8.2} ms  {:>6.1} GFLOP/s",
                    t.1 * 1e3,
                    flops / t.1 / 1e9
                );
            }
        }
    }
    Ok(())
}
