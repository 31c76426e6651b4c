//! Portable dot products of one weight row with one quantised activation row: per block the exact
//! integer sum, then `sumf += sumi·(d_w·d_x)` in f32, block by block (GGML's generic
//! `ggml_vec_dot_q8_0_q8_0` and `ggml_vec_dot_q4_0_q8_0`).
use super::act::ActQ8;
use super::block::{BlockQ4_0, BlockQ8_0, QK};

/// Σ over the blocks of `w` (one row, kb blocks) · activation row `i`.
pub(crate) fn dot_q8_0(w: &[BlockQ8_0], a: &ActQ8, i: usize) -> f32 {
    let mut sumf = 0f32;
    for (b, blk) in w.iter().enumerate() {
        let o = (i * a.kp + b) * QK;
        let xq = &a.qs[o..o + QK];
        let sumi: i32 = blk.qs.iter().zip(xq).map(|(&p, &q)| p as i32 * q as i32).sum();
        sumf += sumi as f32 * (blk.d.to_f32() * a.d[i * a.kp + b]);
    }
    sumf
}

/// As [`dot_q8_0`] for Q4_0 weights: element j and 16 + j from byte j's low and high nibble, minus 8.
pub(crate) fn dot_q4_0(w: &[BlockQ4_0], a: &ActQ8, i: usize) -> f32 {
    let mut sumf = 0f32;
    for (b, blk) in w.iter().enumerate() {
        let o = (i * a.kp + b) * QK;
        let xq = &a.qs[o..o + QK];
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            let v0 = (blk.qs[j] & 0x0F) as i32 - 8;
            let v1 = (blk.qs[j] >> 4) as i32 - 8;
            sumi += v0 * xq[j] as i32 + v1 * xq[j + QK / 2] as i32;
        }
        sumf += sumi as f32 * (blk.d.to_f32() * a.d[i * a.kp + b]);
    }
    sumf
}
