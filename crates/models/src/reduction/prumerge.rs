//! PruMerge+ (42Shawn/LLaVA-PruMerge @ 097c0411, `llava/model/multimodal_encoder/clip_encoder.py`,
//! `token_prune_merge_advanced_plus` with `if_adaptive=True`, `outlier_dectection`, `complement_idx`).
//!
//! Score: the CLS row of a single-head attention over the full width d, `softmax(q kᵀ · d^-½)`, of the
//! block after the select layer (the reference hooks `q_proj`/`k_proj` of `layers[23]`, which reads
//! LLaVA's select hidden state −2) — [`crate::vision::SingleHeadAttention`]. Over the N patches:
//!
//! 1. **prune**: the patches whose score exceeds Q3 + 1.5·IQR (numpy's linear percentiles), as a
//!    ratio r of N; the top ⌊N·r⌋ by score, largest first; then every patch at the stride
//!    ⌊⌊1/r⌋ / 3⌋ through `0..N−1` (the reference's `arange(0, 575, …)`) that is not already kept, in order.
//! 2. **merge**: each kept patch adds the score-weighted sum of the 32 patches (kept or not, itself
//!    excluded) whose keys are most cosine-similar to its own;
//! 3. one more token: the score-weighted sum of all patches not kept.
//!
//! Where the reference is undefined (no outlier: 1/0; r > 1/3: a zero stride) this keeps the top patch
//! (r = 1/N) and strides by at least 1; with fewer than 32 other patches it merges all of them.
//!
//! The **fixed-V** variant keeps the top V − 1 patches by the same score (no spatial samples) and merges
//! as above, so that V (kept + the one extra token) can be chosen like the other methods'.
use super::{stack, top_k, values3, Reduced};
use crate::vision::SingleHeadAttention;
use crate::{Error, Result};
use candle_core::Tensor;

/// Patches merged into each kept patch (the reference's `k=int(32)`).
pub const CLUSTER: usize = 32;

/// How many patches PruMerge+ keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The reference: IQR outliers plus spatially uniform samples; V depends on the image.
    Adaptive,
    /// V − 1 top patches + the one extra token = V.
    Fixed(usize),
}

