//! x86-64 dot-product kernels: AVX2 (one block per step, weight scales widened eight blocks at a time)
//! and AVX-512 VNNI, on the row layout two blocks of one row per step ([`dot_q8_0_avx512`]) and on the
//! interleaved layout a block column of 16 rows per step ([`group_x16`]); each takes up to four
//! activation rows per pass over the weights.
//!
//! Sources for the instructions: Intel® 64 and IA-32 Architectures Software Developer's Manual,
//! `VPDPBUSD` (u8 × s8 products summed in fours into i32 lanes, no saturation), `VPMADDUBSW`,
//! `VPMADDWD`, `VPERMB`, `VPERMW`, `VCVTPH2PS`.
use std::arch::x86_64::*;

use super::act::ActQ8;
use super::block::{BlockQ4_0, BlockQ8_0, QK};

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The activation side of the AVX2 Q4_0 kernel: per row and block, 16 i16 lanes `8·(a_2l + a_2l+1)`,
/// what `vpmaddubsw` of the unsigned nibbles (0..=15) with the activations overcounts against the
/// signed values (nibble − 8). Subtracting it from the pair sums gives each pair's exact
/// Σ (nibble − 8)·a (|pair| ≤ 2·8·127, no saturation: the unsigned pairs stay within 2·15·127).
pub(crate) struct Avx2Q4Act {
    corr: Vec<i16>,
}

impl Avx2Q4Act {
    pub(crate) fn new(act: &ActQ8) -> Self {
        let corr = act.qs.chunks_exact(2).map(|p| 8 * (p[0] as i16 + p[1] as i16)).collect();
        Self { corr }
    }
}

/// Blocks per group in the AVX2 kernels: their f16 weight scales are gathered and widened together.
const GROUP: usize = 8;

/// The f16 scales of `n` (≤ 8) consecutive blocks from `w` (block stride `stride` bytes, scale in the
/// first two bytes), gathered through general registers (the vector pipes are the busy ones) and
/// widened to f32 in one `vcvtph2ps`; lanes n..8 are 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scales_f16(w: *const u8, stride: usize, n: usize) -> __m256 {
    let d = |i: usize| if i < n { (w.add(i * stride) as *const u16).read_unaligned() as u64 } else { 0 };
    let lo = d(0) | d(1) << 16 | d(2) << 32 | d(3) << 48;
    let hi = d(4) | d(5) << 16 | d(6) << 32 | d(7) << 48;
    _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
}

