//! `y = x·Wᵀ` with bf16 weights and f32 activations: the product behind [`crate::matmul::linear`] when a
//! layer's weight is a bf16 tensor (see `Decoder::convert_weights` in the models crate).
//!
//! Shapes: `x` (M, K) f32, `W` (N, K) bf16 in torch `nn.Linear` layout (row-major, as stored in a
//! checkpoint), `y` (M, N) f32. Five CPU kernels, chosen per call ([`Bf16Path::choose`]):
//! - **AMX** (Intel AMX-BF16, e.g. Sapphire Rapids) for M ≥ [`AMX_MIN_ROWS`] and K a multiple of 32: `x`
//!   is rounded to bf16 (round-to-nearest-even, AVX512-BF16) into AMX's pair-interleaved ("VNNI") tile
//!   layout, `W` is read in place as the tiles' left operand, products accumulate in f32 tiles
//!   (`tdpbf16ps`). Error: the rounding of `x` to bf16 (relative 2⁻⁹ per element) on top of the weights'.
//! - **AVX512-BF16** (`vdpbf16ps`, e.g. AMD Zen 4, Intel Cooper Lake) on CPUs without AMX, for the same
//!   M and K even, N a multiple of 16: `x` rounded to bf16 once (same error as the AMX path), weight
//!   columns packed per thread into 16-column panels of bf16 pairs, an 8-row × 48-column register tile
//!   of f32 accumulators (each `vdpbf16ps` is 32 multiply-adds). Source: Intel® Architecture Instruction
//!   Set Extensions Programming Reference, `VDPBF16PS`; the register-tile scheme of Goto & van de Geijn,
//!   "Anatomy of High-Performance Matrix Multiplication" (ACM TOMS 34(3), 2008).
//! - **AVX-512** dot products (mat-vec: decode, the LM head, short inputs): weights widened to f32 in
//!   registers, `x` stays f32, f32 accumulation — memory-bound, reading each weight once (2 bytes instead
//!   of 4 for f32 weights).
//! - **AVX2 + FMA** dot products (CPUs without AVX-512): the same widening in 256-bit registers; each
//!   16-weight block is widened once and multiplied into up to [`AVX2_ROWS`] rows of `x`, so several
//!   rows (a batched decode step, a short prefill) share the widening and the weight read.
//! - **widened blocks** (M ≥ [`WIDEN_MIN_ROWS`] on CPUs without AMX / AVX512-BF16: prefill, the vision
//!   tower): a block of weight rows (about 1 MiB as f32) is widened to f32, then multiplied by the
//!   `gemm` crate's packed, cache-blocked f32 kernels (the f32 path's), block after block. The
//!   widening costs one pass over the weights, against M multiply-adds per weight; the row kernels
//!   above re-read `x` from outside L1 for every weight row, which leaves them at a third of the f32
//!   product's speed at M in the hundreds (24–32 against 72–83 GFLOP/s on one AVX2 core).
//! - a portable scalar loop (other CPUs, M below [`WIDEN_MIN_ROWS`]).
//!
//! Threads: the N output columns are split over candle's thread count (rayon). Inference only: the op
//! has no backward pass (training keeps f32 weights).
//!
//! Sources: Intel® 64 and IA-32 Architectures Optimization Reference Manual, chapter "Intel® Advanced
//! Matrix Extensions" (tile configuration, `tdpbf16ps` semantics, the pair-interleaved B layout), and
//! the Linux kernel's `Documentation/arch/x86/xstate.rst` (`ARCH_REQ_XCOMP_PERM` for tile data).
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use half::bf16;
use rayon::prelude::*;
use std::sync::OnceLock;

use crate::threads::split_ranges;
use crate::{Error, Result};

/// Rows of `x` the AVX2 kernel multiplies by one widened weight block (8 f32 accumulators per pair of
/// rows' even/odd halves: 2 · this ≤ the 16 ymm registers with the widened block and the mask).
pub const AVX2_ROWS: usize = 4;

/// Smallest M (rows of `x`) sent to the widened-block path on CPUs without AMX / AVX512-BF16; below
/// it the row kernels, which read each weight once and need no f32 copy, are as fast or faster (at
/// M = 51 on one AVX2 core both run at about 30–34 GFLOP/s).
pub const WIDEN_MIN_ROWS: usize = 48;

/// Smallest M (rows of `x`) sent to the AMX kernel; shorter inputs take the mat-vec kernel, which
/// reads the weights once per row of `x` anyway and keeps `x` in f32.
pub const AMX_MIN_ROWS: usize = 16;

/// Which bf16 kernels this CPU runs (detected once per process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bf16Kernels {
    /// AVX-512F mat-vec kernel.
    pub avx512: bool,
    /// AMX-BF16 tiles (with AVX512-BF16 for the conversion of `x`) usable by this process.
    pub amx: bool,
    /// AVX512-BF16 dot products (`vdpbf16ps`): the M ≥ 16 kernel when AMX is not usable. Off with the
    /// environment variable `VLM_NO_DPBF16` (benchmark comparisons).
    pub dpbf16: bool,
    /// AVX2 + FMA mat-vec kernel (used when AVX-512F is absent).
    pub avx2: bool,
}

/// The kernel [`gemm_bf16`] runs for an (m, k) · (n, k)ᵀ product on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Path {
    /// AMX tiles; `x` rounded to bf16.
    Amx,
    /// AVX512-BF16 register tiles; `x` rounded to bf16.
    DpBf16,
    /// AVX-512 mat-vec; `x` stays f32.
    MatVec,
    /// AVX2 + FMA, up to [`AVX2_ROWS`] rows of `x` per widened weight block; `x` stays f32.
    Avx2,
    /// Blocks of weight rows widened to f32 and multiplied by the `gemm` crate's f32 kernels; `x`
    /// stays f32.
    Widened,
    /// Portable scalar loop; `x` stays f32.
    Scalar,
}

impl Bf16Path {
    /// The path for these dimensions: AMX or AVX512-BF16 from [`AMX_MIN_ROWS`] rows when the shapes
    /// fit their tiles (AMX: K % 32 = 0, N % 16 = 0; AVX512-BF16: K even, N % 16 = 0), else widened
    /// blocks from [`WIDEN_MIN_ROWS`] rows, else the mat-vec kernel of the CPU.
    pub fn choose(kernels: Bf16Kernels, m: usize, n: usize, k: usize) -> Self {
        if kernels.amx && m >= AMX_MIN_ROWS && k.is_multiple_of(32) && n.is_multiple_of(16) {
            Bf16Path::Amx
        } else if kernels.dpbf16 && m >= AMX_MIN_ROWS && k.is_multiple_of(2) && n.is_multiple_of(16) {
            Bf16Path::DpBf16
        } else if m >= WIDEN_MIN_ROWS {
            Bf16Path::Widened
        } else if kernels.avx512 {
            Bf16Path::MatVec
        } else if kernels.avx2 {
            Bf16Path::Avx2
        } else {
            Bf16Path::Scalar
        }
    }

    /// Whether this path rounds `x` to bf16 (relative error 2⁻⁹ per element) before multiplying.
    pub fn rounds_x(self) -> bool {
        matches!(self, Bf16Path::Amx | Bf16Path::DpBf16)
    }
}

