//! Causal self-attention with RoPE and grouped-query attention (HF `Qwen2Attention` / `LlamaAttention`).
use candle_core::{DType, Tensor, D};
use candle_nn::{linear_b, Linear, VarBuilder};

use super::{DecoderConfig, KvCache, RotaryEmbedding};
use crate::Mode;
use crate::Result;
use kernels::matmul::{matmul, nn_linear};
use quant::{QuantLinear, WeightFormat};

/// Multi-head attention of one decoder layer: q/k/v/o projections (`{vb}.q_proj` …), GQA with
/// `num_attention_heads / num_key_value_heads` query heads per key/value head.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// q|k|v weights (and biases) stacked into one (q + 2·kv, H) matrix by [`Attention::convert_weights`]
    /// for inference: one product (one pass over the input, one thread dispatch) instead of three.
    /// `q_proj`/`k_proj`/`v_proj` then hold row views of it (no second copy).
    qkv: Option<Linear>,
    /// The stacked q|k|v and the o projection as GGML blocks after [`Attention::convert_weights`] to
    /// q8_0/q4_0 (the candle layers above are then empty (0, in) placeholders).
    quant: Option<(QuantLinear, QuantLinear)>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

/// One linear layer computing `layers` side by side: weights stacked on the output dimension and
/// converted to `dtype`, biases (all or none) concatenated; plus, for each input layer, a layer whose
/// weight and bias are row views of the stacked ones (no second copy). Errors: some layers with a bias
/// and some without, or differing input widths.
pub(crate) fn stack_linears(layers: &[&Linear], dtype: DType) -> Result<(Linear, Vec<Linear>)> {
    let weights = layers.iter().map(|l| l.weight().to_dtype(dtype)).collect::<candle_core::Result<Vec<_>>>()?;
    let weight = Tensor::cat(&weights, 0)?.detach();
    let biases: Vec<&Tensor> = layers.iter().filter_map(|l| l.bias()).collect();
    let bias = match biases.len() {
        0 => None,
        n if n == layers.len() => Some(Tensor::cat(&biases, 0)?.detach()),
        _ => return Err(crate::Error::Invalid("stacked projections: some have a bias and some do not".into())),
    };
    let mut views = Vec::with_capacity(layers.len());
    let mut start = 0;
    for w in &weights {
        let rows = w.dim(0)?;
        let b = bias.as_ref().map(|b| b.narrow(0, start, rows)).transpose()?;
        views.push(Linear::new(weight.narrow(0, start, rows)?, b));
        start += rows;
    }
    Ok((Linear::new(weight, bias), views))
}

/// `layer` with its weight converted to `dtype` (bias unchanged).
pub(crate) fn convert_linear(layer: &Linear, dtype: DType) -> Result<Linear> {
    // Detached: the converted weight must not keep the original alive through candle's graph.
    Ok(Linear::new(layer.weight().to_dtype(dtype)?.detach(), layer.bias().cloned()))
}

