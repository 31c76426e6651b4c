//! `y = x·Wᵀ` with `W` a [`QuantMatrix`] (N, K) and `x` (M, K) f32, `y` (M, N) f32.
//!
//! Two drivers:
//! - [`matmul_with`] (and [`matvec`] / [`matmul`] on the fastest path): each row of `x` is quantised
//!   to Q8_0 ([`ActQ8`], GGML's `quantize_row_q8_0_ref`), then every output is a Q8_0·Q8_0 or
//!   Q4_0·Q8_0 block dot product (GGML's `ggml_vec_dot_q8_0_q8_0` / `ggml_vec_dot_q4_0_q8_0`). The N
//!   weight rows are split into `threads` contiguous ranges on rayon's pool (whole groups of 16 rows
//!   in the interleaved layout), so each thread reads its rows as one sequential stream (the scheme of
//!   `kernels::matmul_bf16`'s mat-vec); for M > 1 each
//!   weight row meets up to four rows of `x` per pass of the AVX-512 kernel (rows of `x` in chunks of
//!   [`X_ROWS_CHUNK`], whose quantised data stay in L2 while the weight rows stream past).
//! - [`matmul_f32_panels`] (prefill on CPUs without a bf16 tile kernel): blocks of weight rows
//!   dequantised to f32, then the `gemm` crate's f32 kernels;
//! - [`matmul_bf16_panels`] (prefill): each thread dequantises its share of the weight rows to bf16,
//!   [`BLOCK_ROWS`] at a time, and multiplies them by the tile kernel of `kernels::matmul_bf16` (AMX or
//!   AVX512-BF16). Its error: weights rounded to bf16 after dequantisation (relative 2⁻⁹) and `x`
//!   rounded to bf16 (2⁻⁹), instead of `x` quantised to 8 bits per block.
use half::bf16;
use rayon::prelude::*;

use super::act::ActQ8;
use super::block::{BlockQ4_0, BlockQ8_0, QK};
use super::matrix::{Blocks, Interleaved, QuantMatrix, GROUP_ROWS};
use super::path::QuantPath;
use super::QuantFormat;
use super::{scalar, QuantError};

/// Rows of `x` per pass over a thread's weight rows in the multi-row product.
pub const X_ROWS_CHUNK: usize = 64;

/// Weight rows a thread of [`matmul_bf16_panels`] dequantises and multiplies at a time: a multiple of
/// the interleaved group (16), of the AMX kernel's 32 columns and of the AVX512-BF16 kernel's 48;
/// 96 rows of k = 2816 are 528 KiB of bf16, beside the packed activations in a 2 MiB L2.
pub const BLOCK_ROWS: usize = 96;
const _: () = assert!(BLOCK_ROWS.is_multiple_of(GROUP_ROWS));

/// How far ahead of the weight row (or interleaved block column) being multiplied [`run`] prefetches the
/// weight stream, in bytes.
/// On an Intel Xeon (AMX) core the hardware prefetcher alone held the mat-vec at 5–6 GB/s of the
/// core's 9.6–11.6 GB/s (both formats, Qwen1.5-0.5B MLP shapes, `dot_bench`); prefetching a row's
/// bytes 3 KiB ahead, one line at a time, raised it to 6–10 GB/s (2 KiB: 6–10, 4 KiB: 7–10, noisy).
pub const PREFETCH_BYTES: usize = 3072;

/// Prefetches `bytes` bytes from `start` into L1, one 64-byte line at a time.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_row(start: *const u8, bytes: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for l in (0..bytes).step_by(64) {
        // SAFETY: a prefetch never faults, whatever the address (hence `wrapping_add`).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(l) as *const i8) };
    }
}

/// Raw output pointer shared by the threads; each writes the columns of its own weight-row range.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: threads write disjoint columns (disjoint weight-row ranges).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Pointer to element `i` (a method, so closures capture the whole `Sync` wrapper).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