/// numpy's default (linear) percentile of `v` (unsorted), q in [0, 100].
fn percentile(v: &[f32], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    s.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (s.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    let hi = (lo + 1).min(s.len() - 1);
    s[lo] + (s[hi] - s[lo]) * frac
}

/// The reference's kept patch indices for scores `a` (N), in its order.
fn adaptive_indices(a: &[f32]) -> Vec<usize> {
    let n = a.len();
    let (q1, q3) = (percentile(a, 25.0), percentile(a, 75.0));
    let upper = q3 + 1.5 * (q3 - q1);
    let outliers = a.iter().filter(|&&x| x as f64 > upper).count();
    let ratio = (outliers as f64 / n as f64).max(1.0 / n as f64);
    let mut idx = top_k(a, (n as f64 * ratio) as usize);
    let stride = (((1.0 / ratio) as usize) / 3).max(1);
    let samples: Vec<usize> = (0..n.saturating_sub(1)).step_by(stride).filter(|j| !idx.contains(j)).collect();
    idx.extend(samples);
    idx
}

/// `hidden` (B, N + 1, d) the select hidden state with CLS; `score` of the next block. Returns
/// (B, kept + 1, d): the merged kept patches in the reference's order, then the extra token; `kept` =
/// the kept patch indices (0-based, CLS excluded) in that order.
/// Errors: V = 0 or V > N for [`Keep::Fixed`], shapes that do not fit, a batch whose sequences keep
/// different counts (adaptive) ([`Error::Invalid`]).
pub fn reduce(hidden: &Tensor, score: &SingleHeadAttention, keep: Keep) -> Result<Reduced> {
    let (b, t, d, hv) = values3(hidden)?;
    let n = t - 1;
    if score.cls_attention.dims() != [b, t] || score.keys.dims() != [b, t, d] {
        return Err(Error::Invalid(format!(
            "PruMerge+: scores {:?} / keys {:?} do not fit hidden states {:?}",
            score.cls_attention.dims(),
            score.keys.dims(),
            hidden.dims()
        )));
    }
    if let Keep::Fixed(v) = keep {
        if v == 0 || v > n {
            return Err(Error::Invalid(format!("PruMerge+ (fixed V): V = {v} is not in 1..={n}")));
        }
    }
    let att = score.cls_attention.flatten_all()?.to_vec1::<f32>()?;
    let (_, _, _, kv) = values3(&score.keys)?;
    let (mut rows, mut kept) = (Vec::with_capacity(b), Vec::with_capacity(b));
    for s in 0..b {
        let a = &att[s * t + 1..(s + 1) * t];
        let x = |j: usize| &hv[(s * t + j + 1) * d..(s * t + j + 2) * d];
        // F.normalize: x / max(‖x‖, 1e-12).
        let keys: Vec<Vec<f32>> = (0..n)
            .map(|j| {
                let k = &kv[(s * t + j + 1) * d..(s * t + j + 2) * d];
                let norm = k.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                k.iter().map(|v| v / norm).collect()
            })
            .collect();
        let idx = match keep {
            Keep::Adaptive => adaptive_indices(a),
            Keep::Fixed(v) => top_k(a, v - 1),
        };
        let mut is_kept = vec![false; n];
        idx.iter().for_each(|&j| is_kept[j] = true);
        let compl: Vec<usize> = (0..n).filter(|&j| !is_kept[j]).collect();
        let mut out = Vec::with_capacity((idx.len() + 1) * d);
        for (i, &j) in idx.iter().enumerate() {
            // The others, in the reference's order: kept before i, kept after i, then the complement.
            let rest: Vec<usize> = idx[..i].iter().chain(&idx[i + 1..]).chain(&compl).copied().collect();
            let sim: Vec<f32> = rest.iter().map(|&r| keys[j].iter().zip(&keys[r]).map(|(p, q)| p * q).sum()).collect();
            let mut merged = x(j).to_vec();
            let mut acc = vec![0f32; d];
            for c in top_k(&sim, CLUSTER.min(rest.len())) {
                let (r, w) = (rest[c], a[rest[c]]);
                acc.iter_mut().zip(x(r)).for_each(|(m, &v)| *m += v * w);
            }
            merged.iter_mut().zip(&acc).for_each(|(m, &v)| *m += v);
            out.extend(merged);
        }
        let mut extra = vec![0f32; d];
        for &r in &compl {
            extra.iter_mut().zip(x(r)).for_each(|(m, &v)| *m += v * a[r]);
        }
        out.extend(extra);
        rows.push(out);
        kept.push(idx);
    }
    Ok(Reduced { tokens: stack(rows, d, hidden)?, kept })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// numpy: `np.percentile([4, 1, 3, 2], 25) == 1.75`, `np.percentile([4, 1, 3, 2], 75) == 3.25`.
    #[test]
    fn percentile_is_numpys_linear_default() {
        assert!((percentile(&[4.0, 1.0, 3.0, 2.0], 25.0) - 1.75).abs() < 1e-12);
        assert!((percentile(&[4.0, 1.0, 3.0, 2.0], 75.0) - 3.25).abs() < 1e-12);
    }

    /// One clear outlier among 16 scores: r = 1/16, stride ⌊16/3⌋ = 5 through 0..15, the outlier first.
    #[test]
    fn adaptive_keeps_outliers_then_strided_samples() {
        let mut a = vec![0.01f32; 16];
        a[7] = 0.5;
        a.iter_mut().enumerate().for_each(|(i, x)| *x += i as f32 * 1e-4);
        assert_eq!(adaptive_indices(&a), vec![7, 0, 5, 10]);
    }
}
