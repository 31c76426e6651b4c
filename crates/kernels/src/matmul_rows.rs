//! `y = x·Wᵀ` in f32 for inputs with few rows (decode, the QueCC query embedding, short prefills):
//! each group of four weight rows is read from memory once and multiplied with every row of `x` (four
//! at a time) while it sits in the L1 cache; `x` (≤ [`MAX_ROWS`] rows) stays in L2.
//!
//! Why: candle's CPU matmul (the `gemm` crate) packs the transposed weight for every call. For a
//! (51 × 1024)·(1024 × 2816) product that packing costs about as much as the product, and the f32
//! prefill of a 51-token prompt ran at ~43 GFLOP/s (19 % of the CPU's f32 limit) against
//! PyTorch's 130. Shapes: `x` (M, K) f32, `W` (N, K) f32 in torch `nn.Linear` layout, `y` (M, N).
//! AVX-512F only (other CPUs keep candle's product); inference only (no backward pass): callers use it
//! when no gradient is tracked. Threads: the N output columns split over the pool.
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::Result;

/// Largest M sent to this kernel; longer inputs amortise gemm's packing. Measured on the 0.5B decoder's
/// f32 prefill (Zen 4, bench_decoder): 114 tokens 0.96 → 0.65 s and 194 tokens 1.24 → 0.94 s when
/// raised from 96 to 256; at 300 tokens the two paths are even.
pub const MAX_ROWS: usize = 256;

