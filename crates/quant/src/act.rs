//! The activation side of a quantised product: rows of `x` quantised to Q8_0 on the fly, as GGML's
//! CPU backend does before `ggml_vec_dot_q8_0_q8_0` / `ggml_vec_dot_q4_0_q8_0` (its `vec_dot_type` for
//! both formats is Q8_0). Quantisation is `quantize_row_q8_0_ref`'s, bit for bit, on every path (AVX-512F when this CPU
//! has it and `VLM_QUANT_SCALAR_ACT` is unset, else the scalar reference).
use super::block::{quantize_block_q8_0, BlockQ8_0, QK};
use half::f16;
use rayon::prelude::*;

/// `m` rows of `k` activations as Q8_0 blocks in structure-of-arrays form, each row padded to an
/// even number of blocks (`kp`) with zero blocks (scale 0, sum 0) so the kernels can take blocks in
/// pairs.
#[derive(Debug, Clone)]
pub struct ActQ8 {
    pub(crate) m: usize,
    pub(crate) kb: usize,
    /// Blocks per row after padding (kb rounded up to even).
    pub(crate) kp: usize,
    /// (m, kp·32) quantised values.
    pub(crate) qs: Vec<i8>,
    /// (m, kp) block scales: the f16 scale widened to f32.
    pub(crate) d: Vec<f32>,
    /// (m, kp) sums of each block's 32 values.
    pub(crate) sum: Vec<i32>,
}

impl ActQ8 {
    /// Quantises `x` ((m, k) row-major, k a multiple of 32) row by row.
    pub fn quantize(x: &[f32], m: usize, k: usize) -> Self {
        assert!(k.is_multiple_of(QK) && x.len() == m * k, "ActQ8::quantize: shape");
        let kb = k / QK;
        let kp = kb.next_multiple_of(2);
        let mut qs = vec![0i8; m * kp * QK];
        let mut d = vec![0f32; m * kp];
        let mut sum = vec![0i32; m * kp];
        let row = |(i, ((q, d), s)): RowParts| {
            for b in 0..kb {
                let src: &[f32; QK] = x[i * k + b * QK..i * k + (b + 1) * QK].try_into().expect("32 values");
                let dst: &mut [i8; QK] = (&mut q[b * QK..(b + 1) * QK]).try_into().expect("32 values");
                (d[b], s[b]) = quantize_block(src, dst);
            }
        };
        let rows = qs.chunks_mut(kp * QK).zip(d.chunks_mut(kp)).zip(sum.chunks_mut(kp)).enumerate();
        if m >= 8 {
            // Prefill: rows on rayon's pool (m·k values; 626 × 2816 takes milliseconds on one core).
            rows.par_bridge().for_each(row);
        } else {
            rows.for_each(row);
        }
        Self { m, kb, kp, qs, d, sum }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// The blocks of row `i` in GGML's `block_q8_0` form (for comparison with GGML's quantisation).
    pub fn blocks(&self, i: usize) -> Vec<BlockQ8_0> {
        (0..self.kb)
            .map(|b| {
                let o = (i * self.kp + b) * QK;
                BlockQ8_0 { d: f16::from_f32(self.d[i * self.kp + b]), qs: self.qs[o..o + QK].try_into().expect("32") }
            })
            .collect()
    }
}

/// Row i's quantised values, scales and sums, as the quantisation loop receives them.
type RowParts<'a> = (usize, ((&'a mut [i8], &'a mut [f32]), &'a mut [i32]));

/// One block of `quantize_row_q8_0_ref` (AVX-512 when available, else [`quantize_block_q8_0`]);
/// returns (the f16 scale as f32, Σ of the quantised values).
#[inline]
fn quantize_block(x: &[f32; QK], q: &mut [i8; QK]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if avx512f() {
        // SAFETY: AVX-512F detected.
        return unsafe { super::x86::quantize_block_q8_0_avx512(x, q) };
    }
    let b = quantize_block_q8_0(x);
    *q = b.qs;
    (b.d.to_f32(), b.qs.iter().map(|&v| v as i32).sum())
}

#[cfg(target_arch = "x86_64")]
fn avx512f() -> bool {
    static F: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *F.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f") && std::env::var_os("VLM_QUANT_SCALAR_ACT").is_none()
    })
}
