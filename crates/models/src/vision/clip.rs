//! The CLIP ViT vision tower (pre-LN transformer), following HF `modeling_clip.py`
//! (`CLIPVisionEmbeddings`, `pre_layrnorm`, `CLIPEncoderLayer`). Hidden states are indexed as HF does:
//! index 0 is the embeddings output *after* `pre_layrnorm` (the encoder's input), index k the output of
//! block k (1-based). `post_layernorm` only feeds HF's pooled output, which LLaVA never uses, so it is not
//! loaded.
//!
//! Weight names (relative to the `VarBuilder` given; `vision_model` for a CLIP directory,
//! `model.vision_tower.vision_tower.vision_model` inside a LLaVA checkpoint):
//! `embeddings.class_embedding` (d), `embeddings.patch_embedding.weight` (d, C, p, p),
//! `embeddings.position_embedding.weight` (grid²+1, d), `pre_layrnorm.{weight,bias}`,
//! `encoder.layers.{i}.{self_attn.{q,k,v,out}_proj, layer_norm1, mlp.fc1, mlp.fc2, layer_norm2}.*`.
use super::config::ClipVisionConfig;
use crate::layers::{softmax_last, weight, Activation, LayerNorm, Linear};
use crate::Mode;
use crate::{Error, Result};
use candle_core::{Tensor, D};
use candle_nn::{Init, VarBuilder};
use kernels::matmul::{matmul, matmul_backend, MatmulBackend};

/// Patch + class + position embeddings (HF `CLIPVisionEmbeddings`).
#[derive(Debug, Clone)]
pub struct ClipVisionEmbeddings {
    class_embedding: Tensor,
    patch_embedding: Tensor,
    position_embedding: Tensor,
    patch_size: usize,
    image_size: usize,
    channels: usize,
}

impl ClipVisionEmbeddings {
    /// Loads the embedding weights. Errors: missing tensor or wrong shape.
    pub fn new(cfg: &ClipVisionConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let p = cfg.patch_size;
        let init = Init::Randn { mean: 0.0, stdev: 0.02 };
        Ok(Self {
            class_embedding: weight(&vb, d, "class_embedding", init)?,
            patch_embedding: weight(&vb.pp("patch_embedding"), (d, cfg.num_channels, p, p), "weight", init)?,
            position_embedding: weight(&vb.pp("position_embedding"), (cfg.num_patches() + 1, d), "weight", init)?,
            patch_size: p,
            image_size: cfg.image_size,
            channels: cfg.num_channels,
        })
    }

    /// pixels (B, C, image_size, image_size) → (B, grid²+1, d), CLS first.
    /// Errors: [`Error::Invalid`] if the pixel tensor has another shape.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let dims = pixels.dims();
        if dims.len() != 4 || dims[1] != self.channels || dims[2] != self.image_size || dims[3] != self.image_size {
            return Err(Error::Invalid(format!(
                "vision tower expects pixels (B, {}, {}, {}), got {:?}",
                self.channels, self.image_size, self.image_size, dims
            )));
        }
        let b = dims[0];
        let patches = pixels.conv2d(&self.patch_embedding, 0, self.patch_size, 1, 1)?; // (B, d, g, g)
        let patches = patches.flatten_from(2)?.transpose(1, 2)?; // (B, g², d)
        let d = self.class_embedding.dim(0)?;
        let cls = self.class_embedding.reshape((1, 1, d))?.broadcast_as((b, 1, d))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?;
        Ok(x.broadcast_add(&self.position_embedding.unsqueeze(0)?)?)
    }
}

/// Self-attention of a CLIP block (HF `CLIPAttention`: separate q/k/v/out projections with bias).
#[derive(Debug, Clone)]
pub struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    mode: Mode,
}