/// Whether [`linear_rows`] applies: f32 CPU operands, at most [`MAX_ROWS`] rows, no autograd, AVX-512F.
pub fn applies(x: &Tensor, w: &Tensor) -> bool {
    let rows = x.elem_count() / x.dims().last().copied().unwrap_or(1).max(1);
    x.dtype() == candle_core::DType::F32
        && w.dtype() == candle_core::DType::F32
        && x.device().is_cpu()
        && w.device().is_cpu()
        && w.rank() == 2
        && rows <= MAX_ROWS
        && !x.track_op()
        && !w.track_op()
        && avx512()
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `x` (…, K) · `w`ᵀ with `w` (N, K) → (…, N), all f32. Errors: widths differ (candle's shape error
/// message), non-contiguous weight storage (made contiguous first, so only on allocation failure).
pub fn linear_rows(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    let dims = x.dims().to_vec();
    if dims.last() != Some(&k) {
        return Err(crate::Error::Shape { name: "f32 linear input".into(), expected: vec![0, k], found: dims });
    }
    let m: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((m, k))?.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &RowsLinear)?;
    let mut out = dims[..dims.len() - 1].to_vec();
    out.push(n);
    Ok(y.reshape(out)?)
}

struct RowsLinear;

impl CustomOp2 for RowsLinear {
    fn name(&self) -> &'static str {
        "f32-rows-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(x), CpuStorage::F32(w)) = (s1, s2) else {
            candle_core::bail!("f32-rows-linear: f32 operands only");
        };
        let (Some((xa, xb)), Some((wa, wb))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("f32-rows-linear: contiguous operands only");
        };
        let (m, k) = l1.shape().dims2()?;
        let (n, _) = l2.shape().dims2()?;
        let (x, w) = (&x[xa..xb], &w[wa..wb]);
        if !avx512() {
            candle_core::bail!("f32-rows-linear: needs AVX-512F");
        }
        let mut y = vec![0f32; m * n];
        // Column ranges of whole 4-row groups, one per thread; each range's output columns are
        // computed into its own buffer, then scattered (M ≤ MAX_ROWS: a small copy).
        let parts = crate::threads::split_ranges(n, 4, crate::threads::num_threads());
        let blocks: Vec<Vec<f32>> = parts
            .par_iter()
            .map(|&(n0, n1)| {
                let mut out = vec![0f32; m * (n1 - n0)];
                // SAFETY: AVX-512F detected above; slices cover (m, k), (n, k) and (m, n1 − n0).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    x86::rows(x, &w[n0 * k..n1 * k], &mut out, m, n1 - n0, k)
                };
                out
            })
            .collect();
        for (&(n0, n1), b) in parts.iter().zip(&blocks) {
            for i in 0..m {
                y[i * n + n0..i * n + n1].copy_from_slice(&b[i * (n1 - n0)..(i + 1) * (n1 - n0)]);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// y (m × n) = x (m × k) · w (n × k)ᵀ in 4 × 4 blocks (four rows of x against four weight rows:
    /// sixteen independent accumulators, eight loads per sixteen FMAs), one x row at a time for the
    /// last m % 4 rows; with m < 4, one weight row at a time (one sequential stream per thread).
    ///
    /// # Safety
    /// AVX-512F available; `x.len() ≥ m·k`, `w.len() ≥ n·k`, `y.len() ≥ m·n`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows(x: &[f32], w: &[f32], y: &mut [f32], m: usize, n: usize, k: usize) {
        assert!(x.len() >= m * k && w.len() >= n * k && y.len() >= m * n);
        let kv = k / 16 * 16;
        let dot_tail = |i: usize, j: usize| -> f32 { (kv..k).map(|c| x[i * k + c] * w[j * k + c]).sum() };
        let mut j = 0;
        // Fewer than four rows of x (decode): one weight row at a time, below, so each thread reads
        // its weights as one sequential stream (about 1.8× the bandwidth of four interleaved rows).
        while m >= 4 && j + 4 <= n {
            let wr: [*const f32; 4] = std::array::from_fn(|r| w.as_ptr().add((j + r) * k));
            let mut i = 0;
            while i + 4 <= m {
                let xr: [*const f32; 4] = std::array::from_fn(|q| x.as_ptr().add((i + q) * k));
                let mut acc = [[_mm512_setzero_ps(); 4]; 4];
                let mut c = 0;
                while c < kv {
                    let wv: [__m512; 4] = std::array::from_fn(|r| _mm512_loadu_ps(wr[r].add(c)));
                    for q in 0..4 {
                        let xv = _mm512_loadu_ps(xr[q].add(c));
                        for r in 0..4 {
                            acc[q][r] = _mm512_fmadd_ps(xv, wv[r], acc[q][r]);
                        }
                    }
                    c += 16;
                }
                for q in 0..4 {
                    for r in 0..4 {
                        y[(i + q) * n + j + r] = _mm512_reduce_add_ps(acc[q][r]) + dot_tail(i + q, j + r);
                    }
                }
                i += 4;
            }
            while i < m {
                let xr = x.as_ptr().add(i * k);
                let mut acc = [_mm512_setzero_ps(); 4];
                let mut c = 0;
                while c < kv {
                    let xv = _mm512_loadu_ps(xr.add(c));
                    for r in 0..4 {
                        acc[r] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(wr[r].add(c)), acc[r]);
                    }
                    c += 16;
                }
                for r in 0..4 {
                    y[i * n + j + r] = _mm512_reduce_add_ps(acc[r]) + dot_tail(i, j + r);
                }
                i += 1;
            }
            j += 4;
        }
        while j < n {
            for i in 0..m {
                let (xr, wr) = (x.as_ptr().add(i * k), w.as_ptr().add(j * k));
                // Four accumulators over consecutive 16-column blocks (FMA latency), then the rest.
                let mut acc = [_mm512_setzero_ps(); 4];
                let mut c = 0;
                while c + 64 <= kv {
                    for (h, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(
                            _mm512_loadu_ps(xr.add(c + 16 * h)),
                            _mm512_loadu_ps(wr.add(c + 16 * h)),
                            *a,
                        );
                    }
                    c += 64;
                }
                while c < kv {
                    acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(xr.add(c)), _mm512_loadu_ps(wr.add(c)), acc[0]);
                    c += 16;
                }
                let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
                y[i * n + j] = _mm512_reduce_add_ps(sum) + dot_tail(i, j);
            }
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against the product written out in f64, on shapes with row and column tails.
    #[test]
    fn matches_the_f64_product() {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        if !avx512() {
            return;
        }
        for (m, n, k) in
            [(1, 1, 1), (1, 37, 1024), (3, 9, 21), (51, 130, 64), (96, 7, 33), (8, 12, 48), (7, 5, 17), (2, 6, 112)]
        {
            let x = crate::random::randn(&mut rng, 1.0, (m, k), candle_core::DType::F32, &Device::Cpu).unwrap();
            let w = crate::random::randn(&mut rng, 1.0, (n, k), candle_core::DType::F32, &Device::Cpu).unwrap();
            let got: Vec<Vec<f32>> = linear_rows(&x, &w).unwrap().to_vec2().unwrap();
            let (xv, wv): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (x.to_vec2().unwrap(), w.to_vec2().unwrap());
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|c| xv[i][c] as f64 * wv[j][c] as f64).sum();
                    let bound = 1e-5 * (0..k).map(|c| (xv[i][c] * wv[j][c]).abs() as f64).sum::<f64>().max(1e-6);
                    assert!(
                        (got[i][j] as f64 - want).abs() <= bound,
                        "({m}, {n}, {k}) at ({i}, {j}): {} vs {want}",
                        got[i][j]
                    );
                }
            }
        }
    }
}