impl Attention {
    /// Loads the projections; q/k/v biases per `cfg.qkv_bias`, o_proj bias per `cfg.o_bias`.
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let q = cfg.num_attention_heads * cfg.head_dim;
        let kv = cfg.num_key_value_heads * cfg.head_dim;
        Ok(Self {
            q_proj: linear_b(h, q, cfg.qkv_bias, vb.pp("q_proj"))?,
            k_proj: linear_b(h, kv, cfg.qkv_bias, vb.pp("k_proj"))?,
            v_proj: linear_b(h, kv, cfg.qkv_bias, vb.pp("v_proj"))?,
            o_proj: linear_b(q, h, cfg.o_bias, vb.pp("o_proj"))?,
            qkv: None,
            quant: None,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
        })
    }

    /// Training path ([`Mode::Differentiable`] without a KV cache): `residual + o_proj(attn(xs))` with
    /// the causal attention core, RoPE and GQA as one fused op ([`kernels::autograd::attention`]).
    /// `xs` (B, L, H) at positions `start..start + L`, `residual` (B, L, H) → (B, L, H).
    /// Errors: dtypes other than f32/f64 ([`crate::Error::Invalid`]), shape mismatches.
    pub fn forward_fused(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        start: usize,
        residual: &Tensor,
    ) -> Result<Tensor> {
        use kernels::autograd::{attention, linear, linear_residual, AttentionSpec};
        let (b, l, _) = xs.dims3()?;
        let q = linear(xs, self.q_proj.weight(), self.q_proj.bias())?;
        let k = linear(xs, self.k_proj.weight(), self.k_proj.bias())?;
        let v = linear(xs, self.v_proj.weight(), self.v_proj.bias())?;
        let spec = AttentionSpec {
            batch: b,
            q_len: l,
            kv_len: l,
            num_heads: self.num_heads,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            causal: true,
            scale: 1.0 / (self.head_dim as f64).sqrt(),
        };
        let out = attention(&q, &k, &v, Some(&rope.tables(start, l)?), spec)?;
        match self.o_proj.bias() {
            None => linear_residual(&out, self.o_proj.weight(), residual),
            Some(bias) => Ok((linear(&out, self.o_proj.weight(), Some(bias))? + residual)?),
        }
    }

    /// Converts the projection weights to `format` (biases stay as they are; for q8_0/q4_0 kept in f32
    /// beside the blocks) and stacks q/k/v into one matrix; `prefix` (`model.layers.{i}.self_attn`)
    /// names the tensors in errors. See [`super::Decoder::convert_weights`].
    pub(crate) fn convert_weights(&mut self, format: WeightFormat, prefix: &str) -> Result<()> {
        let dtype = match format {
            WeightFormat::Dense(dtype) => dtype,
            WeightFormat::Quant(q) => {
                let (fused, _) =
                    stack_linears(&[&self.q_proj, &self.k_proj, &self.v_proj], self.o_proj.weight().dtype())?;
                let qkv = QuantLinear::quantize(
                    &format!("{prefix}.q_proj.weight (stacked with k_proj, v_proj)"),
                    q,
                    fused.weight(),
                    fused.bias(),
                )?;
                let o = QuantLinear::quantize(
                    &format!("{prefix}.o_proj.weight"),
                    q,
                    self.o_proj.weight(),
                    self.o_proj.bias(),
                )?;
                let empty = |l: &Linear| -> Result<Linear> {
                    let w = l.weight();
                    Ok(Linear::new(Tensor::zeros((0, w.dim(1)?), w.dtype(), w.device())?, None))
                };
                [self.q_proj, self.k_proj, self.v_proj, self.o_proj] =
                    [empty(&self.q_proj)?, empty(&self.k_proj)?, empty(&self.v_proj)?, empty(&self.o_proj)?];
                self.qkv = None;
                self.quant = Some((qkv, o));
                return Ok(());
            }
        };
        self.o_proj = convert_linear(&self.o_proj, dtype)?;
        let (fused, views) = stack_linears(&[&self.q_proj, &self.k_proj, &self.v_proj], dtype)?;
        [self.q_proj, self.k_proj, self.v_proj] =
            <[Linear; 3]>::try_from(views).map_err(|_| crate::Error::Invalid("q/k/v stacking".into()))?;
        self.qkv = Some(fused);
        Ok(())
    }

    /// The stacked q|k|v projection of `xs` (B, L, H) → (B, L, q + 2·kv) when converted, else `None`.
    fn stacked_qkv(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        match (&self.quant, &self.qkv) {
            (Some((qkv, _)), _) => Ok(Some(qkv.forward(xs)?)),
            (None, Some(fused)) => Ok(Some(nn_linear(xs, fused)?)),
            (None, None) => Ok(None),
        }
    }

    /// The output projection of the attention output (B, L, nh·d) → (B, L, H).
    fn project_out(&self, out: &Tensor) -> Result<Tensor> {
        match &self.quant {
            Some((_, o)) => o.forward(out),
            None => nn_linear(out, &self.o_proj),
        }
    }

    /// q, k, v projections of `xs` (B, L, H), each (B, L, width): one stacked product when converted.
    fn project_qkv(&self, xs: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        match self.stacked_qkv(xs)? {
            Some(y) => {
                let (q, kv) = (self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim);
                Ok((y.narrow(D::Minus1, 0, q)?, y.narrow(D::Minus1, q, kv)?, y.narrow(D::Minus1, q + kv, kv)?))
            }
            None => Ok((nn_linear(xs, &self.q_proj)?, nn_linear(xs, &self.k_proj)?, nn_linear(xs, &self.v_proj)?)),
        }
    }

    /// Inference with explicit positions (FastV's kept tokens after layer K): `xs` (B, L', H) whose row t
    /// holds position `positions[t]` (ascending), appended to this layer's cache, causal among the rows
    /// and over what the layer cached before → (B, L', H).
    pub(crate) fn forward_at(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        positions: &[usize],
        cache: (&mut KvCache, usize),
    ) -> Result<Tensor> {
        let (b, l, _) = xs.dims3()?;
        let (nh, nkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let (q, k, v) = self.project_qkv(xs)?;
        let q = rope.apply_positions(&q.reshape((b, l, nh, d))?.transpose(1, 2)?, positions)?;
        let k = rope.apply_positions(&k.reshape((b, l, nkv, d))?.transpose(1, 2)?, positions)?;
        let v = v.reshape((b, l, nkv, d))?.transpose(1, 2)?.contiguous()?;
        let (k, v) = cache.0.append(cache.1, &k, &v)?;
        let scale = 1.0 / (d as f64).sqrt();
        if q.dtype() == DType::F32 && q.device().is_cpu() {
            return nn_linear(&kernels::attention::cached_attention(&q, &k, &v, scale)?, &self.o_proj);
        }
        let lk = k.dim(2)?;
        let past = lk - l;
        let mask: Vec<f32> =
            (0..l).flat_map(|i| (0..lk).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })).collect();
        let mask = Tensor::from_vec(mask, (l, lk), q.device())?.to_dtype(q.dtype())?;
        let n_rep = nh / nkv;
        let qg = (q * scale)?.reshape((b, nkv, n_rep * l, d))?;
        let scores = matmul(&qg, &k.t()?)?.reshape((b, nh, l, lk))?.broadcast_add(&mask)?;
        let probs = crate::layers::softmax_last(&scores, Mode::Inference)?.reshape((b, nkv, n_rep * l, lk))?;
        let out = matmul(&probs, &v)?.reshape((b, nh, l, d))?.transpose(1, 2)?.reshape((b, l, nh * d))?;
        nn_linear(&out, &self.o_proj)
    }

    /// One decode step of S independent sequences (continuous batching): `xs` (S, 1, H), row s at
    /// position `caches[s].len()`, its key and value appended to layer `layer` of `caches[s]`, attending
    /// over that cache only → (S, 1, H). The q/k/v and output projections run on the S rows at once,
    /// so each weight matrix is read once per step for all sequences. f32 CPU inference only (the
    /// caller, [`super::Decoder::decode_batch`], checks).
    pub(crate) fn forward_decode_rows(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        caches: &mut [KvCache],
        layer: usize,
    ) -> Result<Tensor> {
        let (nh, nkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let (q, k, v) = self.project_qkv(xs)?;
        let scale = 1.0 / (d as f64).sqrt();
        let mut outs = Vec::with_capacity(caches.len());
        for (i, cache) in caches.iter_mut().enumerate() {
            let pos = cache.len();
            let heads = |t: &Tensor, n: usize| -> Result<Tensor> {
                Ok(t.narrow(0, i, 1)?.reshape((1, 1, n, d))?.transpose(1, 2)?)
            };
            let qi = rope.apply(&heads(&q, nh)?, pos, Mode::Inference)?.contiguous()?;
            let ki = rope.apply(&heads(&k, nkv)?, pos, Mode::Inference)?.contiguous()?;
            let vi = heads(&v, nkv)?.contiguous()?;
            let (kc, vc) = cache.append(layer, &ki, &vi)?;
            outs.push(kernels::attention::cached_attention(&qi, &kc, &vc, scale)?);
        }
        self.project_out(&Tensor::cat(&outs, 0)?)
    }

    /// The attention probabilities of one query row over `keys`: `h` (B, 1, H) the normalised input of
    /// the row at position `pos`, `keys` (B, kv_heads, L, head_dim) this layer's cached keys (after RoPE,
    /// ending at `pos`) → softmax(q kᵀ/√d) (B, heads, L), f32 (HF eager attention's weights of that row).
    pub(crate) fn row_probs(&self, h: &Tensor, rope: &RotaryEmbedding, pos: usize, keys: &Tensor) -> Result<Tensor> {
        let (b, _, _) = h.dims3()?;
        let (nh, nkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let (q, _, _) = self.project_qkv(h)?;
        let q = rope.apply_positions(&q.reshape((b, 1, nh, d))?.transpose(1, 2)?, &[pos])?;
        let lk = keys.dim(2)?;
        let qg = (q.to_dtype(DType::F32)? * (1.0 / (d as f64).sqrt()))?.reshape((b, nkv, nh / nkv, d))?;
        let scores = matmul(&qg.contiguous()?, &keys.to_dtype(DType::F32)?.t()?.contiguous()?)?;
        Ok(crate::layers::softmax_last(&scores, Mode::Inference)?.reshape((b, nh, lk))?)
    }

    /// `xs` (B, L, H) at positions `start..start + L` → (B, L, H).
    ///
    /// `mask`: additive causal mask (L, start + L) or `None` when L = 1. `cache`: the model's KV cache
    /// and this layer's index; when given, keys/values are appended and attention covers the cached
    /// positions too (the cache must hold exactly `start` positions).
    pub fn forward(
        &self,
        xs: &Tensor,
        rope: &RotaryEmbedding,
        start: usize,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        mode: Mode,
    ) -> Result<Tensor> {
        let (b, l, _) = xs.dims3()?;
        let (nh, nkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let inference_f32 = mode == Mode::Inference
            && xs.dtype() == DType::F32
            && rope.is_f32()
            && xs.device().is_cpu()
            && !xs.track_op();
        let fused_split = match inference_f32 {
            // Converted weights, CPU inference: split and rotate the stacked output in one pass.
            true => self.stacked_qkv(xs)?.map(|y| rope.split_qkv_rotated(&y, (nh, nkv), d, start)).transpose()?,
            false => None,
        };
        let (q, k, v) = match fused_split {
            Some(qkv) => qkv,
            None => {
                let (q, k, v) = self.project_qkv(xs)?;
                let q = q.reshape((b, l, nh, d))?.transpose(1, 2)?;
                let k = k.reshape((b, l, nkv, d))?.transpose(1, 2)?;
                let v = v.reshape((b, l, nkv, d))?.transpose(1, 2)?.contiguous()?;
                (rope.apply(&q, start, mode)?.contiguous()?, rope.apply(&k, start, mode)?.contiguous()?, v)
            }
        };
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v)?,
            None => (k, v),
        };
        let scale = 1.0 / (d as f64).sqrt();
        if mode == Mode::Inference && q.dtype() == DType::F32 && q.device().is_cpu() {
            // One op: causal, GQA, over the cache's views (no score/mask tensors, no K/V copies).
            let out = kernels::attention::cached_attention(&q, &k, &v, scale)?;
            return self.project_out(&out);
        }
        let lk = k.dim(2)?;
        // GQA without copying K/V: the n_rep query heads sharing a K/V head are adjacent, so
        // (B, nh, L, d) regroups to (B, nkv, n_rep·L, d).
        let n_rep = nh / nkv;
        // The 1/√d scale goes on q (L·d values) rather than on the scores (L·L'): same product up to
        // rounding, one pass over the largest attention tensor fewer.
        let qg = (q * scale)?.reshape((b, nkv, n_rep * l, d))?;
        let scores = matmul(&qg, &k.t()?)?.reshape((b, nh, l, lk))?;
        let scores = match mask {
            Some(m) => {
                let masked = scores.broadcast_add(m)?;
                drop(scores); // (B, nh, L, L'): freed before the softmax allocates its output
                masked
            }
            None => scores,
        };
        let probs = crate::layers::softmax_last(&scores, mode)?.reshape((b, nkv, n_rep * l, lk))?;
        let out = matmul(&probs, &v)?.reshape((b, nh, l, d))?.transpose(1, 2)?.reshape((b, l, nh * d))?;
        self.project_out(&out)
    }
}
