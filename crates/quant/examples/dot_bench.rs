//! Quick timing of the quantised mat-vec paths on one thread at Qwen2-0.5B / Qwen1.5-0.5B MLP shapes:
//! weights streamed from DRAM (enough copies of each matrix for 384 MiB per sweep) and one matrix
//! reused (cache-resident: L3, and its first 384 KiB of rows: L2), in the thread's CPU time, beside a plain sequential read of memory:
//! `cargo run --release -p vlmscale-quant --example dot_bench [-- REPS]`. A benchmark, not a test.
use quant::{matmul_bf16_panels, matmul_with, QuantFormat, QuantLayout, QuantMatrix, QuantPath};
use std::hint::black_box;
use std::time::Instant;

/// CPU time of the calling thread (Linux `CLOCK_THREAD_CPUTIME_ID`), seconds: what the kernel costs
/// while it has the core, whatever else shares it.
#[cfg(target_os = "linux")]
fn cpu() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: a valid out-pointer; clock 3 is CLOCK_THREAD_CPUTIME_ID.
    unsafe { clock_gettime(3, &mut ts) };
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

/// Elsewhere: wall time since the first call.
#[cfg(not(target_os = "linux"))]
fn cpu() -> f64 {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Best wall time and best thread CPU time of `reps` runs after a warm-up, seconds.
fn best(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    (0..reps)
        .map(|_| {
            let (s, c) = (Instant::now(), cpu());
            f();
            (s.elapsed().as_secs_f64(), cpu() - c)
        })
        .fold((f64::INFINITY, f64::INFINITY), |a, b| (a.0.min(b.0), a.1.min(b.1)))
}

fn main() {
    let reps: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(5);
    let bw = {
        let buf: Vec<u64> = (0..(64usize << 20)).map(|i| i as u64).collect();
        let t = best(reps, || {
            black_box(buf.iter().fold(0u64, |a, v| a.wrapping_add(*v)));
        });
        println!(
            "read 512 MiB: {:.1} GB/s wall, {:.1} GB/s CPU time",
            (buf.len() * 8) as f64 / t.0 / 1e9,
            (buf.len() * 8) as f64 / t.1 / 1e9
        );
        use rayon::prelude::*;
        let t2 = best(reps, || {
            black_box(buf.par_chunks(1 << 20).map(|c| c.iter().fold(0u64, |a, v| a.wrapping_add(*v))).sum::<u64>());
        });
        println!("read 512 MiB, rayon's pool: {:.1} GB/s wall", (buf.len() * 8) as f64 / t2.0 / 1e9);
        (buf.len() * 8) as f64 / t.1 / 1e9
    };
    // Each vector path on its own layout, and the AVX-512 kernel on the row layout too (the A/B).
    let mut runs: Vec<(QuantPath, QuantLayout)> = Vec::new();
    for p in QuantPath::available_paths() {
        match p {
            QuantPath::Avx512Vnni => runs.extend([(p, QuantLayout::Interleaved16), (p, QuantLayout::Rows)]),
            QuantPath::Avx2 => runs.push((p, QuantLayout::Rows)),
            QuantPath::Scalar => {}
        }
    }
    for (n, k) in [(4864usize, 896usize), (896, 4864), (2816, 1024)] {
        let w: Vec<f32> = (0..n * k).map(|i| (((i * 2654435761) >> 7) % 2001) as f32 / 1000.0 - 1.0).collect();
        for fmt in [QuantFormat::Q4_0, QuantFormat::Q8_0] {
            for &(path, layout) in &runs {
                let q0 = QuantMatrix::from_f32("w", fmt, n, k, &w).unwrap().with_layout(layout);
                let copies = (384usize << 20).div_ceil(q0.bytes());
                let qs: Vec<QuantMatrix> = (0..copies).map(|_| q0.clone()).collect();
                // The first rows of the matrix, 384 KiB of blocks: an L2-resident product.
                let n2 = ((384usize << 10) / (k / 32 * fmt.block_bytes())).min(n);
                let q2 = QuantMatrix::from_f32("w", fmt, n2, k, &w[..n2 * k]).unwrap().with_layout(layout);
                let lay = if layout == QuantLayout::Rows { "rows" } else { "x16" };
                for m in [1usize, 4] {
                    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
                    let mut y = vec![0f32; m * n];
                    let (tw, t) = best(reps, || {
                        for q in &qs {
                            matmul_with(path, q, &x, m, &mut y, 1).unwrap();
                        }
                    });
                    let (tw, t) = (tw / copies as f64, t / copies as f64);
                    // The same stream on two threads (each a contiguous half of every matrix), wall time.
                    let (tw2, _) = best(reps, || {
                        for q in &qs {
                            matmul_with(path, q, &x, m, &mut y, 2).unwrap();
                        }
                    });
                    let tw2 = tw2 / copies as f64;
                    let (_, hot) = best(reps, || {
                        for _ in 0..20 {
                            matmul_with(path, &q0, &x, m, &mut y, 1).unwrap();
                        }
                    });
                    let hot = hot / 20.0;
                    let mut y2 = vec![0f32; m * n2];
                    let (_, l2) = best(reps, || {
                        for _ in 0..200 {
                            matmul_with(path, &q2, &x, m, &mut y2, 1).unwrap();
                        }
                    });
                    let l2 = l2 / 200.0;
                    let b = q0.bytes() as f64;
                    println!(
                        "({n:>4}, {k:>4}) {fmt} {path:<5} {lay:<4} m {m}: DRAM {:>6.3} ms CPU {:>5.1} GB/s ({:>3.0} %) wall {:>5.1} GB/s, 2 threads {:>5.1} GB/s   L3 {:>6.3} ms {:>5.1} GB/s, {:.2} ns/block/row   L2 {:.2} ns/block/row",
                        t * 1e3,
                        b / t / 1e9,
                        100.0 * b / t / 1e9 / bw,
                        b / tw / 1e9,
                        b / tw2 / 1e9,
                        hot * 1e3,
                        b / hot / 1e9,
                        hot * 1e9 / (n * k / 32 * m) as f64,
                        l2 * 1e9 / (n2 * k / 32 * m) as f64
                    );
                }
            }
        }
    }
    // Prefill through bf16 panels (the weight dequantised panel by panel), rayon's pool, wall time.
    for m in [16usize, 626] {
        for (n, k) in [(4864usize, 896usize), (896, 4864), (2816, 1024)] {
            let w: Vec<f32> = (0..n * k).map(|i| (((i * 2654435761) >> 7) % 2001) as f32 / 1000.0 - 1.0).collect();
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let mut y = vec![0f32; m * n];
            for fmt in [QuantFormat::Q4_0, QuantFormat::Q8_0] {
                let qs = [QuantLayout::Rows, QuantLayout::Interleaved16]
                    .map(|l| QuantMatrix::from_f32("w", fmt, n, k, &w).unwrap().with_layout(l));
                // The layouts alternately, twice, the best of each.
                let mut t = [f64::INFINITY; 2];
                for _ in 0..2 {
                    for (t, q) in t.iter_mut().zip(&qs) {
                        *t = t.min(best(reps, || matmul_bf16_panels(q, &x, m, &mut y).unwrap()).0);
                    }
                }
                println!(
                    "({n:>4}, {k:>4}) {fmt} bf16 panels m {m}: rows {:.3} ms, interleaved {:.3} ms",
                    t[0] * 1e3,
                    t[1] * 1e3
                );
            }
        }
    }
}