/// AVX2 dot products of one weight row (`kb` blocks of Q4_0 when `Q4`, else Q8_0, from `w`) with the
/// quantised activation rows i0..i0 + R. Per block and row, the exact integer sum in eight i32 lanes:
/// - Q4_0: the 16 packed bytes broadcast to both 128-bit halves, shifted right by 0 (low half) and 4
///   (high half) and masked, give the 32 nibbles in element order; `vpmaddubsw` (unsigned nibble ×
///   signed activation) minus the precomputed offset correction [`Avx2Q4Act`], `vpmaddwd` by ones;
/// - Q8_0: |w| · (a with w's sign) by `vpmaddubsw` (|w| ≤ 128, |a| ≤ 127: pairs below 2¹⁵), `vpmaddwd`;
///
/// then converted to f32 and accumulated with one FMA by the block's scale `d_w·d_a`, broadcast from a
/// group's eight scales (weight scales gathered and widened once per group of eight blocks, shared by
/// the R rows; multiplied by the rows' activation scales in one vector product). Block b of a row goes
/// into accumulator b mod 4; the four are summed as (0 + 1) + (2 + 3), then across lanes. Each row's
/// arithmetic is the same for every R, so a row's result does not depend on the rows beside it.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` holds `kb` blocks of the format; activation rows
/// i0..i0 + R exist in `a` (with `kb` ≤ a.kb); `corr` is `a`'s [`Avx2Q4Act`] when `Q4`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2<const Q4: bool, const R: usize>(
    w: *const u8,
    kb: usize,
    a: &ActQ8,
    corr: *const i16,
    i0: usize,
) -> [f32; R] {
    let stride = if Q4 { BlockQ4_0::BYTES } else { BlockQ8_0::BYTES };
    let xq: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((i0 + r) * a.kp * QK));
    let xd: [*const f32; R] = std::array::from_fn(|r| a.d.as_ptr().add((i0 + r) * a.kp));
    let xc: [*const i16; R] = std::array::from_fn(|r| corr.wrapping_add((i0 + r) * a.kp * 16));
    let mut acc = [[_mm256_setzero_ps(); 4]; R];
    let mut b = 0;
    while b + GROUP <= kb {
        let dw = scales_f16(w.add(b * stride), stride, GROUP);
        let mut s = [[0f32; GROUP]; R];
        for r in 0..R {
            _mm256_storeu_ps(s[r].as_mut_ptr(), _mm256_mul_ps(dw, _mm256_loadu_ps(xd[r].add(b))));
        }
        for t in 0..GROUP {
            step::<Q4, R>(&mut acc, &s, t, w.add((b + t) * stride), &xq, &xc, b + t);
        }
        b += GROUP;
    }
    if b < kb {
        let n = kb - b;
        let dw = scales_f16(w.add(b * stride), stride, n);
        // Lanes 0..n: the row's remaining activation scales (masked lanes are not read).
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        let mut s = [[0f32; GROUP]; R];
        for r in 0..R {
            let dx = _mm256_maskload_ps(xd[r].add(b), mask);
            _mm256_storeu_ps(s[r].as_mut_ptr(), _mm256_mul_ps(dw, dx));
        }
        // t stays a constant in each unrolled step, so the accumulators stay in registers.
        for t in 0..GROUP {
            if t < n {
                step::<Q4, R>(&mut acc, &s, t, w.add((b + t) * stride), &xq, &xc, b + t);
            }
        }
    }
    let mut out = [0f32; R];
    for (o, acc) in out.iter_mut().zip(acc) {
        *o = hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    }
    out
}

/// Block b of one weight row (at `blk`) against activation rows `xq` (their offset corrections `xc`
/// for Q4_0), each row r's product scaled by `s[r][t]` (lane t of its group's scales) into
/// `acc[r][t % 4]`, which is `acc[r][b % 4]` as groups start at multiples of 8 (see [`dot_avx2`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn step<const Q4: bool, const R: usize>(
    acc: &mut [[__m256; 4]; R],
    s: &[[f32; GROUP]; R],
    t: usize,
    blk: *const u8,
    xq: &[*const i8; R],
    xc: &[*const i16; R],
    b: usize,
) {
    let ones = _mm256_set1_epi16(1);
    if Q4 {
        let raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(blk.add(2) as *const __m128i));
        let q = _mm256_and_si256(_mm256_srlv_epi64(raw, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
        for r in 0..R {
            let av = _mm256_loadu_si256(xq[r].add(b * QK) as *const __m256i);
            let c = _mm256_loadu_si256(xc[r].add(b * 16) as *const __m256i);
            let p32 = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(q, av), c), ones);
            acc[r][t % 4] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_broadcast_ss(&s[r][t]), acc[r][t % 4]);
        }
    } else {
        let wv = _mm256_loadu_si256(blk.add(2) as *const __m256i);
        let wabs = _mm256_sign_epi8(wv, wv);
        for r in 0..R {
            let av = _mm256_loadu_si256(xq[r].add(b * QK) as *const __m256i);
            let p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(av, wv)), ones);
            acc[r][t % 4] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_broadcast_ss(&s[r][t]), acc[r][t % 4]);
        }
    }
}