impl ClipAttention {
    /// Loads `{q,k,v,out}_proj.{weight,bias}`.
    pub fn new(cfg: &ClipVisionConfig, mode: Mode, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            q_proj: Linear::new(d, d, true, vb.pp("q_proj"))?,
            k_proj: Linear::new(d, d, true, vb.pp("k_proj"))?,
            v_proj: Linear::new(d, d, true, vb.pp("v_proj"))?,
            out_proj: Linear::new(d, d, true, vb.pp("out_proj"))?,
            num_heads: cfg.num_attention_heads,
            mode,
        })
    }

    /// Converts the four projection weights to `format` (see [`Linear::convert_weights`]).
    pub fn convert_weights(&mut self, format: impl Into<quant::WeightFormat>) -> Result<()> {
        let format = format.into();
        for l in [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj, &mut self.out_proj] {
            l.convert_weights(format)?;
        }
        Ok(())
    }

    /// Like [`Self::forward`], also returning the block's [`AttentionMaps`]: the CLS row of the
    /// attention probabilities per head and the keys split into heads. The extra work is one CLS query
    /// row against the keys (T·d products), so the maps cost nothing when this is not called.
    pub fn forward_with_maps(&self, x: &Tensor) -> Result<(Tensor, AttentionMaps)> {
        let (b, t, d) = x.dims3()?;
        let h = self.num_heads;
        let hd = d / h;
        let keys = self.k_proj.forward(x)?.reshape((b, t, h, hd))?.transpose(1, 2)?.contiguous()?;
        let q_cls = self.q_proj.forward(&x.narrow(1, 0, 1)?)?.reshape((b, 1, h, hd))?.transpose(1, 2)?;
        let scores = (matmul(&q_cls.contiguous()?, &keys.t()?.contiguous()?)? * (1.0 / (hd as f64).sqrt()))?;
        let cls_attention = softmax_last(&scores, self.mode)?.reshape((b, h, t))?;
        Ok((self.forward(x)?, AttentionMaps { cls_attention, keys }))
    }

    /// PruMerge's single-head score (42Shawn/LLaVA-PruMerge, `clip_encoder.py`,
    /// `token_prune_merge_advanced_plus`): the raw `q_proj` / `k_proj` outputs over the full width d (no
    /// split into heads), CLS row of `softmax(q kᵀ · d^-½)`. `x` (B, T, d) is this block's normalised
    /// input → (CLS attention (B, T), keys (B, T, d)).
    pub fn single_head_cls_attention(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t, d) = x.dims3()?;
        let keys = self.k_proj.forward(x)?.contiguous()?;
        let q_cls = self.q_proj.forward(&x.narrow(1, 0, 1)?)?.contiguous()?; // (B, 1, d)
        let scores = (matmul(&q_cls, &keys.t()?.contiguous()?)? * (1.0 / (d as f64).sqrt()))?;
        Ok((softmax_last(&scores, self.mode)?.reshape((b, t))?, keys))
    }

    /// (B, T, d) → (B, T, d), full (unmasked) attention.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let h = self.num_heads;
        let hd = d / h;
        // (B, T, d) → (B, h, T, hd). The OpenBLAS product reads the strided view in place; candle's
        // needs a contiguous copy.
        let scale = 1.0 / (hd as f64).sqrt();
        if self.mode == Mode::Inference && x.dtype() == candle_core::DType::F32 && x.device().is_cpu() {
            // One op: scores, softmax and ·V per (head, row block) in parallel, no (B, h, T, T) tensors.
            let heads = |y: Tensor| -> Result<Tensor> { Ok(y.reshape((b, t, h, hd))?.transpose(1, 2)?) };
            let q = heads(self.q_proj.forward(x)?)?.contiguous()?;
            let (k, v) = (heads(self.k_proj.forward(x)?)?, heads(self.v_proj.forward(x)?)?);
            return self.out_proj.forward(&kernels::attention::full_attention(&q, &k, &v, scale)?);
        }
        let blas = matmul_backend() == MatmulBackend::OpenBlas;
        let split = |y: Tensor| -> Result<Tensor> {
            let y = y.reshape((b, t, h, hd))?.transpose(1, 2)?;
            Ok(if blas { y } else { y.contiguous()? })
        };
        let q = split((self.q_proj.forward(x)? * scale)?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let probs = softmax_last(&matmul(&q, &k.t()?)?, self.mode)?;
        let ctx = matmul(&probs, &v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out_proj.forward(&ctx)
    }
}

/// One pre-LN transformer block (HF `CLIPEncoderLayer`):
/// `x + attn(ln1(x))`, then `x + fc2(act(fc1(ln2(x))))`.
#[derive(Debug, Clone)]
pub struct ClipEncoderLayer {
    self_attn: ClipAttention,
    layer_norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    layer_norm2: LayerNorm,
    act: Activation,
}

impl ClipEncoderLayer {
    /// Loads one block's weights.
    pub fn new(cfg: &ClipVisionConfig, mode: Mode, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let act =
            cfg.activation().ok_or_else(|| Error::Invalid(format!("unsupported hidden_act {:?}", cfg.hidden_act)))?;
        Ok(Self {
            self_attn: ClipAttention::new(cfg, mode, vb.pp("self_attn"))?,
            layer_norm1: LayerNorm::new(d, cfg.layer_norm_eps, mode, vb.pp("layer_norm1"))?,
            fc1: Linear::new(d, cfg.intermediate_size, true, vb.pp("mlp").pp("fc1"))?,
            fc2: Linear::new(cfg.intermediate_size, d, true, vb.pp("mlp").pp("fc2"))?,
            layer_norm2: LayerNorm::new(d, cfg.layer_norm_eps, mode, vb.pp("layer_norm2"))?,
            act,
        })
    }

