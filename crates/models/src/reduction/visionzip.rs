//! VisionZip (dvlab-research/VisionZip @ 3151f6df, `visionzip/clip_encoder.py`,
//! `CLIPVisionTower_VisionZip.forward`; `visionzip/utils.py`, `CLIPAttention_forward`;
//! `visionzip/main.py`, `visionzip()`), on the select layer (LLaVA's −2):
//!
//! 1. **dominant**: CLS plus the `dominant − 1` patches with the highest CLS→patch attention summed over
//!    heads (`main.py` passes `dominant − 1` to the encoder, which adds CLS), emitted in token order;
//! 2. **contextual**: the remaining tokens' keys, averaged over heads and L2-normalised; `contextual`
//!    targets at a uniform stride `max(1, R / contextual)` through the R remaining tokens; every other
//!    remaining token goes to its most cosine-similar target; each target emits its own hidden state
//!    plus the mean of those assigned to it.
//!
//! Output (B, dominant + contextual, d). The reference's settings are 54 + 10 (V = 64), 108 + 20 and
//! 162 + 30; [`Split::for_visual_tokens`] keeps that 10 : 54 ratio for any V.
use super::{stack, top_k, values3, Reduced};
use crate::vision::AttentionMaps;
use crate::{Error, Result};
use candle_core::Tensor;

/// How V splits into dominant (CLS included) and contextual tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Dominant tokens, CLS included (VisionZip's `dominant` argument).
    pub dominant: usize,
    /// Contextual (merged) tokens.
    pub contextual: usize,
}

impl Split {
    /// contextual = ⌊10·V / 64⌋, dominant = V − contextual: 54 + 10 at 64, 108 + 20 at 128, 162 + 30 at
    /// 192 (the reference's settings), 14 + 2 at 16, V + 0 below 7 (V = 1 keeps CLS alone).
    pub fn for_visual_tokens(v: usize) -> Self {
        let contextual = 10 * v / 64;
        Self { dominant: v - contextual, contextual }
    }
}

/// `hidden` (B, N + 1, d) the select hidden state with CLS; `maps` of the same block. Returns V =
/// dominant + contextual tokens (B, V, d); `kept` = the dominant token indices in hidden-state
/// numbering (0 = CLS, patch j = j + 1), ascending.
/// Errors: dominant = 0, V > N, maps that do not fit `hidden` ([`Error::Invalid`]).
pub fn reduce(hidden: &Tensor, maps: &AttentionMaps, split: Split) -> Result<Reduced> {
    let (b, t, d, hv) = values3(hidden)?;
    let (mb, heads, mt) = maps.cls_attention.dims3()?;
    let (kb, kh, kt, hd) = maps.keys.dims4()?;
    if (mb, mt, kb, kh, kt) != (b, t, b, heads, t) {
        return Err(Error::Invalid(format!(
            "VisionZip: attention maps {:?} / keys {:?} do not fit hidden states {:?}",
            maps.cls_attention.dims(),
            maps.keys.dims(),
            hidden.dims()
        )));
    }
    let Split { dominant, contextual } = split;
    if dominant == 0 || dominant + contextual > t - 1 {
        return Err(Error::Invalid(format!(
            "VisionZip: {dominant} dominant + {contextual} contextual tokens do not fit {} patches (CLS is one of \
             the dominant)",
            t - 1
        )));
    }
    let att = maps.cls_attention.flatten_all()?.to_vec1::<f32>()?;
    let keys = maps.keys.flatten_all()?.to_vec1::<f32>()?;
    let (mut rows, mut kept) = (Vec::with_capacity(b), Vec::with_capacity(b));
    for s in 0..b {
        let row = |i: usize| &hv[(s * t + i) * d..(s * t + i + 1) * d];
        // CLS→patch attention summed over heads (f32, head by head as torch's sum).
        let score: Vec<f32> = (1..t).map(|j| (0..heads).map(|h| att[(s * heads + h) * t + j]).sum()).collect();
        let mut dom: Vec<usize> =
            std::iter::once(0).chain(top_k(&score, dominant - 1).into_iter().map(|j| j + 1)).collect();
        dom.sort_unstable();
        let mut out: Vec<f32> = dom.iter().flat_map(|&i| row(i).iter().copied()).collect();
        if contextual > 0 {
            let mut is_dom = vec![false; t];
            dom.iter().for_each(|&i| is_dom[i] = true);
            let rest: Vec<usize> = (0..t).filter(|&i| !is_dom[i]).collect();
            // Head-averaged keys, L2-normalised.
            let metric: Vec<Vec<f32>> = rest
                .iter()
                .map(|&i| {
                    let mut m: Vec<f32> = (0..hd)
                        .map(|c| {
                            (0..heads).map(|h| keys[((s * heads + h) * t + i) * hd + c]).sum::<f32>() / heads as f32
                        })
                        .collect();
                    let norm = m.iter().map(|x| x * x).sum::<f32>().sqrt();
                    m.iter_mut().for_each(|x| *x /= norm);
                    m
                })
                .collect();
            let step = rest.len().checked_div(contextual).unwrap_or(1).max(1);
            let targets: Vec<usize> = (0..rest.len()).step_by(step).take(contextual).collect();
            let mut sums = vec![vec![0f32; d]; contextual];
            let mut counts = vec![0usize; contextual];
            for (p, m) in metric.iter().enumerate() {
                if targets.contains(&p) {
                    continue;
                }
                // argmax of the cosine similarity (first maximum, as torch.argmax).
                let sim = |q: usize| m.iter().zip(&metric[targets[q]]).map(|(a, b)| a * b).sum::<f32>();
                let best = (1..contextual).fold(0, |best, q| if sim(q) > sim(best) { q } else { best });
                counts[best] += 1;
                sums[best].iter_mut().zip(row(rest[p])).for_each(|(a, &x)| *a += x);
            }
            for (q, &p) in targets.iter().enumerate() {
                let c = counts[q].max(1) as f32;
                out.extend(row(rest[p]).iter().zip(&sums[q]).map(|(&x, &a)| x + a / c));
            }
        }
        rows.push(out);
        kept.push(dom);
    }
    Ok(Reduced { tokens: stack(rows, d, hidden)?, kept })
}
