//! [CLS]-attention top-k (FasterVLM; Theia-4869/FasterVLM @ f5d5f120, `llava/model/llava_arch.py`,
//! `encode_images`, with `llava/model/multimodal_encoder/clip_encoder.py`, `feature_select`): the CLS
//! row of the select block's attention over the patch columns, averaged over heads; the V patches with
//! the highest score, kept in their original (raster) order.
use super::{stack, top_k, values3, Reduced};
use crate::vision::AttentionMaps;
use crate::{Error, Result};
use candle_core::Tensor;

/// `hidden` (B, N + 1, d) the select hidden state with CLS; `maps` of the same block. Returns the V
/// kept patch tokens (B, V, d); `kept` = their patch indices (0-based, CLS excluded), ascending.
/// Errors: V = 0 or V > N, maps that do not fit ([`Error::Invalid`]).
pub fn reduce(hidden: &Tensor, maps: &AttentionMaps, visual_tokens: usize) -> Result<Reduced> {
    let (b, t, d, hv) = values3(hidden)?;
    let (mb, heads, mt) = maps.cls_attention.dims3()?;
    if (mb, mt) != (b, t) {
        return Err(Error::Invalid(format!(
            "CLS top-k: attention maps {:?} do not fit hidden states {:?}",
            maps.cls_attention.dims(),
            hidden.dims()
        )));
    }
    if visual_tokens == 0 || visual_tokens > t - 1 {
        return Err(Error::Invalid(format!("CLS top-k: V = {visual_tokens} is not in 1..={}", t - 1)));
    }
    let att = maps.cls_attention.flatten_all()?.to_vec1::<f32>()?;
    let (mut rows, mut kept) = (Vec::with_capacity(b), Vec::with_capacity(b));
    for s in 0..b {
        let score: Vec<f32> =
            (1..t).map(|j| (0..heads).map(|h| att[(s * heads + h) * t + j]).sum::<f32>() / heads as f32).collect();
        let mut idx = top_k(&score, visual_tokens);
        idx.sort_unstable();
        rows.push(idx.iter().flat_map(|&j| hv[(s * t + j + 1) * d..(s * t + j + 2) * d].iter().copied()).collect());
        kept.push(idx);
    }
    Ok(Reduced { tokens: stack(rows, d, hidden)?, kept })
}