fn check(w: &QuantMatrix, x: &[f32], m: usize, y: &[f32]) -> Result<(), QuantError> {
    if x.len() != m * w.k {
        return Err(QuantError::Length { what: format!("input x ({m}×{})", w.k), expected: m * w.k, found: x.len() });
    }
    if y.len() != m * w.rows {
        return Err(QuantError::Length {
            what: format!("output y ({m}×{})", w.rows),
            expected: m * w.rows,
            found: y.len(),
        });
    }
    Ok(())
}

/// Decode mat-vec on the fastest path: `y` (N) = `W` (N, K) · `x` (K), over `threads` threads.
/// Errors: [`QuantError::Length`] when `x` or `y` has the wrong length.
pub fn matvec(w: &QuantMatrix, x: &[f32], y: &mut [f32], threads: usize) -> Result<(), QuantError> {
    matmul_with(QuantPath::best(), w, x, 1, y, threads)
}

/// `y` (m, N) = `x` (m, K) · `W`ᵀ on the fastest path.
pub fn matmul(w: &QuantMatrix, x: &[f32], m: usize, y: &mut [f32], threads: usize) -> Result<(), QuantError> {
    matmul_with(QuantPath::best(), w, x, m, y, threads)
}

/// `y` (m, N) = `x` (m, K) · `W`ᵀ on `path` (a forced kernel, for tests and benchmarks).
/// Errors: [`QuantError::PathUnavailable`] when this CPU cannot run `path`, [`QuantError::Length`].
pub fn matmul_with(
    path: QuantPath,
    w: &QuantMatrix,
    x: &[f32],
    m: usize,
    y: &mut [f32],
    threads: usize,
) -> Result<(), QuantError> {
    check(w, x, m, y)?;
    if !path.available() {
        return Err(QuantError::PathUnavailable(path));
    }
    if m == 0 || w.rows == 0 {
        return Ok(());
    }
    let act = ActQ8::quantize(x, m, w.k);
    run(path, w, &act, y, threads);
    Ok(())
}