/// The kernels available on this CPU. AMX also needs the kernel's permission for tile data
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), requested here once.
pub fn bf16_kernels() -> Bf16Kernels {
    static K: OnceLock<Bf16Kernels> = OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = std::arch::is_x86_feature_detected!("avx512f");
            let bf16 = avx512 && std::arch::is_x86_feature_detected!("avx512bf16");
            let amx = bf16 && std::env::var("VLM_NO_AMX").is_err() && x86::amx_available();
            let dpbf16 = bf16 && std::env::var("VLM_NO_DPBF16").is_err();
            let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            Bf16Kernels { avx512, amx, dpbf16, avx2 }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Bf16Kernels { avx512: false, amx: false, dpbf16: false, avx2: false }
    })
}

/// `x` (…, K) f32 · `w`ᵀ + `bias` with `w` (N, K) bf16 and `bias` (N) of any float dtype → (…, N) f32.
/// Leading dimensions of `x` are folded into M rows; the bias is added in place to the product's
/// output (no second (M, N) tensor). Errors: [`Error::Shape`] when the widths or the bias length
/// differ, [`Error::Invalid`] for other dtypes or a non-CPU device.
pub fn linear_bf16(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    let dims = x.dims().to_vec();
    if dims.is_empty() || dims[dims.len() - 1] != k {
        return Err(Error::Shape { name: "bf16 linear input".into(), expected: vec![0, k], found: dims });
    }
    if x.dtype() != DType::F32 || w.dtype() != DType::BF16 || !x.device().is_cpu() || !w.device().is_cpu() {
        return Err(Error::Invalid(format!(
            "bf16 linear needs f32 input and bf16 weight on the CPU, got {:?} and {:?}",
            x.dtype(),
            w.dtype()
        )));
    }
    let bias = match bias {
        Some(b) => {
            let b = b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if b.len() != n {
                return Err(Error::Shape { name: "bf16 linear bias".into(), expected: vec![n], found: vec![b.len()] });
            }
            Some(b)
        }
        None => None,
    };
    let m: usize = dims[..dims.len() - 1].iter().product();
    let x2 = x.reshape((m, k))?.contiguous()?;
    let w = w.contiguous()?;
    let y = x2.apply_op2_no_bwd(&w, &Bf16Linear { bias })?;
    let mut out = dims[..dims.len() - 1].to_vec();
    out.push(n);
    Ok(y.reshape(out)?)
}

struct Bf16Linear {
    /// Added to every output row, (N) f32.
    bias: Option<Vec<f32>>,
}

impl CustomOp2 for Bf16Linear {
    fn name(&self) -> &'static str {
        "bf16-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::BF16(w)) => (x, w),
            _ => candle_core::bail!("bf16-linear: f32 input and bf16 weight only"),
        };
        let (Some((xa, xb)), Some((wa, wb))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("bf16-linear: contiguous operands only")
        };
        let (m, k) = l1.shape().dims2()?;
        let (n, _) = l2.shape().dims2()?;
        let mut y = vec![0f32; m * n];
        gemm_bf16(&x[xa..xb], &w[wa..wb], &mut y, m, n, k);
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(n) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }
}

/// Raw output pointer shared by the threads; each writes a disjoint set of columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every thread writes only the output columns of its own column range.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer `j` elements on (a method, so closures capture the whole `Sync` wrapper).
    fn offset(self, j: usize) -> OutPtr {
        OutPtr(self.0.wrapping_add(j))
    }
}

/// `y` (m, n) = `x` (m, k) · `w` (n, k)ᵀ, all row-major and contiguous, on the fastest path of
/// [`bf16_kernels`] (the quant crate's prefill route multiplies bf16 panels with it). Panics when a
/// buffer is shorter than its shape.
pub fn gemm_bf16(x: &[f32], w: &[bf16], y: &mut [f32], m: usize, n: usize, k: usize) {
    gemm_bf16_on(bf16_kernels(), x, w, y, m, n, k)
}

/// [`gemm_bf16`] restricted to `kernels`, which must be a subset of [`bf16_kernels`] (tests force
/// each path this way).
fn gemm_bf16_on(kernels: Bf16Kernels, x: &[f32], w: &[bf16], y: &mut [f32], m: usize, n: usize, k: usize) {
    PreparedX::new_on(kernels, x, m, k, n).gemm(w, y, n)
}

/// The activations of one product, `x` (m, k) f32, put once into the layout its path reads
/// ([`Bf16Path::choose`] for `n_max` weight rows), so that several blocks of weight rows can be
/// multiplied by the same `x` without converting it again: the quantised prefill dequantises its
/// weights panel by panel and multiplies each panel by one `PreparedX` (on the AMX path the packing
/// of `x` is about as costly as a 256-row panel's product).
pub struct PreparedX<'a> {
    x: &'a [f32],
    m: usize,
    k: usize,
    kernels: Bf16Kernels,
    path: Bf16Path,
    /// `x` in the path's layout: AMX tiles or AVX512-BF16 pairs (u32 = two bf16), or the even/odd
    /// f32 halves of the AVX-512 / AVX2 mat-vec kernels; empty for the widened and scalar paths.
    packed: Packed,
}

enum Packed {
    None,
    Bf16(Vec<u32>),
    F32(Vec<f32>),
}

impl<'a> PreparedX<'a> {
    /// Prepares `x` (m, k) for products with blocks of at most `n_max` weight rows on this CPU's
    /// fastest path. Panics when `x` is shorter than m·k.
    pub fn new(x: &'a [f32], m: usize, k: usize, n_max: usize) -> Self {
        Self::new_on(bf16_kernels(), x, m, k, n_max)
    }

