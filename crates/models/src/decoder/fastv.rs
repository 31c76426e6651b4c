//! FastV (pkunlp-icler/FastV @ d1659729, `src/FastV/llava-hf/transformers/src/transformers/models/llama/
//! modeling_llama.py`, `LlamaModel.fastv_forward`, the `use_cache` branch): in the prefill, layers
//! 0..K see every token; the attention probabilities of layer K − 1 for the last prompt token, averaged
//! over heads, rank the image tokens; layers ≥ K see only the V best image tokens (plus all text),
//! with their original position ids. The KV cache then holds L positions in layers < K and L − N + V in
//! layers ≥ K; decode steps continue at position L, each layer attending over what it cached.
use candle_core::{Tensor, D};

use super::Decoder;
use crate::{Error, Mode, Result};

/// Where the image tokens sit in the prompt and how many FastV keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastV {
    /// K: the first layer that sees only the kept image tokens (1 ≤ K < number of layers).
    pub layer: usize,
    /// Position of the first image token in the prompt.
    pub image_start: usize,
    /// N, image tokens in the prompt.
    pub image_len: usize,
    /// V, image tokens kept for layers ≥ K (1 ≤ V ≤ N).
    pub keep: usize,
}

impl Decoder {
    /// FastV prefill of `embeds` (1, L, H) on an empty KV cache (see the module docs). Returns the
    /// final-norm hidden state of the last prompt token, (1, 1, H), and the kept image tokens' indices
    /// within the image (0..N, ascending). The cache then holds L positions ([`Decoder::kv_len`]); decode
    /// with [`Decoder::forward_embeds`] at `kv_len()` as usual.
    ///
    /// Errors: [`Error::Invalid`] for K outside 1..layers, V outside 1..=N, an image span outside the
    /// prompt or at its very end (the last prompt token must be text), a batch other than 1, a non-empty
    /// cache, [`Mode::Differentiable`]; those of [`Decoder::forward_embeds`].
    pub fn prefill_fastv(&mut self, embeds: &Tensor, fastv: &FastV) -> Result<(Tensor, Vec<usize>)> {
        kernels::threads::in_pool(|| self.prefill_fastv_here(embeds, fastv))
    }

    fn prefill_fastv_here(&mut self, embeds: &Tensor, f: &FastV) -> Result<(Tensor, Vec<usize>)> {
        let (b, l) = self.check_input(embeds, 0)?;
        let layers = self.layers.len();
        if b != 1 || self.mode != Mode::Inference || !self.cache.is_empty() {
            return Err(Error::Invalid("FastV prefill takes one sequence, inference mode, an empty KV cache".into()));
        }
        if !(1..layers).contains(&f.layer) {
            return Err(Error::Invalid(format!(
                "FastV layer K = {} is out of range: the LLM has {layers} layers and K must be in 1..={}",
                f.layer,
                layers.saturating_sub(1)
            )));
        }
        if f.keep == 0 || f.keep > f.image_len || f.image_start + f.image_len >= l {
            return Err(Error::Invalid(format!(
                "FastV: keep {} of {} image tokens at {}..{} in a prompt of {l} (the prompt must end with text)",
                f.keep,
                f.image_len,
                f.image_start,
                f.image_start + f.image_len
            )));
        }
        let mask = self.causal_mask(l, 0)?;
        let mut xs = embeds.to_dtype(self.dtype)?;
        let mut probs = None;
        for i in 0..f.layer {
            let input = xs.clone();
            xs = self.layers[i].forward(&xs, &self.rope, 0, mask.as_ref(), Some((&mut self.cache, i)), self.mode)?;
            if i + 1 == f.layer {
                let keys =
                    self.cache.keys(i).ok_or_else(|| Error::Invalid("FastV: layer K − 1 cached nothing".into()))?;
                let row = input.narrow(1, l - 1, 1)?;
                probs = Some(self.layers[i].row_attention(&row, &self.rope, l - 1, &keys)?);
            }
        }
        // Last prompt token's attention, averaged over heads, over the image span.
        let probs = probs.ok_or_else(|| Error::Invalid("FastV: no attention of layer K − 1".into()))?;
        let score: Vec<f32> =
            probs.mean(1)?.squeeze(0)?.narrow(D::Minus1, f.image_start, f.image_len)?.to_vec1::<f32>()?;
        let mut order: Vec<usize> = (0..f.image_len).collect();
        order.sort_by(|&a, &c| score[c].total_cmp(&score[a]).then(a.cmp(&c)));
        let mut kept: Vec<usize> = order[..f.keep].to_vec();
        kept.sort_unstable();
        let positions: Vec<usize> = (0..f.image_start)
            .chain(kept.iter().map(|&j| f.image_start + j))
            .chain(f.image_start + f.image_len..l)
            .collect();
        let ids =
            Tensor::from_vec(positions.iter().map(|&p| p as u32).collect::<Vec<_>>(), positions.len(), xs.device())?;
        xs = xs.index_select(&ids, 1)?;
        for i in f.layer..layers {
            xs = self.layers[i].forward_at(&xs, &self.rope, &positions, (&mut self.cache, i))?;
        }
        self.cache.advance(l);
        let last = xs.narrow(1, positions.len() - 1, 1)?;
        Ok((self.norm.forward(&last, self.mode)?, kept))
    }
}