/// The products of quantised activations `act` with `w`, into `y` (act.m, N).
fn run(path: QuantPath, w: &QuantMatrix, act: &ActQ8, y: &mut [f32], threads: usize) {
    if let Blocks::X16(x) = &w.blocks {
        return run_x16(path, w, x, act, y, threads);
    }
    let n = w.rows;
    let kb = w.k / QK;
    let out = OutPtr(y.as_mut_ptr());
    #[cfg(target_arch = "x86_64")]
    let prep = (path == QuantPath::Avx512Vnni).then(|| {
        let offset = match w.blocks {
            Blocks::Q8_0(_) => 128,
            _ => 8,
        };
        super::x86::Avx512Act::new(act, offset)
    });
    #[cfg(target_arch = "x86_64")]
    let q4_avx2 =
        (path == QuantPath::Avx2 && matches!(w.blocks, Blocks::Q4_0(_))).then(|| super::x86::Avx2Q4Act::new(act));
    #[cfg(target_arch = "x86_64")]
    let row_bytes = kb * w.format().block_bytes();
    #[cfg(target_arch = "x86_64")]
    let base = match &w.blocks {
        Blocks::Q8_0(b) => b.as_ptr() as usize,
        Blocks::Q4_0(b) => b.as_ptr() as usize,
        Blocks::X16(_) => unreachable!("interleaved matrices go through run_x16"),
    };
    let work = |(j0, j1): (usize, usize)| {
        for c0 in (0..act.m).step_by(X_ROWS_CHUNK) {
            let c1 = (c0 + X_ROWS_CHUNK).min(act.m);
            for j in j0..j1 {
                #[cfg(target_arch = "x86_64")]
                prefetch_row((base + j * row_bytes + PREFETCH_BYTES) as *const u8, row_bytes);
                // SAFETY (all writes): i < m, j < n inside y; column j belongs to this range only.
                let put = |i: usize, v: f32| unsafe { *out.at(i * n + j) = v };
                match (&w.blocks, path) {
                    #[cfg(target_arch = "x86_64")]
                    (Blocks::Q8_0(b), QuantPath::Avx512Vnni) => {
                        let row = b[j * kb..].as_ptr() as *const u8;
                        let prep = prep.as_ref().expect("prepared for AVX-512");
                        // SAFETY: path available (checked); the matrix's padding covers the reads.
                        unsafe {
                            rows4(
                                c0,
                                c1,
                                &put,
                                |i| super::x86::dot_q8_0_avx512::<4>(row, prep, i),
                                |i| super::x86::dot_q8_0_avx512::<1>(row, prep, i)[0],
                            )
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    (Blocks::Q4_0(b), QuantPath::Avx512Vnni) => {
                        let row = b[j * kb..].as_ptr() as *const u8;
                        let prep = prep.as_ref().expect("prepared for AVX-512");
                        // SAFETY: as above.
                        unsafe {
                            rows4(
                                c0,
                                c1,
                                &put,
                                |i| super::x86::dot_q4_0_avx512::<4>(row, prep, i),
                                |i| super::x86::dot_q4_0_avx512::<1>(row, prep, i)[0],
                            )
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    (Blocks::Q8_0(b), QuantPath::Avx2) => {
                        let row = &b[j * kb..(j + 1) * kb];
                        // SAFETY: AVX2/FMA/F16C available (checked); rows4 reads rows c0..c1 only.
                        unsafe {
                            rows4(
                                c0,
                                c1,
                                &put,
                                |i| super::x86::dot_q8_0_avx2::<4>(row, act, i),
                                |i| super::x86::dot_q8_0_avx2::<1>(row, act, i)[0],
                            )
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    (Blocks::Q4_0(b), QuantPath::Avx2) => {
                        let row = &b[j * kb..(j + 1) * kb];
                        let corr = q4_avx2.as_ref().expect("prepared for AVX2 Q4_0");
                        // SAFETY: as above.
                        unsafe {
                            rows4(
                                c0,
                                c1,
                                &put,
                                |i| super::x86::dot_q4_0_avx2::<4>(row, act, corr, i),
                                |i| super::x86::dot_q4_0_avx2::<1>(row, act, corr, i)[0],
                            )
                        }
                    }
                    (Blocks::X16(_), _) => unreachable!("interleaved matrices go through run_x16"),
                    (Blocks::Q8_0(b), _) => {
                        for i in c0..c1 {
                            put(i, scalar::dot_q8_0(&b[j * kb..(j + 1) * kb], act, i));
                        }
                    }
                    (Blocks::Q4_0(b), _) => {
                        for i in c0..c1 {
                            put(i, scalar::dot_q4_0(&b[j * kb..(j + 1) * kb], act, i));
                        }
                    }
                }
            }
        }
    };
    let ranges = kernels::threads::split_ranges(n, 16, threads);
    if ranges.len() == 1 {
        work(ranges[0]);
    } else {
        ranges.into_par_iter().for_each(work);
    }
}

/// [`run`] for a matrix in the interleaved layout: the N rows split into `threads` ranges of whole
/// groups, each range one sequential stream. The AVX-512 VNNI path multiplies a group's 16 rows at
/// once ([`super::x86::group_x16`]); the other paths unpack each group into GGML blocks (a scratch of
/// 16 rows) and run their row kernels on them, as on [`QuantLayout::Rows`](super::QuantLayout::Rows).
fn run_x16(path: QuantPath, w: &QuantMatrix, x: &Interleaved, act: &ActQ8, y: &mut [f32], threads: usize) {
    let (n, kb) = (w.rows, w.k / QK);
    let lines = Interleaved::lines(x.format);
    let out = OutPtr(y.as_mut_ptr());
    #[cfg(target_arch = "x86_64")]
    let prep = (path == QuantPath::Avx512Vnni).then(|| {
        let offset = if x.format == QuantFormat::Q8_0 { 128 } else { 8 };
        super::x86::X16Act::new(act, offset)
    });
    #[cfg(target_arch = "x86_64")]
    let q4_avx2 = (path == QuantPath::Avx2 && x.format == QuantFormat::Q4_0).then(|| super::x86::Avx2Q4Act::new(act));
    let work = |(j0, j1): (usize, usize)| {
        let (g0, g1) = (j0 / GROUP_ROWS, j1.div_ceil(GROUP_ROWS));
        #[cfg(target_arch = "x86_64")]
        if let Some(prep) = &prep {
            for c0 in (0..act.m).step_by(X_ROWS_CHUNK) {
                let c1 = (c0 + X_ROWS_CHUNK).min(act.m);
                for g in g0..g1 {
                    let nr = (n - g * GROUP_ROWS).min(GROUP_ROWS);
                    let qs = x.qs[g * kb * lines..].as_ptr() as *const u8;
                    let d = x.d[g * kb..].as_ptr() as *const u16;
                    let yg = out.at(g * GROUP_ROWS);
                    // SAFETY: path available (checked); the group's kb columns of lines and scales are
                    // inside x.qs / x.d (aligned by their types); rows c0..c1 of y hold columns
                    // g·16 .. g·16 + nr, which belong to this range only.
                    unsafe {
                        match x.format {
                            QuantFormat::Q8_0 => {
                                super::x86::group_x16::<false>(qs, d, kb, prep, c0, c1, yg, n, nr, PREFETCH_BYTES)
                            }
                            QuantFormat::Q4_0 => {
                                super::x86::group_x16::<true>(qs, d, kb, prep, c0, c1, yg, n, nr, PREFETCH_BYTES)
                            }
                        }
                    }
                }
            }
            return;
        }
        let (mut s8, mut s4) = (Vec::new(), Vec::new());
        for g in g0..g1 {
            let nr = (n - g * GROUP_ROWS).min(GROUP_ROWS);
            match x.format {
                QuantFormat::Q8_0 => {
                    s8.clear();
                    s8.extend((0..nr * kb).map(|i| x.q8_0(g * kb + i % kb, i / kb)));
                }
                QuantFormat::Q4_0 => {
                    s4.clear();
                    s4.extend((0..nr * kb).map(|i| x.q4_0(g * kb + i % kb, i / kb)));
                }
            }
            for l in 0..nr {
                let j = g * GROUP_ROWS + l;
                let (r8, r4): (&[BlockQ8_0], &[BlockQ4_0]) = match x.format {
                    QuantFormat::Q8_0 => (&s8[l * kb..(l + 1) * kb], &[]),
                    QuantFormat::Q4_0 => (&[], &s4[l * kb..(l + 1) * kb]),
                };
                // SAFETY (all writes): i < m, j < n inside y; column j belongs to this range only.
                let put = |i: usize, v: f32| unsafe { *out.at(i * n + j) = v };
                match (x.format, path) {
                    #[cfg(target_arch = "x86_64")]
                    (QuantFormat::Q8_0, QuantPath::Avx2) => {
                        // SAFETY: AVX2/FMA/F16C available (checked); rows4 reads rows 0..m only.
                        unsafe {
                            rows4(
                                0,
                                act.m,
                                &put,
                                |i| super::x86::dot_q8_0_avx2::<4>(r8, act, i),
                                |i| super::x86::dot_q8_0_avx2::<1>(r8, act, i)[0],
                            )
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    (QuantFormat::Q4_0, QuantPath::Avx2) => {
                        let corr = q4_avx2.as_ref().expect("prepared for AVX2 Q4_0");
                        // SAFETY: as above.
                        unsafe {
                            rows4(
                                0,
                                act.m,
                                &put,
                                |i| super::x86::dot_q4_0_avx2::<4>(r4, act, corr, i),
                                |i| super::x86::dot_q4_0_avx2::<1>(r4, act, corr, i)[0],
                            )
                        }
                    }
                    (QuantFormat::Q8_0, _) => (0..act.m).for_each(|i| put(i, scalar::dot_q8_0(r8, act, i))),
                    (QuantFormat::Q4_0, _) => (0..act.m).for_each(|i| put(i, scalar::dot_q4_0(r4, act, i))),
                }
            }
        }
    };
    let ranges = kernels::threads::split_ranges(n, GROUP_ROWS, threads);
    if ranges.len() == 1 {
        work(ranges[0]);
    } else {
        ranges.into_par_iter().for_each(work);
    }
}

/// Rows c0..c1 of `x` against one weight row: groups of four rows through `four`, the rest one by
/// one through `one` (so no row past c1 is read).
#[inline(always)]
unsafe fn rows4(
    c0: usize,
    c1: usize,
    put: &impl Fn(usize, f32),
    four: impl Fn(usize) -> [f32; 4],
    one: impl Fn(usize) -> f32,
) {
    let mut i = c0;
    while i + 4 <= c1 {
        for (r, v) in four(i).into_iter().enumerate() {
            put(i + r, v);
        }
        i += 4;
    }
    while i < c1 {
        put(i, one(i));
        i += 1;
    }
}

/// Prefill through f32 (CPUs without a bf16 tile kernel): `y` (m, N) = `x` (m, K) · `W`ᵀ with `W`
/// dequantised to f32 (GGML's dequantisation, exact) in blocks of
/// [`kernels::matmul_bf16::widened_block_rows`] rows, each multiplied by the `gemm` crate's f32
/// kernels ([`kernels::matmul_bf16::gemm_f32_row_blocks`]); `x` stays f32, so the only error beyond the
/// quantisation is f32 summation. Errors: [`QuantError::Length`].
pub fn matmul_f32_panels(w: &QuantMatrix, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), QuantError> {
    check(w, x, m, y)?;
    let (n, k) = (w.rows, w.k);
    if m == 0 || n == 0 {
        return Ok(());
    }
    kernels::matmul_bf16::gemm_f32_row_blocks(x, y, m, n, k, |j, dst| w.dequantize_row(j, dst));
    Ok(())
}

/// Whether this CPU has the AVX512-BF16 conversion of [`q8_0_row_to_bf16_avx512`] (either bf16 tile
/// kernel of `kernels::matmul_bf16` implies it, detected once there) and the AVX512BW byte operations
/// of [`x16_group_to_bf16_avx512`].
fn has_avx512_bf16() -> bool {
    let k = kernels::matmul_bf16::bf16_kernels();
    #[cfg(target_arch = "x86_64")]
    let bw = std::arch::is_x86_feature_detected!("avx512bw");
    #[cfg(not(target_arch = "x86_64"))]
    let bw = false;
    (k.amx || k.dpbf16) && bw
}

/// Weight rows r0..r0 + nr of `w` dequantised (GGML's arithmetic, f32) and rounded to bf16 (nearest
/// even) into `dst` (nr·k values, row-major); `buf` is f32 scratch of `k`. With `vector` (only when
/// [`has_avx512_bf16`]), rows take a vector route with the same result bit for bit (tested against
/// the scalar one): in the row layout row by row, in the interleaved layout a group at a time
/// ([`x16_group_to_bf16_avx512`]; r0..r0 + nr must then lie in one group and start at its first row).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn dequantize_rows_bf16(w: &QuantMatrix, r0: usize, nr: usize, vector: bool, buf: &mut [f32], dst: &mut [bf16]) {
    let (k, kb) = (w.k, w.k / QK);
    assert!(dst.len() >= nr * k, "dequantize_rows_bf16: output length");
    #[cfg(target_arch = "x86_64")]
    if vector {
        // SAFETY: `vector` is only set when AVX-512F/BW and AVX512-BF16 were detected; `dst` holds nr
        // rows of k = kb · 32 values.
        match &w.blocks {
            Blocks::Q8_0(v) => {
                for (i, dst) in dst.chunks_exact_mut(k).take(nr).enumerate() {
                    let r = r0 + i;
                    unsafe { q8_0_row_to_bf16_avx512(&v[r * kb..(r + 1) * kb], dst) }
                }
            }
            Blocks::Q4_0(v) => {
                for (i, dst) in dst.chunks_exact_mut(k).take(nr).enumerate() {
                    let r = r0 + i;
                    unsafe { q4_0_row_to_bf16_avx512(&v[r * kb..(r + 1) * kb], dst) }
                }
            }
            Blocks::X16(x) => {
                assert!(
                    r0.is_multiple_of(GROUP_ROWS) && nr <= GROUP_ROWS && r0 + nr <= w.rows,
                    "dequantize_rows_bf16: rows {r0}.. + {nr} are not one group's"
                );
                unsafe { x16_group_to_bf16_avx512(x, kb, r0 / GROUP_ROWS, nr, dst) }
            }
        }
        return;
    }
    for (i, dst) in dst.chunks_exact_mut(k).take(nr).enumerate() {
        w.dequantize_row(r0 + i, buf);
        dst.iter_mut().zip(buf.iter()).for_each(|(o, v)| *o = bf16::from_f32(*v));
    }
}

/// The 8 vectors `c` of one block column of an interleaved group (vector t: the 16 rows' signed values
/// 4t..4t + 4, row l in dword l) transposed into 8 vectors of two rows each (vector p: row 2p's 32
/// values, then row 2p + 1's): dword pairs, then qword pairs, then the two 16-byte halves of each row,
/// 24 two-source permutes (`vpermt2d` / `vpermt2q`).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose_x16(c: [std::arch::x86_64::__m512i; 8]) -> [std::arch::x86_64::__m512i; 8] {
    use std::arch::x86_64::*;
    let d_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let d_hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let q_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    let q_hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    let h_lo = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    let h_hi = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    // p[s][x]: rows 8x..8x + 8, values 8s..8s + 8 (a qword per row).
    let p: [[__m512i; 2]; 4] = std::array::from_fn(|s| {
        [
            _mm512_permutex2var_epi32(c[2 * s], d_lo, c[2 * s + 1]),
            _mm512_permutex2var_epi32(c[2 * s], d_hi, c[2 * s + 1]),
        ]
    });
    // q[h][x][y]: rows 8x + 4y .. + 4, values 16h..16h + 16 (16 bytes per row).
    let q: [[[__m512i; 2]; 2]; 2] = std::array::from_fn(|h| {
        std::array::from_fn(|x| {
            let (a, b) = (p[2 * h][x], p[2 * h + 1][x]);
            [_mm512_permutex2var_epi64(a, q_lo, b), _mm512_permutex2var_epi64(a, q_hi, b)]
        })
    });
    // Rows 8x + 4y + 2z and the next: values 0..16 from q[0], 16..32 from q[1].
    std::array::from_fn(|p| {
        let (x, y, z) = (p / 4, p / 2 % 2, p % 2);
        _mm512_permutex2var_epi64(q[0][x][y], if z == 0 { h_lo } else { h_hi }, q[1][x][y])
    })
}

/// Group `g` of an interleaved matrix (`kb` block columns) → bf16 rows `dst` (its first `nr` rows, k
/// values each): per block column, the values as signed bytes (Q8_0: the stored byte − 128; Q4_0: the
/// nibble − 8, low nibbles values 4c.., high nibbles 16 + 4c..), transposed to rows
/// ([`transpose_x16`]), widened to f32, times the row's scale (one f32 product each, as
/// `block::dequantize_row_q8_0` / `_q4_0`) and rounded by `vcvtne2ps2bf16`, as
/// [`q8_0_row_to_bf16_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn x16_group_to_bf16_avx512(x: &Interleaved, kb: usize, g: usize, nr: usize, dst: &mut [bf16]) {
    use std::arch::x86_64::*;
    let k = kb * QK;
    assert!(dst.len() >= nr * k && nr <= GROUP_ROWS, "x16_group_to_bf16_avx512: output length");
    let lines = Interleaved::lines(x.format);
    let (mask, eight, flip) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(8), _mm512_set1_epi8(-128));
    let out = dst.as_mut_ptr();
    for b in 0..kb {
        let col = g * kb + b;
        let q = x.qs[col * lines..(col + 1) * lines].as_ptr() as *const __m512i;
        let mut c = [_mm512_setzero_si512(); 8];
        match x.format {
            QuantFormat::Q8_0 => {
                for (t, c) in c.iter_mut().enumerate() {
                    *c = _mm512_xor_si512(_mm512_load_si512(q.add(t)), flip);
                }
            }
            QuantFormat::Q4_0 => {
                for i in 0..4 {
                    let l = _mm512_load_si512(q.add(i));
                    c[i] = _mm512_sub_epi8(_mm512_and_si512(l, mask), eight);
                    c[4 + i] = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16::<4>(l), mask), eight);
                }
            }
        }
        let rows = transpose_x16(c);
        let mut d = [0f32; GROUP_ROWS];
        _mm512_storeu_ps(d.as_mut_ptr(), _mm512_cvtph_ps(_mm256_load_si256(x.d[col].0.as_ptr() as *const __m256i)));
        for (p, v) in rows.into_iter().enumerate() {
            let halves = [
                (_mm512_castsi512_si128(v), _mm512_extracti32x4_epi32::<1>(v)),
                (_mm512_extracti32x4_epi32::<2>(v), _mm512_extracti32x4_epi32::<3>(v)),
            ];
            for (h, (lo, hi)) in halves.into_iter().enumerate() {
                let l = 2 * p + h;
                if l >= nr {
                    continue;
                }
                let dl = _mm512_set1_ps(d[l]);
                let lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), dl);
                let hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), dl);
                let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(out.add(l * k + b * QK) as *mut _, packed);
            }
        }
    }
}