    fn new_on(kernels: Bf16Kernels, x: &'a [f32], m: usize, k: usize, n_max: usize) -> Self {
        assert!(x.len() >= m * k, "PreparedX: buffer sizes");
        let path = Bf16Path::choose(kernels, m, n_max, k);
        let packed = if m == 0 || k == 0 {
            Packed::None
        } else {
            #[cfg(target_arch = "x86_64")]
            {
                match path {
                    Bf16Path::Amx => Packed::Bf16(x86::pack_x(x, m, k)),
                    Bf16Path::DpBf16 => Packed::Bf16(x86::pack_x_pairs(x, m, k)),
                    Bf16Path::MatVec => Packed::F32(x86::split_even_odd(x, m, k)),
                    Bf16Path::Avx2 => Packed::F32(x86::split_even_odd_16(x, m, k)),
                    Bf16Path::Widened | Bf16Path::Scalar => Packed::None,
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            Packed::None
        };
        PreparedX { x, m, k, kernels, path, packed }
    }

    /// The path the products run on.
    pub fn path(&self) -> Bf16Path {
        self.path
    }

    /// `y` (m, n) = `x` · `w`ᵀ for a block `w` (n, k) of bf16 weight rows. A block whose shape the
    /// prepared path cannot take (`n` above `n_max`'s tile fit, say N not a multiple of 16 on AMX)
    /// is multiplied by [`gemm_bf16`]'s own choice. Panics when a buffer is shorter than its shape.
    pub fn gemm(&self, w: &[bf16], y: &mut [f32], n: usize) {
        let (x, m, k) = (self.x, self.m, self.k);
        assert!(w.len() >= n * k && y.len() >= m * n, "gemm_bf16: buffer sizes");
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            y[..m * n].iter_mut().for_each(|v| *v = 0.0);
            return;
        }
        let path = self.path;
        if Bf16Path::choose(self.kernels, m, n, k) != path {
            return PreparedX::new_on(self.kernels, x, m, k, n).gemm(w, y, n);
        }
        if path == Bf16Path::Widened {
            return widened_gemm(x, w, y, m, n, k);
        }
        let threads = crate::threads::num_threads();
        let out = OutPtr(y.as_mut_ptr());
        #[cfg(target_arch = "x86_64")]
        match (path, &self.packed) {
            (Bf16Path::Amx, Packed::Bf16(xp)) => {
                // Column ranges in multiples of 32 (one pair of 16-row weight tiles).
                let ranges = split_ranges(n, 32, threads);
                ranges.into_par_iter().for_each(|(n0, n1)| {
                    // SAFETY: AMX was detected and permitted; ranges are disjoint; buffers sized above.
                    unsafe { x86::amx_gemm(xp, w, out, m, n, k, n0, n1) }
                });
                return;
            }
            (Bf16Path::DpBf16, Packed::Bf16(xp)) => {
                let ranges = split_ranges(n, 16 * x86::DP_PANELS, threads);
                ranges.into_par_iter().for_each(|(n0, n1)| {
                    // SAFETY: AVX512-BF16 detected; ranges are disjoint multiples of 16; buffers sized above.
                    unsafe { x86::dp_gemm(xp, w, out, m, n, k, n0, n1) }
                });
                return;
            }
            (Bf16Path::MatVec, Packed::F32(xs)) => {
                split_ranges(n, 16, threads).into_par_iter().for_each(|(n0, n1)| {
                    // SAFETY: AVX-512F detected; ranges are disjoint; buffers sized above.
                    unsafe { x86::dot_rows(xs, x, w, out, m, n, k, n0, n1) }
                });
                return;
            }
            (Bf16Path::Avx2, Packed::F32(xs)) => {
                split_ranges(n, 8, threads).into_par_iter().for_each(|(n0, n1)| {
                    // SAFETY: AVX2 and FMA detected; ranges are disjoint; buffers sized above.
                    unsafe { x86::dot_rows_avx2(xs, x, w, out, m, n, k, n0, n1) }
                });
                return;
            }
            _ => {}
        }
        split_ranges(n, 16, threads).into_par_iter().for_each(|(n0, n1)| dot_rows_scalar(x, w, out, m, n, k, n0, n1));
    }

    /// `y` (m, n) = `x` · `W`ᵀ for weights `W` (n, k) that exist only block by block as bf16: the
    /// quantised prefill, which dequantises its weights on the fly. The n rows are split into one
    /// contiguous range per thread; each thread takes its range in blocks of `block_rows` rows (a
    /// multiple of 16), has `fill(j0, dst)` write weight rows j0 .. j0 + dst.len() / k into a buffer of
    /// its own (which then stays in that core's L2 cache) and multiplies the block straight into
    /// columns j0.. of `y`: one fork-join per product, no barrier per block, no copy of the output.
    ///
    /// On the tile paths (AMX, AVX512-BF16) the rows of a block past its last multiple of 16 (when n is
    /// not one) are multiplied by the scalar loop with `x` unrounded. On the other paths the blocks are
    /// made and multiplied one after the other, each block's product on all threads ([`Self::gemm`]).
    /// Panics when `y` is shorter than m·n or `block_rows` is not a positive multiple of 16.
    pub fn gemm_row_blocks(
        &self,
        n: usize,
        block_rows: usize,
        fill: impl Fn(usize, &mut [bf16]) + Sync,
        y: &mut [f32],
    ) {
        self.gemm_row_blocks_on(crate::threads::num_threads(), n, block_rows, fill, y)
    }

    /// [`Self::gemm_row_blocks`] with the rows split into at most `parts` ranges (tests force several).
    fn gemm_row_blocks_on(
        &self,
        parts: usize,
        n: usize,
        block_rows: usize,
        fill: impl Fn(usize, &mut [bf16]) + Sync,
        y: &mut [f32],
    ) {
        let (m, k) = (self.m, self.k);
        assert!(y.len() >= m * n, "gemm_row_blocks: buffer sizes");
        assert!(block_rows > 0 && block_rows.is_multiple_of(16), "gemm_row_blocks: block of {block_rows} rows");
        if m == 0 || n == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if let (Bf16Path::Amx | Bf16Path::DpBf16, Packed::Bf16(xp)) = (self.path, &self.packed) {
            let (amx, x) = (self.path == Bf16Path::Amx, self.x);
            let out = OutPtr(y.as_mut_ptr());
            // Ranges in whole tiles: 32 columns (a pair of AMX weight tiles) or DP_PANELS panels of 16.
            let align = if amx { 32 } else { 16 * x86::DP_PANELS };
            split_ranges(n, align, parts).into_par_iter().for_each(|(r0, r1)| {
                let mut buf = vec![bf16::ZERO; block_rows.min(r1 - r0) * k];
                for j0 in (r0..r1).step_by(block_rows) {
                    let nc = block_rows.min(r1 - j0);
                    fill(j0, &mut buf[..nc * k]);
                    let tiled = nc / 16 * 16;
                    // Columns j0.. of y: the kernels index the block's rows from 0 and y with stride n.
                    let yb = out.offset(j0);
                    // SAFETY: the path's CPU features were detected when `self` was prepared (AMX also
                    // permitted); buf holds nc rows of k; columns j0 .. j0 + nc of y's m rows (stride n)
                    // lie inside y (checked above) and belong to this thread's range only.
                    unsafe {
                        if tiled > 0 && amx {
                            x86::amx_gemm(xp, &buf, yb, m, n, k, 0, tiled);
                        } else if tiled > 0 {
                            x86::dp_gemm(xp, &buf, yb, m, n, k, 0, tiled);
                        }
                    }
                    dot_rows_scalar(x, &buf, yb, m, n, k, tiled, nc);
                }
            });
            return;
        }
        let rows = block_rows.min(n);
        let (mut buf, mut yb) = (vec![bf16::ZERO; rows * k], vec![0f32; m * rows]);
        for j0 in (0..n).step_by(rows) {
            let nc = rows.min(n - j0);
            fill(j0, &mut buf[..nc * k]);
            self.gemm(&buf[..nc * k], &mut yb[..m * nc], nc);
            for i in 0..m {
                y[i * n + j0..i * n + j0 + nc].copy_from_slice(&yb[i * nc..(i + 1) * nc]);
            }
        }
    }
}

/// Weight rows per widened f32 block: about 2¹⁸ f32 values (1 MiB), 16 to 512 rows, at most `n`.
pub fn widened_block_rows(n: usize, k: usize) -> usize {
    ((1usize << 18) / k.max(1)).clamp(16, 512).min(n)
}

/// [`Bf16Path::Widened`]: [`gemm_f32_row_blocks`] with each weight row widened to f32 (a bf16 is the
/// high half of its f32).
fn widened_gemm(x: &[f32], w: &[bf16], y: &mut [f32], m: usize, n: usize, k: usize) {
    gemm_f32_row_blocks(x, y, m, n, k, |j, dst| {
        dst.iter_mut().zip(&w[j * k..(j + 1) * k]).for_each(|(d, s)| *d = f32::from_bits((s.to_bits() as u32) << 16));
    });
}

/// `y` (m, n) = `x` (m, k) · `W`ᵀ for weights `W` (n, k) made row by row as f32: for each block of
/// [`widened_block_rows`] rows, `fill(j, row)` writes weight row `j` (k values) on all threads, then
/// the block is multiplied by [`gemm_f32_columns`] — the widened bf16 route and the quantised
/// prefill of CPUs without bf16 tiles. Panics when a buffer is shorter than its shape.
pub fn gemm_f32_row_blocks(
    x: &[f32],
    y: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) {
    if m == 0 || n == 0 || k == 0 {
        y[..m * n].iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let rows = widened_block_rows(n, k);
    let mut block = vec![0f32; rows * k];
    for j0 in (0..n).step_by(rows) {
        let nb = rows.min(n - j0);
        block[..nb * k].par_chunks_mut(k).enumerate().for_each(|(r, dst)| fill(j0 + r, dst));
        gemm_f32_columns(x, &block[..nb * k], y, m, n, k, j0);
    }
}

/// Columns `j0 .. j0 + nb` of `y` (m, n) = `x` (m, k) · `w`ᵀ for an f32 block `w` (nb, k) of weight
/// rows (nb = `w.len() / k`), all row-major, on the `gemm` crate's packed f32 kernels (threaded over
/// the engine's thread count for large products) — the widened-block route of bf16 and of quantised
/// prefill. Panics when a buffer is shorter than its shape or the columns leave `y`.
fn gemm_f32_columns(x: &[f32], w: &[f32], y: &mut [f32], m: usize, n: usize, k: usize, j0: usize) {
    use crate::autograd::kernels::{matmul, View};
    let nb = w.len().checked_div(k).unwrap_or(0);
    assert!(x.len() >= m * k && y.len() >= m * n && j0 + nb <= n, "gemm_f32_columns: buffer sizes");
    // dst: columns j0.. of y (row stride n); lhs: x (row stride k); rhs: the block transposed,
    // (k × nb) with element (c, r) at r·k + c.
    matmul(
        m,
        nb,
        k,
        y,
        View { offset: j0, rs: n, cs: 1 },
        x,
        View { offset: 0, rs: k, cs: 1 },
        &w[..nb * k],
        View { offset: 0, rs: 1, cs: k },
        1.0f32,
        false,
    );
}

#[allow(clippy::too_many_arguments)]
fn dot_rows_scalar(x: &[f32], w: &[bf16], y: OutPtr, m: usize, n: usize, k: usize, n0: usize, n1: usize) {
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in n0..n1 {
            let wr = &w[j * k..(j + 1) * k];
            let s: f32 = xr.iter().zip(wr).map(|(a, b)| a * b.to_f32()).sum();
            // SAFETY: j < n, i < m: inside y; columns n0..n1 belong to this thread.
            unsafe { *y.0.add(i * n + j) = s };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::OutPtr;
    use half::bf16;
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// Asks Linux for permission to use AMX tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM,
    /// XFEATURE_XTILEDATA)`), after checking CPUID for AMX-TILE and AMX-BF16.
    pub(super) fn amx_available() -> bool {
        // CPUID.(EAX=7, ECX=0):EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE.
        // SAFETY: CPUID leaf 7 exists on every x86-64 CPU with AVX-512 (checked by the caller).
        let edx = __cpuid_count(7, 0).edx;
        if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
            return false;
        }
        if !cfg!(target_os = "linux") {
            return false;
        }
        const SYS_ARCH_PRCTL: usize = 158;
        const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
        const XFEATURE_XTILEDATA: usize = 18;
        let ret: isize;
        // SAFETY: a plain Linux x86-64 system call; it only changes this process's permitted xstate.
        unsafe {
            asm!("syscall",
                inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM, in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret == 0
    }

    /// `x` (m, k) f32 with each 32-column block split into its even and odd columns:
    /// out[(i·k/32 + b)·32 + c] = x[i][32b + 2c] for c < 16, x[i][32b + 2(c−16) + 1] for c ≥ 16.
    /// The last k % 32 columns are not included (the kernels handle them separately).
    pub(super) fn split_even_odd(x: &[f32], m: usize, k: usize) -> Vec<f32> {
        split_even_odd_blocks(x, m, k, 32)
    }

    /// `x` (m, k) split per block of `block` elements into its `block / 2` even then `block / 2` odd
    /// elements (the order in which a vector load of `block` bf16 widens: low halves of the 32-bit
    /// lanes, then high halves); the tail k % block is not copied.
    fn split_even_odd_blocks(x: &[f32], m: usize, k: usize, block: usize) -> Vec<f32> {
        let (kb, half) = (k / block, block / 2);
        let mut out = vec![0f32; m * kb * block];
        for i in 0..m {
            for b in 0..kb {
                let src = &x[i * k + block * b..i * k + block * (b + 1)];
                let dst = &mut out[(i * kb + b) * block..(i * kb + b + 1) * block];
                for c in 0..half {
                    dst[c] = src[2 * c];
                    dst[half + c] = src[2 * c + 1];
                }
            }
        }
        out
    }

    /// [`split_even_odd_blocks`] in blocks of 16 (the AVX2 kernel's 256-bit loads).
    pub(super) fn split_even_odd_16(x: &[f32], m: usize, k: usize) -> Vec<f32> {
        split_even_odd_blocks(x, m, k, 16)
    }

    /// AVX2 kernel: y[i][j] = Σ_k x[i][k]·w[j][k] for i < m, j in n0..n1. For each weight row and each
    /// chunk of up to [`super::AVX2_ROWS`] rows of `x`, every 16-weight block is loaded and widened
    /// once (even elements: the low bf16 of each 32-bit lane shifted up; odd: the high one masked) and
    /// multiplied into every row of the chunk, two accumulators per row ([`chunk_avx2`], specialised
    /// per chunk size so that the accumulators live in registers); the k % 16 tail is scalar.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn dot_rows_avx2(
        xs: &[f32],
        x: &[f32],
        w: &[bf16],
        y: OutPtr,
        m: usize,
        n: usize,
        k: usize,
        n0: usize,
        n1: usize,
    ) {
        let kb = k / 16;
        let wp = w.as_ptr() as *const u16;
        for j in n0..n1 {
            let row = wp.add(j * k);
            let mut i0 = 0;
            while i0 < m {
                let rows = (m - i0).min(super::AVX2_ROWS);
                let xc = xs.as_ptr().add(i0 * kb * 16);
                let mut sums = [0f32; super::AVX2_ROWS];
                match rows {
                    4 => sums = chunk_avx2::<4>(row, xc, kb),
                    3 => sums[..3].copy_from_slice(&chunk_avx2::<3>(row, xc, kb)),
                    2 => sums[..2].copy_from_slice(&chunk_avx2::<2>(row, xc, kb)),
                    _ => sums[..1].copy_from_slice(&chunk_avx2::<1>(row, xc, kb)),
                }
                for (r, sum) in sums.iter().enumerate().take(rows) {
                    let i = i0 + r;
                    let tail: f32 = (16 * kb..k).map(|c| x[i * k + c] * w[j * k + c].to_f32()).sum();
                    *y.0.add(i * n + j) = sum + tail;
                }
                i0 += rows;
            }
        }
    }

    /// How far ahead [`chunk_avx2`] prefetches its weight row, in bf16 elements (2 KiB): with four rows
    /// of `x` per weight block the FMAs otherwise stall the row stream (an out-of-cache pass over 277 MB
    /// of weights at m = 4: 46 → 39 ms, m = 8: 92 → 74 ms; m = 1 unchanged; one AVX2 core).
    const PF: usize = 1024;

    /// Σ over the first 16·`kb` columns of one bf16 weight row (`row`) times each of R rows of `x` in
    /// [`split_even_odd_16`]'s layout (`xc`: R rows of `kb` blocks, even then odd elements).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn chunk_avx2<const R: usize>(row: *const u16, xc: *const f32, kb: usize) -> [f32; R] {
        let hi_mask = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for b in 0..kb {
            // A prefetch past the row's end is harmless (no fault), hence `wrapping_add`.
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(16 * b + PF) as *const i8);
            let v = _mm256_loadu_si256(row.add(16 * b) as *const __m256i);
            let even = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v));
            let odd = _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask));
            for (r, a) in acc.iter_mut().enumerate() {
                let xr = xc.add((r * kb + b) * 16);
                a[0] = _mm256_fmadd_ps(even, _mm256_loadu_ps(xr), a[0]);
                a[1] = _mm256_fmadd_ps(odd, _mm256_loadu_ps(xr.add(8)), a[1]);
            }
        }
        let mut out = [0f32; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            let sum = _mm256_add_ps(a[0], a[1]);
            let hi = _mm256_extractf128_ps::<1>(sum);
            let quad = _mm_add_ps(_mm256_castps256_ps128(sum), hi);
            let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
            *o = _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair)));
        }
        out
    }

    /// Mat-vec kernel: y[i][j] = Σ_k x[i][k]·w[j][k] for all i < m, j in n0..n1, one weight row at a
    /// time, so each thread reads its rows as one sequential stream (bf16 widened to f32 in registers:
    /// the low half of each 32-bit lane shifted up is the even element, the high half masked is the odd
    /// one). One stream per core reads memory about 1.8× faster here than four interleaved row streams
    /// (20.8 against 11.7 GB/s on one Zen 4 core; the lm_head product 16 → 10.5 ms with two threads),
    /// and four accumulators (two blocks of 32 per step) hide the FMA latency on rows served from cache.
    /// The stream is prefetched [`PF`] elements ahead: on an Intel Xeon (AMX) core the hardware
    /// prefetcher alone held it at 7–10 GB/s of the core's 11.6, with the prefetch 10.6–13.2 (two
    /// threads: 14–17 → 19.6–21.5 of 21.3 GB/s; `bench_bf16_rows`, m = 1).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn dot_rows(
        xs: &[f32],
        x: &[f32],
        w: &[bf16],
        y: OutPtr,
        m: usize,
        n: usize,
        k: usize,
        n0: usize,
        n1: usize,
    ) {
        let kb = k / 32;
        let wp = w.as_ptr() as *const u16;
        let hi_mask = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
        for j in n0..n1 {
            let row = wp.add(j * k);
            for i in 0..m {
                let xr = xs.as_ptr().add(i * kb * 32);
                let mut acc = [_mm512_setzero_ps(); 4];
                let mut b = 0;
                while b < kb {
                    // Blocks b and b + 1 (the second only while it exists): accumulators 0–1, then 2–3.
                    let blocks = if b + 1 < kb { 2 } else { 1 };
                    for (h, pair) in acc.chunks_exact_mut(2).take(blocks).enumerate() {
                        let c = 32 * (b + h);
                        // A prefetch past the row's end is harmless (no fault), hence `wrapping_add`.
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(c + PF) as *const i8);
                        let v = _mm512_loadu_si512(row.add(c) as *const _);
                        let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
                        let odd = _mm512_castsi512_ps(_mm512_and_si512(v, hi_mask));
                        pair[0] = _mm512_fmadd_ps(even, _mm512_loadu_ps(xr.add(c)), pair[0]);
                        pair[1] = _mm512_fmadd_ps(odd, _mm512_loadu_ps(xr.add(c + 16)), pair[1]);
                    }
                    b += blocks;
                }
                let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
                let tail: f32 = (32 * kb..k).map(|c| x[i * k + c] * w[j * k + c].to_f32()).sum();
                *y.0.add(i * n + j) = _mm512_reduce_add_ps(sum) + tail;
            }
        }
    }

    /// `x` (m, k) f32 → bf16 tiles for AMX's right operand: for row block mb (16 rows of x, zero-padded)
    /// and column block kb (32 columns), a 16×16 array of 32-bit pairs at
    /// `((mb·k/32 + kb)·16 + c)·16 + r` holding (x[16mb + r][32kb + 2c], x[16mb + r][32kb + 2c + 1]).
    pub(super) fn pack_x(x: &[f32], m: usize, k: usize) -> Vec<u32> {
        let (kb, mb) = (k / 32, m.div_ceil(16));
        let mut out = vec![0u32; mb * kb * 256];
        // SAFETY: only called when AVX512-BF16 was detected (the AMX path).
        unsafe { pack_x_avx512bf16(x, m, k, &mut out) };
        out
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn pack_x_avx512bf16(x: &[f32], m: usize, k: usize, out: &mut [u32]) {
        let kb = k / 32;
        let idx = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
        for i in 0..m {
            let (mb, r) = (i / 16, i % 16);
            for b in 0..kb {
                let src = x.as_ptr().add(i * k + 32 * b);
                let lo = _mm512_loadu_ps(src);
                let hi = _mm512_loadu_ps(src.add(16));
                // Round-to-nearest-even to bf16; lane c holds elements 2c (low half) and 2c + 1.
                let pairs: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                let dst = out.as_mut_ptr().add((mb * kb + b) * 256 + r);
                _mm512_i32scatter_epi32::<4>(dst as *mut _, idx, pairs);
            }
        }
    }

    /// Tile configuration (palette 1): all eight tiles 16 rows × 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    impl TileConfig {
        fn all_16x64() -> Self {
            let mut c = [0u8; 64];
            c[0] = 1; // palette
            for t in 0..8 {
                c[16 + 2 * t] = 64; // colsb (u16, little-endian)
                c[48 + t] = 16; // rows
            }
            Self(c)
        }
    }

    /// One 16×16 f32 result tile holds yᵀ for 16 output columns (tile rows) × 16 input rows (tile
    /// columns); writes its valid part into `y`.
    #[target_feature(enable = "avx512f")]
    unsafe fn store_transposed(c: &[f32; 256], y: OutPtr, n: usize, m: usize, i0: usize, j0: usize) {
        let idx = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
        for r in 0..16.min(m - i0) {
            let col = _mm512_i32gather_ps::<4>(idx, c.as_ptr().add(r));
            _mm512_storeu_ps(y.0.add((i0 + r) * n + j0), col);
        }
    }

    /// Weight panels per register tile of the AVX512-BF16 kernel (16 output columns each).
    pub(super) const DP_PANELS: usize = 3;
    /// Rows of `x` per register tile of the AVX512-BF16 kernel.
    const DP_ROWS: usize = 8;

    /// `x` (m, k) f32, k even → bf16 pairs, row-major: out[i·k/2 + p] holds x[i][2p] in its low and
    /// x[i][2p + 1] in its high 16 bits, rounded to nearest even.
    pub(super) fn pack_x_pairs(x: &[f32], m: usize, k: usize) -> Vec<u32> {
        let mut out = vec![0u32; m * k / 2];
        // SAFETY: only called on the AVX512-BF16 path (feature detected).
        unsafe { pack_x_pairs_avx512bf16(x, m, k, &mut out) };
        out
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn pack_x_pairs_avx512bf16(x: &[f32], m: usize, k: usize, out: &mut [u32]) {
        let k2 = k / 2;
        for i in 0..m {
            let src = &x[i * k..(i + 1) * k];
            let dst = &mut out[i * k2..(i + 1) * k2];
            let mut c = 0;
            while c + 32 <= k {
                let lo = _mm512_loadu_ps(src.as_ptr().add(c));
                let hi = _mm512_loadu_ps(src.as_ptr().add(c + 16));
                // Lanes 0–15 of the result are `lo`, 16–31 `hi`: 32 bf16 in order = 16 pairs.
                let pairs: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(dst.as_mut_ptr().add(c / 2) as *mut _, pairs);
                c += 32;
            }
            while c < k {
                let (a, b) = (bf16::from_f32(src[c]).to_bits() as u32, bf16::from_f32(src[c + 1]).to_bits() as u32);
                dst[c / 2] = a | (b << 16);
                c += 2;
            }
        }
    }

    /// Packs pairs p0..p1 of weight rows j0..j0 + 16·panels (w (n, k) bf16, k even) into `buf`:
    /// panel-interleaved bf16 pairs, buf[((p − p0)·panels + c)·16 + l] = (w[j0 + 16c + l][2p],
    /// w[j0 + 16c + l][2p + 1]). Blocks of 16 rows × 16 pairs are transposed in registers
    /// ([`transpose16`]); the last (p1 − p0) % 16 pairs one by one.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_w_panels(w: &[bf16], k: usize, j0: usize, panels: usize, p0: usize, p1: usize, buf: &mut Vec<u32>) {
        let k2 = k / 2;
        let kp = p1 - p0;
        assert!(w.len() >= (j0 + 16 * panels) * k, "pack_w_panels: weight rows out of range");
        // Every element of the first kp·panels·16 is written below: grow the buffer once, never re-zero
        // it (clearing it per group was a memset as large as the weights on every call).
        if buf.len() < kp * panels * 16 {
            buf.resize(kp * panels * 16, 0);
        }
        // A pair of bf16 read as one little-endian u32: low half the even element, high half the odd.
        let base = w.as_ptr() as *const u32;
        let out = buf.as_mut_ptr();
        for c in 0..panels {
            let row0 = (j0 + 16 * c) * k2;
            let mut p = p0;
            while p + 16 <= p1 {
                let mut r = [_mm512_setzero_si512(); 16];
                for (l, v) in r.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(base.add(row0 + l * k2 + p) as *const _);
                }
                for (q, v) in transpose16(r).iter().enumerate() {
                    _mm512_storeu_si512(out.add(((p - p0 + q) * panels + c) * 16) as *mut _, *v);
                }
                p += 16;
            }
            while p < p1 {
                for l in 0..16 {
                    *out.add(((p - p0) * panels + c) * 16 + l) = base.add(row0 + l * k2 + p).read_unaligned();
                }
                p += 1;
            }
        }
    }

    /// 16 × 16 transpose of 32-bit lanes: out[q] lane l = r[l] lane q. Unpacks of 32- and 64-bit
    /// elements within 128-bit lanes, then two rounds of 128-bit lane shuffles.
    #[target_feature(enable = "avx512f")]
    unsafe fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        // u[4g + j], rows 4g..4g + 3: 128-bit lane q holds those rows' element 4q + j.
        let mut u = [_mm512_setzero_si512(); 16];
        for g in 0..4 {
            u[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
            u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
            u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
            u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
        }
        let mut o = [_mm512_setzero_si512(); 16];
        for j in 0..4 {
            // Lanes (q0, q1) and (q2, q3) of groups (0, 1) and (2, 3).
            let lo01 = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]);
            let hi01 = _mm512_shuffle_i32x4::<0xEE>(u[j], u[4 + j]);
            let lo23 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
            let hi23 = _mm512_shuffle_i32x4::<0xEE>(u[8 + j], u[12 + j]);
            o[j] = _mm512_shuffle_i32x4::<0x88>(lo01, lo23);
            o[4 + j] = _mm512_shuffle_i32x4::<0xDD>(lo01, lo23);
            o[8 + j] = _mm512_shuffle_i32x4::<0x88>(hi01, hi23);
            o[12 + j] = _mm512_shuffle_i32x4::<0xDD>(hi01, hi23);
        }
        o
    }

    /// AVX512-BF16 kernel for output columns n0..n1 (multiples of 16): per group of up to
    /// [`DP_PANELS`] 16-column panels and per block of [`KC_PAIRS`] pairs of k, pack that block of the
    /// weight rows once, then sweep the rows of `x` (packed by [`pack_x_pairs`]) in register tiles of
    /// up to [`DP_ROWS`] rows.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn dp_gemm(
        xp: &[u32],
        w: &[bf16],
        y: OutPtr,
        m: usize,
        n: usize,
        k: usize,
        n0: usize,
        n1: usize,
    ) {
        let mut buf = Vec::new();
        let k2 = k / 2;
        // Blocks of KC_PAIRS pairs of k: one group's packed panels (48 columns × 1024 bf16 = 96 KiB),
        // the block of x the tiles read and the prefetched next block stay in L2 together (without the
        // blocking, k = 2816 (down_proj) packed 270 KiB per group). 0.5B prefill, bench_decoder: 86
        // tokens 0.226–0.247 → 0.200–0.204 s; 51 and 626 tokens unchanged within noise.
        let blocks: Vec<(usize, usize)> = (0..k2).step_by(KC_PAIRS).map(|p0| (p0, (p0 + KC_PAIRS).min(k2))).collect();
        let mut j = n0;
        while j < n1 {
            let panels = ((n1 - j) / 16).min(DP_PANELS);
            for (b, &(p0, p1)) in blocks.iter().enumerate() {
                pack_w_panels(w, k, j, panels, p0, p1, &mut buf);
                // The next block's weight rows (the same rows' next k-range, or the next group's first)
                // are prefetched into L2, one cache line per k-pair step of the tiles below, so that
                // its packing (16 strided row reads at a time) does not wait on DRAM.
                let (nj, np) = if b + 1 < blocks.len() { (j, blocks[b + 1]) } else { (j + 16 * panels, blocks[0]) };
                let nrows = ((n1 - nj.min(n1)) / 16).min(DP_PANELS) * 16;
                let pf = &mut Prefetch::new(w, k, nj, nrows, np.0, np.1);
                // Tiles of later k-blocks add to what the earlier ones stored in y.
                let acc = p0 > 0;
                let mut i = 0;
                while i < m {
                    let rows = (m - i).min(DP_ROWS);
                    macro_rules! tile {
                        ($($r:literal)*) => {
                            match (rows, panels) {
                                $(($r, 1) => dp_tile::<$r, 1>(xp, &buf, y, n, k, i, j, p0, p1, acc, pf),
                                  ($r, 2) => dp_tile::<$r, 2>(xp, &buf, y, n, k, i, j, p0, p1, acc, pf),
                                  ($r, 3) => dp_tile::<$r, 3>(xp, &buf, y, n, k, i, j, p0, p1, acc, pf),)*
                                _ => unreachable!("rows ≤ DP_ROWS, panels ≤ DP_PANELS"),
                            }
                        };
                    }
                    tile!(1 2 3 4 5 6 7 8);
                    i += rows;
                }
            }
            j += 16 * panels;
        }
    }

    /// Pairs of k per block of the AVX512-BF16 kernel.
    const KC_PAIRS: usize = 512;

    /// Weight bytes still to be prefetched (into L2): `rows` rows from `row0`, pairs p0..p1 of each, one
    /// 64-byte line per k-pair step of [`dp_tile`]. Prefetches are hints: they never fault.
    struct Prefetch {
        base: *const u8,
        stride: usize,
        lines_per_row: usize,
        lines: usize,
        cursor: usize,
    }

    impl Prefetch {
        fn new(w: &[bf16], k: usize, row0: usize, rows: usize, p0: usize, p1: usize) -> Self {
            let base = (w.as_ptr() as *const u8).wrapping_add(row0 * k * 2 + p0 * 4);
            let lines_per_row = ((p1 - p0) * 4).div_ceil(64).max(1);
            Self { base, stride: k * 2, lines_per_row, lines: rows * lines_per_row, cursor: 0 }
        }

        #[inline(always)]
        unsafe fn step(&mut self) {
            if self.cursor < self.lines {
                let (r, l) = (self.cursor / self.lines_per_row, self.cursor % self.lines_per_row);
                _mm_prefetch::<_MM_HINT_T1>(self.base.wrapping_add(r * self.stride + l * 64) as *const i8);
                self.cursor += 1;
            }
        }
    }

    /// One register tile: y[i0..i0 + R][j0..j0 + 16P] = x-rows · packed panels, R·P f32 accumulators
    /// of 16 lanes; per pair of k, one `vdpbf16ps` per accumulator (the x pair broadcast to all lanes).
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dp_tile<const R: usize, const P: usize>(
        xp: &[u32],
        wp: &[u32],
        y: OutPtr,
        n: usize,
        k: usize,
        i0: usize,
        j0: usize,
        p0: usize,
        p1: usize,
        accumulate: bool,
        pf: &mut Prefetch,
    ) {
        let k2 = k / 2;
        debug_assert!(xp.len() >= (i0 + R) * k2 && wp.len() >= (p1 - p0) * P * 16);
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        if accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                for (c, a) in row.iter_mut().enumerate() {
                    *a = _mm512_loadu_ps(y.0.add((i0 + r) * n + j0 + 16 * c));
                }
            }
        }
        let xb = xp.as_ptr().add(i0 * k2);
        let wb = wp.as_ptr();
        for p in p0..p1 {
            pf.step();
            let mut wv = [_mm512_setzero_si512(); P];
            for (c, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(wb.add(((p - p0) * P + c) * 16) as *const _);
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_epi32(*xb.add(r * k2 + p) as i32);
                for (c, a) in row.iter_mut().enumerate() {
                    *a = _mm512_dpbf16_ps(
                        *a,
                        std::mem::transmute::<__m512i, __m512bh>(wv[c]),
                        std::mem::transmute::<__m512i, __m512bh>(xv),
                    );
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (c, a) in row.iter().enumerate() {
                _mm512_storeu_ps(y.0.add((i0 + r) * n + j0 + 16 * c), *a);
            }
        }
    }

    /// AMX kernel for output columns n0..n1 (multiples of 16): the weight rows are the tiles' left
    /// operand (loaded in place, stride k), packed `x` ([`pack_x`]) the right one; C tile = yᵀ block.
    /// Up to 2×2 result tiles per pass over k. Rows of `x` are processed in chunks whose packed
    /// tiles stay in the L2 cache while the weight columns stream past.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn amx_gemm(
        xp: &[u32],
        w: &[bf16],
        y: OutPtr,
        m: usize,
        n: usize,
        k: usize,
        n0: usize,
        n1: usize,
    ) {
        let cfg = TileConfig::all_16x64();
        asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack));
        let kb = k / 32;
        let mblocks = m.div_ceil(16);
        // Row chunk: about 1 MiB of packed x, at least two row blocks.
        let chunk = ((1 << 20) / (k * 2) / 32 * 2).max(2);
        let wstride = k * 2;
        let xstride = 64usize;
        let mut c = [[0f32; 256]; 4];
        let wbase = w.as_ptr() as *const u8;
        let xbase = xp.as_ptr() as *const u8;
        let mut mc = 0;
        while mc < mblocks {
            let mend = (mc + chunk).min(mblocks);
            let mut j = n0;
            while j < n1 {
                let two_n = j + 32 <= n1;
                let mut mb = mc;
                while mb < mend {
                    let two_m = mb + 2 <= mend;
                    asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack));
                    for b in 0..kb {
                        let w0 = wbase.add((j * k + 32 * b) * 2);
                        let x0 = xbase.add((mb * kb + b) * 1024);
                        asm!("tileloadd tmm4, [{p} + {s}*1]", p = in(reg) w0, s = in(reg) wstride, options(nostack, readonly));
                        asm!("tileloadd tmm6, [{p} + {s}*1]", p = in(reg) x0, s = in(reg) xstride, options(nostack, readonly));
                        asm!("tdpbf16ps tmm0, tmm4, tmm6", options(nostack, nomem));
                        if two_m {
                            let x1 = xbase.add(((mb + 1) * kb + b) * 1024);
                            asm!("tileloadd tmm7, [{p} + {s}*1]", p = in(reg) x1, s = in(reg) xstride, options(nostack, readonly));
                            asm!("tdpbf16ps tmm1, tmm4, tmm7", options(nostack, nomem));
                        }
                        if two_n {
                            let w1 = wbase.add(((j + 16) * k + 32 * b) * 2);
                            asm!("tileloadd tmm5, [{p} + {s}*1]", p = in(reg) w1, s = in(reg) wstride, options(nostack, readonly));
                            asm!("tdpbf16ps tmm2, tmm5, tmm6", options(nostack, nomem));
                            if two_m {
                                asm!("tdpbf16ps tmm3, tmm5, tmm7", options(nostack, nomem));
                            }
                        }
                    }
                    let s = 64usize;
                    asm!("tilestored [{p} + {s}*1], tmm0", p = in(reg) c[0].as_mut_ptr(), s = in(reg) s, options(nostack));
                    store_transposed(&c[0], y, n, m, mb * 16, j);
                    if two_m {
                        asm!("tilestored [{p} + {s}*1], tmm1", p = in(reg) c[1].as_mut_ptr(), s = in(reg) s, options(nostack));
                        store_transposed(&c[1], y, n, m, (mb + 1) * 16, j);
                    }
                    if two_n {
                        asm!("tilestored [{p} + {s}*1], tmm2", p = in(reg) c[2].as_mut_ptr(), s = in(reg) s, options(nostack));
                        store_transposed(&c[2], y, n, m, mb * 16, j + 16);
                        if two_m {
                            asm!("tilestored [{p} + {s}*1], tmm3", p = in(reg) c[3].as_mut_ptr(), s = in(reg) s, options(nostack));
                            store_transposed(&c[3], y, n, m, (mb + 1) * 16, j + 16);
                        }
                    }
                    mb += if two_m { 2 } else { 1 };
                }
                j += if two_n { 32 } else { 16 };
            }
            mc = mend;
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference in f64 on the bf16-rounded operands: the products of bf16 values are exact in f64.
    fn reference(x: &[f32], w: &[bf16], m: usize, n: usize, k: usize, round_x: bool) -> Vec<f64> {
        let mut y = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|c| {
                        let a = if round_x { bf16::from_f32(x[i * k + c]).to_f64() } else { x[i * k + c] as f64 };
                        a * w[j * k + c].to_f64()
                    })
                    .sum();
            }
        }
        y
    }

    fn check(kernels: Bf16Kernels, m: usize, n: usize, k: usize) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64((m * 1000 + n * 10 + k) as u64);
        let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let w: Vec<bf16> = (0..n * k).map(|_| bf16::from_f32(rng.random_range(-1.0..1.0))).collect();
        let mut y = vec![f32::NAN; m * n];
        gemm_bf16_on(kernels, &x, &w, &mut y, m, n, k);
        let want = reference(&x, &w, m, n, k, Bf16Path::choose(kernels, m, n, k).rounds_x());
        // Scale: Σ|x·w| bounds the rounding error of an f32 sum of k terms by k·2⁻²⁴·Σ|x·w|.
        for i in 0..m {
            for j in 0..n {
                let scale: f64 = (0..k).map(|c| (x[i * k + c] as f64 * w[j * k + c].to_f64()).abs()).sum();
                let err = (y[i * n + j] as f64 - want[i * n + j]).abs();
                assert!(
                    err <= 1e-6 * scale.max(1e-30) * (k as f64).sqrt(),
                    "m {m} n {n} k {k} at ({i}, {j}): {} vs {}",
                    y[i * n + j],
                    want[i * n + j]
                );
            }
        }
    }

    /// Every path this CPU can run, forced one after the other by restricting the detected kernels
    /// (AMX, then AVX512-BF16, then the AVX-512 mat-vec, then scalar); the paths it cannot run are
    /// named as skipped in the test's output.
    #[test]
    fn matches_f64_reference_on_every_path() {
        let here = bf16_kernels();
        let none = Bf16Kernels { avx512: false, amx: false, dpbf16: false, avx2: false };
        let forced = [
            ("AMX", here.amx, here),
            ("AVX512-BF16", here.dpbf16, Bf16Kernels { amx: false, ..here }),
            ("AVX-512 mat-vec", here.avx512, Bf16Kernels { amx: false, dpbf16: false, ..here }),
            ("AVX2", here.avx2, Bf16Kernels { avx2: here.avx2, ..none }),
            ("scalar", true, none),
        ];
        for (name, available, kernels) in forced {
            if !available {
                eprintln!("bf16 path {name}: skipped (not available on this CPU)");
                continue;
            }
            for &(m, n, k) in &[
                (1, 1, 1),
                (1, 7, 40),
                (3, 33, 64),
                (1, 64, 96),
                (16, 32, 64),
                (17, 48, 96),
                (40, 80, 128),
                (33, 16, 32),
                (19, 112, 66),
                (24, 96, 2),
                (16, 144, 34),
                (18, 48, 100),
                (5, 9, 160),
                (2, 5, 31),
                (17, 48, 1100),
                (20, 32, 2050),
                // Widened blocks (M ≥ WIDEN_MIN_ROWS without AMX / AVX512-BF16): several blocks, the
                // last partial.
                (WIDEN_MIN_ROWS, 600, 64),
                (48, 40, 20000),
            ] {
                check(kernels, m, n, k);
            }
            eprintln!("bf16 path {name}: tested");
        }
    }

    #[test]
    fn path_choice_follows_the_tile_constraints() {
        let all = Bf16Kernels { avx512: true, amx: true, dpbf16: true, avx2: true };
        let no_amx = Bf16Kernels { amx: false, ..all };
        assert_eq!(Bf16Path::choose(all, 16, 32, 64), Bf16Path::Amx);
        assert_eq!(Bf16Path::choose(all, 16, 32, 66), Bf16Path::DpBf16); // K not a multiple of 32
        assert_eq!(Bf16Path::choose(no_amx, 16, 32, 64), Bf16Path::DpBf16);
        assert_eq!(Bf16Path::choose(no_amx, 15, 32, 64), Bf16Path::MatVec);
        assert_eq!(Bf16Path::choose(no_amx, 16, 40, 64), Bf16Path::MatVec); // N not a multiple of 16
        assert_eq!(Bf16Path::choose(no_amx, 16, 32, 63), Bf16Path::MatVec); // K odd
        let none = Bf16Kernels { avx512: false, amx: false, dpbf16: false, avx2: false };
        assert_eq!(Bf16Path::choose(none, 16, 64, 64), Bf16Path::Scalar);
        assert_eq!(Bf16Path::choose(no_amx, WIDEN_MIN_ROWS, 40, 64), Bf16Path::Widened); // no tile fit
        let avx2 = Bf16Kernels { avx2: true, ..none };
        assert_eq!(Bf16Path::choose(avx2, 1, 64, 64), Bf16Path::Avx2);
        assert_eq!(Bf16Path::choose(avx2, WIDEN_MIN_ROWS - 1, 64, 64), Bf16Path::Avx2);
        assert_eq!(Bf16Path::choose(avx2, WIDEN_MIN_ROWS, 64, 64), Bf16Path::Widened);
        assert_eq!(Bf16Path::choose(none, 64, 64, 64), Bf16Path::Widened);
        // The f64 comparison above runs this CPU's paths; say which, so a log shows the coverage.
        eprintln!("bf16 kernels here: {:?}", bf16_kernels());
    }

    /// Weights made block by block on the threads ([`PreparedX::gemm_row_blocks`]) against the f64
    /// reference, every path this CPU runs forced: several ranges (3 parts) of several blocks each,
    /// a last block shorter than the others, and n not a multiple of 16 (the rows past the last
    /// multiple multiplied with `x` unrounded on the tile paths). `fill` must be asked for every row
    /// exactly once.
    #[test]
    fn row_blocks_match_f64_reference_on_every_path() {
        use rand::{Rng, SeedableRng};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let here = bf16_kernels();
        let none = Bf16Kernels { avx512: false, amx: false, dpbf16: false, avx2: false };
        let forced = [
            ("AMX", here.amx, here),
            ("AVX512-BF16", here.dpbf16, Bf16Kernels { amx: false, ..here }),
            ("scalar / widened", true, none),
        ];
        for (name, available, kernels) in forced {
            if !available {
                eprintln!("bf16 path {name}: skipped (not available on this CPU)");
                continue;
            }
            for &(m, n, k, block) in
                &[(20, 400, 64, 96), (17, 200, 96, 32), (33, 411, 128, 48), (16, 48, 32, 96), (50, 100, 64, 32)]
            {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64((m * 7 + n + k) as u64);
                let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
                let w: Vec<bf16> = (0..n * k).map(|_| bf16::from_f32(rng.random_range(-1.0..1.0))).collect();
                let xp = PreparedX::new_on(kernels, &x, m, k, n.min(block));
                let tiles = xp.path().rounds_x();
                let asked = (0..n).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>();
                let mut y = vec![f32::NAN; m * n];
                xp.gemm_row_blocks_on(
                    3,
                    n,
                    block,
                    |j0, dst| {
                        for (r, row) in dst.chunks_exact_mut(k).enumerate() {
                            asked[j0 + r].fetch_add(1, Ordering::Relaxed);
                            row.copy_from_slice(&w[(j0 + r) * k..(j0 + r + 1) * k]);
                        }
                    },
                    &mut y,
                );
                assert!(asked.iter().all(|a| a.load(Ordering::Relaxed) == 1), "{name}: every row filled once");
                let rounded = reference(&x, &w, m, n, k, true);
                let exact = reference(&x, &w, m, n, k, false);
                for i in 0..m {
                    for j in 0..n {
                        // Tile paths round x, except on the rows past n's last multiple of 16.
                        let want = if tiles && j < n / 16 * 16 { rounded[i * n + j] } else { exact[i * n + j] };
                        let scale: f64 = (0..k).map(|c| (x[i * k + c] as f64 * w[j * k + c].to_f64()).abs()).sum();
                        assert!(
                            (y[i * n + j] as f64 - want).abs() <= 1e-6 * scale.max(1e-30) * (k as f64).sqrt(),
                            "{name} m {m} n {n} k {k} block {block} at ({i}, {j}): {} vs {want}",
                            y[i * n + j]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn split_covers_range() {
        assert_eq!(split_ranges(100, 32, 2), vec![(0, 64), (64, 100)]);
        assert_eq!(split_ranges(16, 32, 4), vec![(0, 16)]);
        assert_eq!(split_ranges(96, 32, 2), vec![(0, 32), (32, 96)]);
    }
}