    /// Converts the attention and MLP weights to `format` (norms unchanged; see [`Linear::convert_weights`]).
    pub fn convert_weights(&mut self, format: impl Into<quant::WeightFormat>) -> Result<()> {
        let format = format.into();
        self.self_attn.convert_weights(format)?;
        self.fc1.convert_weights(format)?;
        self.fc2.convert_weights(format)
    }

    /// As [`Self::forward`], also returning the attention maps of this block
    /// ([`ClipAttention::forward_with_maps`]).
    pub fn forward_with_maps(&self, x: &Tensor) -> Result<(Tensor, AttentionMaps)> {
        let (a, maps) = self.self_attn.forward_with_maps(&self.layer_norm1.forward(x)?)?;
        let x = (x + a)?;
        let h = self.fc1.forward(&self.layer_norm2.forward(&x)?)?;
        let h = self.fc2.forward(&self.act.forward(&h)?)?;
        Ok(((x + h)?, maps))
    }

    /// PruMerge's score of this block on its input `x` (B, T, d) (the previous hidden state):
    /// `layer_norm1`, then [`ClipAttention::single_head_cls_attention`] → ((B, T), (B, T, d)).
    pub fn single_head_cls_attention(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.self_attn.single_head_cls_attention(&self.layer_norm1.forward(x)?)
    }

    /// (B, T, d) → (B, T, d).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.self_attn.forward(&self.layer_norm1.forward(x)?)?)?;
        let h = self.fc1.forward(&self.layer_norm2.forward(&x)?)?;
        let h = self.fc2.forward(&self.act.forward(&h)?)?;
        Ok((x + h)?)
    }
}

/// The CLIP vision transformer up to the last block (HF `CLIPVisionTransformer` without `post_layernorm`).
#[derive(Debug, Clone)]
pub struct ClipVisionTower {
    cfg: ClipVisionConfig,
    embeddings: ClipVisionEmbeddings,
    pre_layrnorm: LayerNorm,
    layers: Vec<ClipEncoderLayer>,
}

impl ClipVisionTower {
    /// Builds all `cfg.num_hidden_layers` blocks from `vb` (prefix `vision_model` or
    /// `model.vision_tower.vision_tower.vision_model`). Errors: invalid config ([`Error::Invalid`]),
    /// missing tensor, wrong shape.
    pub fn new(cfg: &ClipVisionConfig, mode: Mode, vb: VarBuilder) -> Result<Self> {
        Self::new_with_depth(cfg, cfg.num_hidden_layers, mode, vb)
    }

