//! One pre-norm decoder layer (HF `Qwen2DecoderLayer` / `LlamaDecoderLayer`).
use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::{Attention, DecoderConfig, KvCache, Mlp, RmsNorm, RotaryEmbedding};
use crate::Mode;
use crate::Result;

/// `x + attn(norm(x))`, then `x + mlp(norm(x))`; weights under `model.layers.{i}`.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    /// Loads `{vb}.input_layernorm`, `{vb}.self_attn`, `{vb}.post_attention_layernorm`, `{vb}.mlp`.
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            input_layernorm: RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    /// Converts the attention and MLP weights to `format` (norms and biases unchanged); `prefix`
    /// (`model.layers.{i}`) names the tensors in errors.
    pub(crate) fn convert_weights(&mut self, format: quant::WeightFormat, prefix: &str) -> Result<()> {
        self.self_attn.convert_weights(format, &format!("{prefix}.self_attn"))?;
        self.mlp.convert_weights(format, &format!("{prefix}.mlp"))
    }

    /// Inference at explicit positions (FastV's kept tokens): (B, L', H) → (B, L', H), see
    /// [`Attention::forward_at`].
    pub(crate) fn forward_at(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        positions: &[usize],
        cache: (&mut KvCache, usize),
    ) -> Result<Tensor> {
        let h = self.input_layernorm.forward(xs, Mode::Inference)?;
        let xs = (xs + self.self_attn.forward_at(&h, rope, positions, cache)?)?;
        let h = self.post_attention_layernorm.forward(&xs, Mode::Inference)?;
        Ok((&xs + self.mlp.forward(&h)?)?)
    }

    /// One decode step of S sequences, each over its own cache: (S, 1, H) → (S, 1, H); see
    /// [`super::Attention::forward_decode_rows`].
    pub(crate) fn forward_decode_rows(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        caches: &mut [KvCache],
        layer: usize,
    ) -> Result<Tensor> {
        let h = self.input_layernorm.forward(xs, Mode::Inference)?;
        let xs = (xs + self.self_attn.forward_decode_rows(&h, rope, caches, layer)?)?;
        let h = self.post_attention_layernorm.forward(&xs, Mode::Inference)?;
        Ok((&xs + self.mlp.forward(&h)?)?)
    }

    /// This layer's attention probabilities of the row `x` (B, 1, H) (the layer's input) at position
    /// `pos` over `keys` (its cached keys) → (B, heads, L); see [`Attention::row_probs`].
    pub(crate) fn row_attention(
        &self,
        x: &Tensor,
        rope: &RotaryEmbedding,
        pos: usize,
        keys: &Tensor,
    ) -> Result<Tensor> {
        let h = self.input_layernorm.forward(x, Mode::Inference)?;
        self.self_attn.row_probs(&h, rope, pos, keys)
    }

    /// (B, L, H) → (B, L, H); see [`Attention::forward`] for `start`, `mask`, `cache`.
    pub fn forward(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        start: usize,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        mode: Mode,
    ) -> Result<Tensor> {
        // Training without a KV cache: fused differentiable ops (the mask is the causal one).
        if mode == Mode::Differentiable && cache.is_none() && kernels::autograd::supports(xs) {
            let h = self.input_layernorm.forward(xs, mode)?;
            let xs = self.self_attn.forward_fused(&h, rope, start, xs)?;
            let h = self.post_attention_layernorm.forward(&xs, mode)?;
            return self.mlp.forward_fused(&h, &xs);
        }
        let h = self.input_layernorm.forward(xs, mode)?;
        let h = self.self_attn.forward(&h, rope, start, mask, cache, mode)?;
        let xs = (xs + h)?;
        let h = self.post_attention_layernorm.forward(&xs, mode)?;
        let h = self.mlp.forward(&h)?;
        Ok((xs + h)?)
    }
}