/// q8_0 blocks → bf16: per block, the 32 int8 values widened to f32, times the block's scale (one f32
/// product each, as `block::dequantize_row_q8_0`), rounded to bf16 by `vcvtne2ps2bf16` (nearest even;
/// these products are never subnormal, so its treatment of subnormals does not arise).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn q8_0_row_to_bf16_avx512(blocks: &[super::block::BlockQ8_0], dst: &mut [bf16]) {
    use std::arch::x86_64::*;
    assert!(dst.len() >= blocks.len() * QK, "q8_0_row_to_bf16_avx512: output length");
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = _mm512_set1_ps(b.d.to_f32());
        let q = b.qs.as_ptr() as *const __m128i;
        let lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q))), d);
        let hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q.add(1)))), d);
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(out.as_mut_ptr() as *mut _, packed);
    }
}

/// q4_0 blocks → bf16: per block, the low nibbles (elements 0–15) and the high nibbles (16–31) widened
/// to i32, minus 8, converted to f32 and times the block's scale (one f32 product each, as
/// `block::dequantize_row_q4_0`), rounded to bf16 by `vcvtne2ps2bf16` as in [`q8_0_row_to_bf16_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn q4_0_row_to_bf16_avx512(blocks: &[super::block::BlockQ4_0], dst: &mut [bf16]) {
    use std::arch::x86_64::*;
    assert!(dst.len() >= blocks.len() * QK, "q4_0_row_to_bf16_avx512: output length");
    let (mask, eight) = (_mm_set1_epi8(0x0F), _mm512_set1_epi32(8));
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = _mm512_set1_ps(b.d.to_f32());
        let q = _mm_loadu_si128(b.qs.as_ptr() as *const __m128i);
        let widen = |nibbles: __m128i| {
            _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(nibbles), eight)), d)
        };
        let lo = widen(_mm_and_si128(q, mask));
        let hi = widen(_mm_and_si128(_mm_srli_epi16::<4>(q), mask));
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(out.as_mut_ptr() as *mut _, packed);
    }
}