/// AVX2 `dot_q8_0` of one weight row `w` with activation rows i..i + R (see [`dot_avx2`]).
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` holds whole blocks of one row; activation rows
/// i..i + R exist.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q8_0_avx2<const R: usize>(w: &[BlockQ8_0], a: &ActQ8, i: usize) -> [f32; R] {
    dot_avx2::<false, R>(w.as_ptr() as *const u8, w.len(), a, std::ptr::null(), i)
}

/// AVX2 `dot_q4_0` of one weight row `w` with activation rows i..i + R (see [`dot_avx2`]); `corr` is
/// [`Avx2Q4Act::new`] of `a`.
///
/// # Safety
/// As [`dot_q8_0_avx2`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_0_avx2<const R: usize>(w: &[BlockQ4_0], a: &ActQ8, corr: &Avx2Q4Act, i: usize) -> [f32; R] {
    debug_assert_eq!(corr.corr.len(), a.qs.len() / 2);
    dot_avx2::<true, R>(w.as_ptr() as *const u8, w.len(), a, corr.corr.as_ptr(), i)
}

/// Activation data laid out for the AVX-512 kernels, per row and per pair of blocks (b, b + 1):
/// `scale` = [d_b ×8, d_(b+1) ×8] and `bias` = [−c·Σa_b, 0 ×7, −c·Σa_(b+1), 0 ×7], where c is the
/// weights' unsigned offset (128 for Q8_0 stored as value + 128, 8 for Q4_0 nibbles).
pub(crate) struct Avx512Act<'a> {
    act: &'a ActQ8,
    pairs: usize,
    scale: Vec<[f32; 16]>,
    bias: Vec<[i32; 16]>,
}

impl<'a> Avx512Act<'a> {
    pub(crate) fn new(act: &'a ActQ8, offset: i32) -> Self {
        let pairs = act.kp / 2;
        let n = act.m * pairs;
        let mut scale = vec![[0f32; 16]; n];
        let mut bias = vec![[0i32; 16]; n];
        for (p, (s, c)) in scale.iter_mut().zip(bias.iter_mut()).enumerate() {
            let (i, pp) = (p / pairs, p % pairs);
            for h in 0..2 {
                let b = i * act.kp + 2 * pp + h;
                s[8 * h..8 * h + 8].fill(act.d[b]);
                c[8 * h] = -offset * act.sum[b];
            }
        }
        Self { act, pairs, scale, bias }
    }
}

/// Words 0 and 17 of a 64-byte load at a Q8_0 block pair (the two scales), each repeated 8 times.
static IDX_D8: [u16; 32] =
    [0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17, 17, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// Words 0 and 9 of a 64-byte load at a Q4_0 block pair (the two scales), each repeated 8 times.
static IDX_D4: [u16; 32] =
    [0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// Bytes of a 64-byte load at a Q4_0 block pair: block b's 16 packed bytes twice, then block b + 1's.
static IDX_Q4: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 16 {
        t[i] = 2 + i as u8;
        t[16 + i] = 2 + i as u8;
        t[32 + i] = 20 + i as u8;
        t[48 + i] = 20 + i as u8;
        i += 1;
    }
    t
};

/// Block pair `p` of a Q8_0 row at `row`: (the 64 values + 128 as unsigned bytes, the scales
/// [d_b ×8, d_(b+1) ×8] in f32).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,f16c")]
unsafe fn q8_0_pair(row: *const u8, p: usize) -> (__m512i, __m512) {
    let wp = row.add(p * 2 * BlockQ8_0::BYTES);
    let raw = _mm512_loadu_si512(wp as *const __m512i);
    let lo = _mm256_loadu_si256(wp.add(2) as *const __m256i);
    let hi = _mm256_loadu_si256(wp.add(2 + BlockQ8_0::BYTES) as *const __m256i);
    let q = _mm512_xor_si512(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi), _mm512_set1_epi8(-128));
    let d = _mm512_permutexvar_epi16(_mm512_loadu_si512(IDX_D8.as_ptr() as *const __m512i), raw);
    (q, _mm512_cvtph_ps(_mm512_castsi512_si256(d)))
}

/// Block pair `p` of a Q4_0 row at `row`: (the 64 nibbles as bytes 0..=15 in element order, the scales).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,f16c")]
unsafe fn q4_0_pair(row: *const u8, p: usize) -> (__m512i, __m512) {
    let wp = row.add(p * 2 * BlockQ4_0::BYTES);
    let raw = _mm512_loadu_si512(wp as *const __m512i);
    let q = _mm512_permutexvar_epi8(_mm512_loadu_si512(IDX_Q4.as_ptr() as *const __m512i), raw);
    let q = _mm512_and_si512(_mm512_srlv_epi64(q, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)), _mm512_set1_epi8(0x0F));
    let d = _mm512_permutexvar_epi16(_mm512_loadu_si512(IDX_D4.as_ptr() as *const __m512i), raw);
    (q, _mm512_cvtph_ps(_mm512_castsi512_si256(d)))
}

macro_rules! avx512_dot {
    ($name:ident, $pair:ident) => {
        /// Dot products of one weight row (starting at `row`, `a.pairs` block pairs; with an odd block
        /// count the last pair's second block is the next row's first, or padding, and meets a zero
        /// activation block) with activation rows `i0..i0 + R`.
        ///
        /// # Safety
        /// AVX512F/BW/VL/VNNI/VBMI, FMA and F16C must be available; `row` must be readable for
        /// `a.pairs`·2 blocks + 64 bytes (the matrix's padding blocks); rows i0..i0 + R of `a` exist.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,f16c,fma")]
        pub(crate) unsafe fn $name<const R: usize>(row: *const u8, a: &Avx512Act, i0: usize) -> [f32; R] {
            let pairs = a.pairs;
            let qs = a.act.qs.as_ptr().add(i0 * pairs * 64);
            let sc = a.scale.as_ptr().add(i0 * pairs) as *const f32;
            let bias = a.bias.as_ptr().add(i0 * pairs) as *const i32;
            // Pair p into acc[r]: one vpdpbusd per activation row, the correction preloaded.
            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn step<const R: usize>(
                acc: &mut [__m512; R],
                q: __m512i,
                dw: __m512,
                qs: *const i8,
                sc: *const f32,
                bias: *const i32,
                pairs: usize,
                p: usize,
            ) {
                for (r, acc) in acc.iter_mut().enumerate() {
                    let o = r * pairs + p;
                    let s = _mm512_dpbusd_epi32(
                        _mm512_loadu_si512(bias.add(o * 16) as *const __m512i),
                        q,
                        _mm512_loadu_si512(qs.add(o * 64) as *const __m512i),
                    );
                    let scale = _mm512_mul_ps(dw, _mm512_loadu_ps(sc.add(o * 16)));
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, *acc);
                }
            }
            // Two accumulator sets (even and odd pairs) to hide the FMA latency.
            let mut acc0 = [_mm512_setzero_ps(); R];
            let mut acc1 = [_mm512_setzero_ps(); R];
            let mut p = 0;
            while p + 1 < pairs {
                let (q, dw) = $pair(row, p);
                step(&mut acc0, q, dw, qs, sc, bias, pairs, p);
                let (q, dw) = $pair(row, p + 1);
                step(&mut acc1, q, dw, qs, sc, bias, pairs, p + 1);
                p += 2;
            }
            if p < pairs {
                let (q, dw) = $pair(row, p);
                step(&mut acc0, q, dw, qs, sc, bias, pairs, p);
            }
            let mut out = [0f32; R];
            for r in 0..R {
                out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));
            }
            out
        }
    };
}

avx512_dot!(dot_q8_0_avx512, q8_0_pair);
avx512_dot!(dot_q4_0_avx512, q4_0_pair);

/// One block of `quantize_row_q8_0_ref` with AVX-512F, bit-identical to the scalar rule: the same
/// f32 `amax`, `d = amax / 127`, `id = 1/d`, products `x·id`, and half-away-from-zero rounding (the
/// truncated magnitude, plus one where the exact remainder is at least one half, the sign restored).
/// Returns (the f16 scale as f32, Σ of the quantised values).
///
/// # Safety
/// AVX-512F must be available.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn quantize_block_q8_0_avx512(x: &[f32; QK], q: &mut [i8; QK]) -> (f32, i32) {
    let v = [_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x.as_ptr().add(16))];
    let sign = _mm512_set1_ps(-0.0);
    let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v[0]), _mm512_andnot_ps(sign, v[1])));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let idv = _mm512_set1_ps(id);
    let mut sum = _mm512_setzero_si512();
    for (h, v) in v.iter().enumerate() {
        let p = _mm512_mul_ps(*v, idv);
        let a = _mm512_andnot_ps(sign, p);
        let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(a);
        let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_sub_ps(a, t), _mm512_set1_ps(0.5));
        let r = _mm512_mask_add_ps(t, up, t, _mm512_set1_ps(1.0));
        let r = _mm512_or_ps(r, _mm512_and_ps(p, sign));
        let i = _mm512_cvttps_epi32(r);
        sum = _mm512_add_epi32(sum, i);
        _mm_storeu_si128(q.as_mut_ptr().add(16 * h) as *mut __m128i, _mm512_cvtepi32_epi8(i));
    }
    (half::f16::from_f32(d).to_f32(), _mm512_reduce_add_epi32(sum))
}

/// The activation side of the interleaved AVX-512 kernel ([`group_x16`]): per row and block,
/// −c·Σa, the preloaded correction for the weights' unsigned offset c (128 for Q8_0 stored as
/// value + 128, 8 for Q4_0 nibbles).
pub(crate) struct X16Act<'a> {
    act: &'a ActQ8,
    corr: Vec<i32>,
}

impl<'a> X16Act<'a> {
    pub(crate) fn new(act: &'a ActQ8, offset: i32) -> Self {
        Self { act, corr: act.sum.iter().map(|s| -offset * s).collect() }
    }
}

/// Block column b of a group (its values at `wq`, scales at `wd`) into `acc[r]` for activation rows
/// `xq[r]` (their scales `xd[r]`, corrections `xc[r]`): per row, two i32 accumulators (the correction
/// preloaded into one) over the 8 four-byte slices of the block, each slice one `vpdpbusd` of the
/// 16 rows' unsigned weights with the slice's 4 activations broadcast; their sum converted to f32
/// and accumulated by one FMA with the 16 scales d_w·d_x.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn x16_step<const Q4: bool, const R: usize>(
    acc: &mut [__m512; R],
    wq: *const u8,
    wd: *const u16,
    xq: &[*const u8; R],
    xd: &[*const f32; R],
    xc: &[*const i32; R],
    b: usize,
) {
    let dw = _mm512_cvtph_ps(_mm256_load_si256(wd as *const __m256i));
    let mut w = [_mm512_setzero_si512(); 8];
    if Q4 {
        let m = _mm512_set1_epi8(0x0F);
        for c in 0..4 {
            let l = _mm512_load_si512(wq.add(64 * c) as *const __m512i);
            w[c] = _mm512_and_si512(l, m);
            w[4 + c] = _mm512_and_si512(_mm512_srli_epi16::<4>(l), m);
        }
    } else {
        for (t, w) in w.iter_mut().enumerate() {
            *w = _mm512_load_si512(wq.add(64 * t) as *const __m512i);
        }
    }
    for r in 0..R {
        let x = xq[r].add(b * QK) as *const i32;
        let mut s0 = _mm512_set1_epi32(*xc[r].add(b));
        let mut s1 = _mm512_setzero_si512();
        for t in (0..8).step_by(2) {
            s0 = _mm512_dpbusd_epi32(s0, w[t], _mm512_set1_epi32(x.add(t).read_unaligned()));
            s1 = _mm512_dpbusd_epi32(s1, w[t + 1], _mm512_set1_epi32(x.add(t + 1).read_unaligned()));
        }
        let scale = _mm512_mul_ps(dw, _mm512_set1_ps(*xd[r].add(b)));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), scale, acc[r]);
    }
}

/// The 16 dot products of one interleaved group (`kb` block columns of values at `qs`, scales at
/// `d`, see `QuantLayout::Interleaved16`) with each of activation rows i0..i0 + R: lane l of
/// the result r is output row l of the group for activation row i0 + r. Per lane the arithmetic of
/// GGML's `ggml_vec_dot_q8_0_q8_0` / `ggml_vec_dot_q4_0_q8_0`: the exact i32 block sum, times
/// d_w·d_x in f32, accumulated over the blocks, even blocks and odd blocks in two accumulators
/// added at the end (no horizontal sum). Each row's arithmetic is the same for every R. The lines
/// `prefetch` bytes ahead of each block column are prefetched (the next columns, then the next group).
///
/// # Safety
/// AVX512F/BW/VNNI, FMA and F16C must be available; `qs` holds kb·(8 or 4) 64-byte aligned lines and
/// `d` kb 32-byte aligned scale vectors; rows i0..i0 + R of `a` exist.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
unsafe fn dot_x16<const Q4: bool, const R: usize>(
    qs: *const u8,
    d: *const u16,
    kb: usize,
    a: &X16Act,
    i0: usize,
    prefetch: usize,
) -> [__m512; R] {
    let kp = a.act.kp;
    let xq: [*const u8; R] = std::array::from_fn(|r| a.act.qs.as_ptr().add((i0 + r) * kp * QK) as *const u8);
    let xd: [*const f32; R] = std::array::from_fn(|r| a.act.d.as_ptr().add((i0 + r) * kp));
    let xc: [*const i32; R] = std::array::from_fn(|r| a.corr.as_ptr().add((i0 + r) * kp));
    let line_bytes = if Q4 { 4 * 64 } else { 8 * 64 };
    let mut acc0 = [_mm512_setzero_ps(); R];
    let mut acc1 = [_mm512_setzero_ps(); R];
    let pf = |b: usize| {
        for l in (0..line_bytes).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(qs.wrapping_add(b * line_bytes + prefetch + l) as *const i8);
        }
        if b.is_multiple_of(2) {
            _mm_prefetch::<_MM_HINT_T0>(d.wrapping_add(b * 16 + prefetch / 16) as *const i8);
        }
    };
    let mut b = 0;
    while b + 2 <= kb {
        pf(b);
        x16_step::<Q4, R>(&mut acc0, qs.add(b * line_bytes), d.add(b * 16), &xq, &xd, &xc, b);
        pf(b + 1);
        x16_step::<Q4, R>(&mut acc1, qs.add((b + 1) * line_bytes), d.add((b + 1) * 16), &xq, &xd, &xc, b + 1);
        b += 2;
    }
    if b < kb {
        pf(b);
        x16_step::<Q4, R>(&mut acc0, qs.add(b * line_bytes), d.add(b * 16), &xq, &xd, &xc, b);
    }
    std::array::from_fn(|r| _mm512_add_ps(acc0[r], acc1[r]))
}

/// One interleaved group against activation rows c0..c1 (four at a time through [`dot_x16`], then
/// one by one): lane l of row i goes to `y[i·stride + l]` for l < `nr` (the group's real rows).
///
/// # Safety
/// As [`dot_x16`] for rows c0..c1; `y[i·stride + l]` is writable for those rows and l < nr ≤ 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn group_x16<const Q4: bool>(
    qs: *const u8,
    d: *const u16,
    kb: usize,
    a: &X16Act,
    c0: usize,
    c1: usize,
    y: *mut f32,
    stride: usize,
    nr: usize,
    prefetch: usize,
) {
    let mask: __mmask16 = if nr >= 16 { 0xFFFF } else { (1u16 << nr) - 1 };
    let mut i = c0;
    while i + 4 <= c1 {
        for (r, v) in dot_x16::<Q4, 4>(qs, d, kb, a, i, prefetch).into_iter().enumerate() {
            _mm512_mask_storeu_ps(y.add((i + r) * stride), mask, v);
        }
        i += 4;
    }
    while i < c1 {
        _mm512_mask_storeu_ps(y.add(i * stride), mask, dot_x16::<Q4, 1>(qs, d, kb, a, i, prefetch)[0]);
        i += 1;
    }
}
