//! x86-64 dot-product kernels: AVX2 (one block per step) and AVX-512 VNNI (two blocks per step, up to
//! four activation rows per weight row).
//!
//! Sources for the instructions: Intel® 64 and IA-32 Architectures Software Developer's Manual,
//! `VPDPBUSD` (u8 × s8 products summed in fours into i32 lanes, no saturation), `VPMADDUBSW`,
//! `VPMADDWD`, `VPERMB`, `VPERMW`, `VCVTPH2PS`.
use std::arch::x86_64::*;

use super::act::ActQ8;
use super::block::{BlockQ4_0, BlockQ8_0, QK};

/// f16 bits → f32 with F16C.
#[inline]
#[target_feature(enable = "f16c")]
fn f16_to_f32(bits: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// AVX2 `dot_q8_0`: per block, |w| (unsigned) · (a with w's sign) by `vpmaddubsw` (|w| ≤ 128 and
/// |a| ≤ 127, so the pairwise i16 sums stay below 2¹⁵), widened by `vpmaddwd`, scaled in f32.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` holds whole blocks of one row; activation row `i` exists.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q8_0_avx2(w: &[BlockQ8_0], a: &ActQ8, i: usize) -> f32 {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 2];
    let xq = a.qs.as_ptr().add(i * a.kp * QK);
    let xd = &a.d[i * a.kp..];
    for (b2, pair) in w.chunks(2).enumerate() {
        for (h, (blk, acc)) in pair.iter().zip(acc.iter_mut()).enumerate() {
            let b = 2 * b2 + h;
            let wv = _mm256_loadu_si256(blk.qs.as_ptr() as *const __m256i);
            let av = _mm256_loadu_si256(xq.add(b * QK) as *const __m256i);
            let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
            let p32 = _mm256_madd_epi16(p16, ones);
            let s = _mm256_set1_ps(f16_to_f32(blk.d.to_bits()) * xd[b]);
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), s, *acc);
        }
    }
    hsum256(_mm256_add_ps(acc[0], acc[1]))
}

/// AVX2 `dot_q4_0`: per block, the 16 bytes split into low nibbles (elements 0..16) and high nibbles
/// (16..32), unsigned nibble · a by `vpmaddubsw`, widened, minus 8·Σa (the nibble offset), scaled.
///
/// # Safety
/// As [`dot_q8_0_avx2`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_0_avx2(w: &[BlockQ4_0], a: &ActQ8, i: usize) -> f32 {
    let ones = _mm256_set1_epi16(1);
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); 2];
    let xq = a.qs.as_ptr().add(i * a.kp * QK);
    let xd = &a.d[i * a.kp..];
    let xs = &a.sum[i * a.kp..];
    for (b2, pair) in w.chunks(2).enumerate() {
        for (h, (blk, acc)) in pair.iter().zip(acc.iter_mut()).enumerate() {
            let b = 2 * b2 + h;
            let t = _mm_loadu_si128(blk.qs.as_ptr() as *const __m128i);
            let q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(t), t), low);
            let av = _mm256_loadu_si256(xq.add(b * QK) as *const __m256i);
            let p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), ones);
            let p32 = _mm256_add_epi32(p32, _mm256_setr_epi32(-8 * xs[b], 0, 0, 0, 0, 0, 0, 0));
            let s = _mm256_set1_ps(f16_to_f32(blk.d.to_bits()) * xd[b]);
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), s, *acc);
        }
    }
    hsum256(_mm256_add_ps(acc[0], acc[1]))
}

/// [`dot_q8_0_avx2`] of activation rows i..i + R against one weight row: each weight block is loaded
/// and its sign split once for the R rows (batched decode, short prefills); every row's sum is
/// accumulated exactly as the one-row kernel accumulates it, so the results are identical.
///
/// # Safety
/// As [`dot_q8_0_avx2`], for activation rows i..i + R.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q8_0_avx2_rows<const R: usize>(w: &[BlockQ8_0], a: &ActQ8, i: usize) -> [f32; R] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for (b2, pair) in w.chunks(2).enumerate() {
        for (h, blk) in pair.iter().enumerate() {
            let b = 2 * b2 + h;
            let wv = _mm256_loadu_si256(blk.qs.as_ptr() as *const __m256i);
            let wabs = _mm256_sign_epi8(wv, wv);
            let dw = f16_to_f32(blk.d.to_bits());
            for (r, acc) in acc.iter_mut().enumerate() {
                let row = i + r;
                let av = _mm256_loadu_si256(a.qs.as_ptr().add((row * a.kp + b) * QK) as *const __m256i);
                let p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(av, wv)), ones);
                let s = _mm256_set1_ps(dw * a.d[row * a.kp + b]);
                acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), s, acc[h]);
            }
        }
    }
    let mut out = [0f32; R];
    for (o, acc) in out.iter_mut().zip(acc) {
        *o = hsum256(_mm256_add_ps(acc[0], acc[1]));
    }
    out
}

/// [`dot_q4_0_avx2`] of activation rows i..i + R against one weight row, each block's nibbles
/// unpacked once for the R rows; per-row accumulation as in the one-row kernel (identical results).
///
/// # Safety
/// As [`dot_q4_0_avx2`], for activation rows i..i + R.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_0_avx2_rows<const R: usize>(w: &[BlockQ4_0], a: &ActQ8, i: usize) -> [f32; R] {
    let ones = _mm256_set1_epi16(1);
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for (b2, pair) in w.chunks(2).enumerate() {
        for (h, blk) in pair.iter().enumerate() {
            let b = 2 * b2 + h;
            let t = _mm_loadu_si128(blk.qs.as_ptr() as *const __m128i);
            let q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(t), t), low);
            let dw = f16_to_f32(blk.d.to_bits());
            for (r, acc) in acc.iter_mut().enumerate() {
                let row = i + r;
                let av = _mm256_loadu_si256(a.qs.as_ptr().add((row * a.kp + b) * QK) as *const __m256i);
                let p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), ones);
                let p32 = _mm256_add_epi32(p32, _mm256_setr_epi32(-8 * a.sum[row * a.kp + b], 0, 0, 0, 0, 0, 0, 0));
                let s = _mm256_set1_ps(dw * a.d[row * a.kp + b]);
                acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), s, acc[h]);
            }
        }
    }
    let mut out = [0f32; R];
    for (o, acc) in out.iter_mut().zip(acc) {
        *o = hsum256(_mm256_add_ps(acc[0], acc[1]));
    }
    out
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