/// Prefill through bf16: `y` (m, N) = `x` (m, K) · `W`ᵀ with `W` dequantised to bf16 (round-to-nearest-even
/// after GGML's dequantisation) and multiplied by `kernels::matmul_bf16`'s tile kernel (AMX or
/// AVX512-BF16): `x` is put into that kernel's layout once (`kernels::matmul_bf16::PreparedX`), the N
/// rows are split into one contiguous range per thread, and each thread dequantises its range
/// [`BLOCK_ROWS`] rows at a time into a buffer of its own and multiplies that block straight into its
/// columns of `y` (`PreparedX::gemm_row_blocks`): every weight is dequantised once per call, by the
/// core that multiplies it, while the block is in that core's L2 cache. Errors: [`QuantError::Length`].
pub fn matmul_bf16_panels(w: &QuantMatrix, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), QuantError> {
    check(w, x, m, y)?;
    let (n, k) = (w.rows, w.k);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let vector = has_avx512_bf16();
    let xp = kernels::matmul_bf16::PreparedX::new(x, m, k, n.min(BLOCK_ROWS));
    xp.gemm_row_blocks(
        n,
        BLOCK_ROWS,
        |j0, dst| {
            let mut buf = if vector { Vec::new() } else { vec![0f32; k] };
            // A group of rows at a time (the interleaved layout's groups: BLOCK_ROWS and every block's
            // start are multiples of GROUP_ROWS).
            for (i, dst) in dst.chunks_mut(GROUP_ROWS * k).enumerate() {
                dequantize_rows_bf16(w, j0 + i * GROUP_ROWS, dst.len() / k, vector, &mut buf, dst);
            }
        },
        &mut y[..m * n],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The vector q8_0 / q4_0 → bf16 routes equal GGML's scalar dequantisation rounded by `half` bit
    /// for bit, in both layouts (the interleaved one a group at a time, with a partial last group), on
    /// seeded weights with blocks of very different scales (zeros, ±127, tiny and large d). On a CPU
    /// without AVX512-BF16 both sides take the scalar route.
    #[test]
    fn q8_0_and_q4_0_rows_to_bf16_vector_route_equals_the_scalar_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let (rows, k) = (37, 32 * 9);
        let data: Vec<f32> = (0..rows * k)
            .map(|i| {
                let scale = [1e-4f32, 0.02, 1.0, 300.0][(i / 32) % 4];
                if i % 97 == 0 {
                    0.0
                } else {
                    rng.random_range(-1.0f32..1.0) * scale
                }
            })
            .collect();
        let layouts = [crate::QuantLayout::Rows, crate::QuantLayout::Interleaved16];
        for (format, layout) in
            [crate::QuantFormat::Q8_0, crate::QuantFormat::Q4_0].into_iter().flat_map(|f| layouts.map(|l| (f, l)))
        {
            let w = QuantMatrix::from_f32("w", format, rows, k, &data).unwrap().with_layout(layout);
            let mut buf = vec![0f32; k];
            for r0 in (0..rows).step_by(GROUP_ROWS) {
                let nr = (rows - r0).min(GROUP_ROWS);
                let mut want = vec![0f32; nr * k];
                for (i, row) in want.chunks_exact_mut(k).enumerate() {
                    w.dequantize_row(r0 + i, row);
                }
                let want: Vec<u16> = want.iter().map(|v| bf16::from_f32(*v).to_bits()).collect();
                let mut got = vec![bf16::ZERO; nr * k];
                dequantize_rows_bf16(&w, r0, nr, has_avx512_bf16(), &mut buf, &mut got);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want,
                    "{format} {layout:?} rows {r0}.."
                );
            }
        }
    }
}