    /// Like [`Self::new`] but loads only the first `depth` blocks (LLaVA needs 23 of 24); the rest of the
    /// checkpoint is ignored. Errors additionally if `depth > num_hidden_layers`.
    pub fn new_with_depth(cfg: &ClipVisionConfig, depth: usize, mode: Mode, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(Error::Invalid)?;
        if depth > cfg.num_hidden_layers {
            return Err(Error::Invalid(format!(
                "vision tower depth {depth} exceeds num_hidden_layers {}",
                cfg.num_hidden_layers
            )));
        }
        let layers_vb = vb.pp("encoder").pp("layers");
        let layers =
            (0..depth).map(|i| ClipEncoderLayer::new(cfg, mode, layers_vb.pp(i))).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            embeddings: ClipVisionEmbeddings::new(cfg, vb.pp("embeddings"))?,
            pre_layrnorm: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, mode, vb.pp("pre_layrnorm"))?,
            layers,
        })
    }

    /// Stores every block's projection weights in `format` for inference (bf16: products through
    /// [`kernels::matmul_bf16`] with f32 activations; q8_0/q4_0: [`quant::QuantLinear`]; patch
    /// embedding, norms and biases stay f32). The f32 path is the parity path; the others are for speed
    /// and memory. Errors: candle conversion errors; q8_0/q4_0 with a width not a multiple of 32.
    pub fn convert_weights(&mut self, format: impl Into<quant::WeightFormat>) -> Result<()> {
        let format = format.into();
        self.layers.iter_mut().try_for_each(|l| l.convert_weights(format))
    }

    /// The configuration.
    pub fn config(&self) -> &ClipVisionConfig {
        &self.cfg
    }

    /// Number of blocks loaded.
    pub fn loaded_depth(&self) -> usize {
        self.layers.len()
    }

    /// Runs the tower up to block `depth` and returns HF-indexed hidden states `0..=depth`, each
    /// (B, grid²+1, d) with CLS at position 0: entry 0 = `pre_layrnorm(embeddings(pixels))`, entry k =
    /// output of block k. Errors: `depth` beyond the loaded blocks, bad pixel shape ([`Error::Invalid`]).
    pub fn hidden_states(&self, pixels: &Tensor, depth: usize) -> Result<Vec<Tensor>> {
        // On a pool worker: one thread hand-off for the tower, not one per op (kernels::threads::in_pool).
        kernels::threads::in_pool(|| self.hidden_states_here(pixels, depth))
    }

    fn hidden_states_here(&self, pixels: &Tensor, depth: usize) -> Result<Vec<Tensor>> {
        Ok(self.hidden_states_with_maps_here(pixels, depth, None)?.0)
    }

    /// [`Self::hidden_states`], also returning the [`AttentionMaps`] of block `maps_block` (1-based: the
    /// block whose output is hidden state `maps_block`; LLaVA's select layer −2 is block 23 of 24, HF
    /// `attentions[-2]`), or none when `maps_block` is `None`.
    /// Errors: as [`Self::hidden_states`]; `maps_block` 0 (the embeddings have no attention) or beyond
    /// `depth` ([`Error::Invalid`]).
    pub fn hidden_states_with_maps(
        &self,
        pixels: &Tensor,
        depth: usize,
        maps_block: Option<usize>,
    ) -> Result<(Vec<Tensor>, Option<AttentionMaps>)> {
        kernels::threads::in_pool(|| self.hidden_states_with_maps_here(pixels, depth, maps_block))
    }

    fn hidden_states_with_maps_here(
        &self,
        pixels: &Tensor,
        depth: usize,
        maps_block: Option<usize>,
    ) -> Result<(Vec<Tensor>, Option<AttentionMaps>)> {
        if depth > self.layers.len() {
            return Err(Error::Invalid(format!(
                "hidden state {depth} requested but only {} vision blocks are loaded",
                self.layers.len()
            )));
        }
        if let Some(m) = maps_block {
            if m == 0 || m > depth {
                return Err(Error::Invalid(format!(
                    "attention maps of vision block {m} requested, but blocks 1..={depth} run (hidden state 0, the \
                     embeddings, has no attention)"
                )));
            }
        }
        let mut x = self.pre_layrnorm.forward(&self.embeddings.forward(pixels)?)?;
        let mut out = Vec::with_capacity(depth + 1);
        let mut maps = None;
        out.push(x.clone());
        for (i, layer) in self.layers[..depth].iter().enumerate() {
            if maps_block == Some(i + 1) {
                let (y, m) = layer.forward_with_maps(&x)?;
                (x, maps) = (y, Some(m));
            } else {
                x = layer.forward(&x)?;
            }
            out.push(x.clone());
        }
        Ok((out, maps))
    }

    /// PruMerge's CLS attention and keys at the block that reads hidden state `k` (block k + 1,
    /// 1-based), on `hidden` = hidden state k (B, T, d) → ((B, T), (B, T, d)); see
    /// [`ClipAttention::single_head_cls_attention`]. Errors: block k + 1 not loaded ([`Error::Invalid`]).
    pub fn single_head_cls_attention(&self, hidden: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
        let layer = self.layers.get(k).ok_or_else(|| {
            Error::Invalid(format!(
                "PruMerge+ scores tokens with vision block {} (the block after the select layer), but only {} \
                 blocks are loaded{}",
                k + 1,
                self.layers.len(),
                if k < self.cfg.num_hidden_layers { " (load the model with token reduction enabled)" } else { "" }
            ))
        })?;
        kernels::threads::in_pool(|| layer.single_head_cls_attention(hidden))
    }
}

/// The attention of one CLIP block, as the training-free token-reduction methods read it (HF
/// `output_attentions=True` gives the probabilities; VisionZip's `utils.py`, `CLIPAttention_forward`,
/// returns the keys).
#[derive(Debug, Clone)]
pub struct AttentionMaps {
    /// CLS row of the softmax attention probabilities per head, (B, heads, T), T = grid² + 1 with
    /// column 0 the CLS→CLS weight.
    pub cls_attention: Tensor,
    /// Keys `k_proj(layer_norm1(x))` (bias included, unscaled) split into heads, (B, heads, T, head_dim).
    pub keys: Tensor,
}

/// Drops CLS: (B, T+1, d) → (B, T, d).
pub fn drop_cls(x: &Tensor) -> Result<Tensor> {
    let t = x.dim(D::Minus2)?;
    Ok(x.narrow(1, 1, t - 1)?)
}
