//! One config-driven decoder for Qwen2 (Qwen-1.5) and Llama (Vicuna-1.5), after HF transformers'
//! `modeling_qwen2.py` / `modeling_llama.py`, with what a VLM needs: an input-embeddings entry point
//! ([`Decoder::forward_embeds`]), hidden states and logits for every position, a KV cache owned by the
//! model, QueCC's query embedding ([`Decoder::query_embedding`], paper §4), FastV's pruned prefill
//! ([`Decoder::prefill_fastv`], per-layer KV lengths) and a
//! [`Mode::Differentiable`] switch for training.
//!
//! Weight names are HF's: `model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`, …,
//! `model.norm.weight`, `lm_head.weight` (absent when `tie_word_embeddings`).
mod attention;
mod config;
mod fastv;
mod kv_cache;
mod layer;
mod mlp;
mod norm;
mod rope;

pub use attention::Attention;
pub use config::deserialize_naming_field;
pub use config::{Architecture, DecoderConfig};
pub use fastv::FastV;
pub use kv_cache::KvCache;
pub use layer::DecoderLayer;
pub use mlp::Mlp;

pub use norm::RmsNorm;
pub use rope::RotaryEmbedding;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

use crate::{Error, Mode, Result};
use quant::{QuantFormat, QuantLinear, WeightFormat};

/// The token embeddings and LM head as GGML blocks (after [`Decoder::convert_weights`] to q8_0/q4_0).
#[derive(Debug, Clone)]
struct QuantEnds {
    format: QuantFormat,
    /// `model.embed_tokens.weight` (vocab, H): rows dequantised on lookup; the LM head when tied.
    embed: QuantLinear,
    /// `lm_head.weight` (vocab, H) when not tied.
    lm_head: Option<QuantLinear>,
}

/// The language model: token embeddings, decoder layers, final norm and LM head.
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: DecoderConfig,
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: RotaryEmbedding,
    cache: KvCache,
    mode: Mode,
    dtype: DType,
    weight_dtype: DType,
    /// Set when the matrices are GGML blocks; the candle embedding and head are then empty placeholders.
    quant: Option<QuantEnds>,
    device: Device,
}

impl Decoder {
    /// Builds the decoder from `vb` rooted at the checkpoint's top level (so that `model.` and
    /// `lm_head.` resolve). Starts in [`Mode::Inference`] with an empty KV cache.
    ///
    /// Errors: a missing weight or a weight of the wrong shape (candle error naming the tensor).
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let vm = vb.pp("model");
        let embed_tokens = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, vm.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, vm.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vm.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed_tokens.embeddings().clone(), None)
        } else {
            candle_nn::linear_no_bias(cfg.hidden_size, cfg.vocab_size, vb.pp("lm_head"))?
        };
        let rope =
            RotaryEmbedding::new(cfg.rope_theta, cfg.head_dim, cfg.max_position_embeddings, vb.dtype(), vb.device())?;
        Ok(Self {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            cache: KvCache::new(cfg.num_hidden_layers),
            mode: Mode::Inference,
            dtype: vb.dtype(),
            weight_dtype: vb.dtype(),
            quant: None,
            device: vb.device().clone(),
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// Current kernel mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Switches between fused inference kernels and differentiable ops (same results up to rounding).
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// dtype of weights and activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// dtype of the matrix weights (embeddings, projections, LM head): [`Decoder::dtype`] unless
    /// converted with [`Decoder::convert_weights`] (for q8_0/q4_0 blocks: the dtype they were made from;
    /// see [`Decoder::weight_format`]).
    pub fn weight_dtype(&self) -> DType {
        self.weight_dtype
    }

    /// Storage of the matrix weights: a dtype, or q8_0/q4_0 GGML blocks.
    pub fn weight_format(&self) -> WeightFormat {
        match &self.quant {
            Some(q) => WeightFormat::Quant(q.format),
            None => WeightFormat::Dense(self.weight_dtype),
        }
    }

    /// Bytes held by the weights: matrices as stored ([`Decoder::weight_format`]: a dtype, or GGML
    /// blocks of 32 weights), norms and biases at [`Decoder::dtype`] (a tied LM head counted once).
    pub fn weight_bytes(&self) -> usize {
        let c = &self.cfg;
        let (h, q, kv) = (c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim);
        let per_layer = h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size;
        let emb = c.vocab_size * h * if c.tie_word_embeddings { 1 } else { 2 };
        let matrices = emb + c.num_hidden_layers * per_layer;
        // Exact for q8_0/q4_0 too: every quantised matrix holds a whole number of 32-weight blocks.
        let matrix_bytes = (matrices as f64 * self.weight_format().bytes_per_weight()).round() as usize;
        matrix_bytes + (c.num_parameters() - matrices) * self.dtype.size_in_bytes()
    }

    /// Stores the matrix weights (token embeddings, attention and MLP projections, LM head; a tied
    /// head keeps sharing the embedding table) in `dtype` for inference; activations, norms and biases
    /// stay in [`Decoder::dtype`]. With bf16 weights and f32 activations the products run through
    /// [`kernels::matmul_bf16`] (half the memory and memory traffic of f32; decode is bound by the
    /// latter). The original tensors are released (their memory is freed unless something else, e.g.
    /// a `VarMap`, still holds them).
    ///
    /// q8_0 / q4_0 ([`WeightFormat::Quant`]): every matrix becomes GGML blocks
    /// ([`quant::QuantLinear`]; q|k|v and gate|up stacked as for bf16; the token embeddings
    /// too, rows dequantised on lookup, the tied LM head sharing them), biases kept in f32; decode runs
    /// the int8 block dot products, prefill dequantised bf16 panels. Needs f32 activations on the CPU.
    ///
    /// Errors: [`Error::Invalid`] for a dtype other than bf16 or the activation dtype, bf16 or q8_0/q4_0
    /// weights with activations other than f32 on the CPU, or weights already in GGML blocks;
    /// [`Error::Quant`] naming the tensor when a matrix width is not a multiple of 32.
    pub fn convert_weights(&mut self, format: impl Into<WeightFormat>) -> Result<()> {
        if self.quant.is_some() {
            return Err(Error::Invalid(format!("the LLM weights are already {}", self.weight_format())));
        }
        let dtype = match format.into() {
            WeightFormat::Dense(dtype) => dtype,
            WeightFormat::Quant(q) => return self.quantize_weights(q),
        };
        if dtype != self.dtype && !(dtype == DType::BF16 && self.dtype == DType::F32 && self.device.is_cpu()) {
            return Err(Error::Invalid(format!(
                "weights in {dtype:?} are supported only as bf16 with f32 activations on the CPU (activations: {:?})",
                self.dtype
            )));
        }
        let table = self.embed_tokens.embeddings().to_dtype(dtype)?.detach();
        self.embed_tokens = Embedding::new(table.clone(), self.cfg.hidden_size);
        self.lm_head = if self.cfg.tie_word_embeddings {
            Linear::new(table, None)
        } else {
            attention::convert_linear(&self.lm_head, dtype)?
        };
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.convert_weights(dtype.into(), &format!("model.layers.{i}"))?;
        }
        self.weight_dtype = dtype;
        Ok(())
    }

    /// [`Decoder::convert_weights`] to q8_0/q4_0. The widths are checked before anything changes, so a
    /// matrix that cannot be quantised leaves the decoder as it was.
    fn quantize_weights(&mut self, q: QuantFormat) -> Result<()> {
        if self.dtype != DType::F32 || !self.device.is_cpu() {
            return Err(Error::Invalid(format!(
                "{q} weights need f32 activations on the CPU (activations: {:?})",
                self.dtype
            )));
        }
        let c = &self.cfg;
        let widths = [
            ("model.embed_tokens.weight", c.hidden_size),
            ("model.layers.0.self_attn.q_proj.weight", c.hidden_size),
            ("model.layers.0.self_attn.o_proj.weight", c.num_attention_heads * c.head_dim),
            ("model.layers.0.mlp.gate_proj.weight", c.hidden_size),
            ("model.layers.0.mlp.down_proj.weight", c.intermediate_size),
        ];
        if let Some((name, k)) = widths.iter().find(|(_, k)| !k.is_multiple_of(quant::QK)) {
            return Err(quant::QuantError::Width { tensor: name.to_string(), rows: self.rows_of(name), k: *k }.into());
        }
        let table = self.embed_tokens.embeddings();
        let embed = QuantLinear::quantize("model.embed_tokens.weight", q, table, None)?;
        let lm_head = if self.cfg.tie_word_embeddings {
            None
        } else {
            Some(QuantLinear::quantize("lm_head.weight", q, self.lm_head.weight(), self.lm_head.bias())?)
        };
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.convert_weights(q.into(), &format!("model.layers.{i}"))?;
        }
        let h = self.cfg.hidden_size;
        let empty = Tensor::zeros((0, h), self.dtype, &self.device)?;
        self.embed_tokens = Embedding::new(empty.clone(), h);
        self.lm_head = Linear::new(empty, None);
        self.quant = Some(QuantEnds { format: q, embed, lm_head });
        Ok(())
    }

    /// Rows (output features) of the tensor `name` of layer 0 or the embeddings, for error messages.
    fn rows_of(&self, name: &str) -> usize {
        let c = &self.cfg;
        match name {
            n if n.contains("embed_tokens") => c.vocab_size,
            n if n.contains("q_proj") => c.num_attention_heads * c.head_dim,
            n if n.contains("gate_proj") => c.intermediate_size,
            _ => c.hidden_size,
        }
    }

    /// Device of weights and activations.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token embeddings: `ids` (B, L) u32 → (B, L, H).
    ///
    /// Errors: [`Error::Invalid`] if an id is ≥ `vocab_size`; candle errors for a bad rank/dtype.
    pub fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = ids.to_dtype(DType::U32)?;
        let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>().ok();
        if let Some(m) = max {
            if m as usize >= self.cfg.vocab_size {
                return Err(Error::Invalid(format!(
                    "token id {m} is out of range for vocab_size {}",
                    self.cfg.vocab_size
                )));
            }
        }
        if let Some(q) = &self.quant {
            // GGML blocks: each id's row dequantised (GGML's `get_rows` on a quantised table).
            let (w, h) = (q.embed.weight(), self.cfg.hidden_size);
            let flat = ids.flatten_all()?.to_vec1::<u32>()?;
            let mut out = vec![0f32; flat.len() * h];
            for (row, &id) in out.chunks_exact_mut(h).zip(&flat) {
                w.dequantize_row(id as usize, row);
            }
            let mut shape = ids.dims().to_vec();
            shape.push(h);
            return Ok(Tensor::from_vec(out, shape, &self.device)?);
        }
        Ok(self.embed_tokens.forward(&ids)?.to_dtype(self.dtype)?)
    }

    /// Number of positions in the KV cache (the position of the next token).
    pub fn kv_len(&self) -> usize {
        self.cache.len()
    }

    /// Empties the KV cache (call between sequences).
    pub fn clear_kv_cache(&mut self) {
        self.cache.clear();
    }

    /// Removes and returns the KV cache (e.g. to keep one cache per sequence), leaving an empty one.
    pub fn take_kv_cache(&mut self) -> KvCache {
        std::mem::replace(&mut self.cache, KvCache::new(self.cfg.num_hidden_layers))
    }

    /// Installs a cache previously returned by [`Decoder::take_kv_cache`].
    ///
    /// Errors: [`Error::Invalid`] if it was made for a different number of layers.
    pub fn set_kv_cache(&mut self, cache: KvCache) -> Result<()> {
        if cache.num_layers() != self.cfg.num_hidden_layers {
            return Err(Error::Invalid(format!(
                "KV cache has {} layers, decoder has {}",
                cache.num_layers(),
                self.cfg.num_hidden_layers
            )));
        }
        self.cache = cache;
        Ok(())
    }

    /// Additive causal mask (L, start + L): 0 where key j ≤ start + i, −∞ after.
    fn causal_mask(&self, l: usize, start: usize) -> Result<Option<Tensor>> {
        // Not needed for L = 1, nor by the inference attention op (causal by construction).
        if l == 1 || (self.mode == Mode::Inference && self.dtype == DType::F32 && self.device.is_cpu()) {
            return Ok(None);
        }
        let total = start + l;
        let mask: Vec<f32> =
            (0..l).flat_map(|i| (0..total).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 })).collect();
        Ok(Some(Tensor::from_vec(mask, (l, total), &self.device)?.to_dtype(self.dtype)?))
    }

    fn check_input(&self, embeds: &Tensor, start: usize) -> Result<(usize, usize)> {
        if self.mode == Mode::Differentiable && self.quant.is_some() {
            return Err(Error::Invalid(format!(
                "the differentiable mode needs {:?} weights; these were converted to {} for inference",
                self.dtype,
                self.weight_format()
            )));
        }
        if self.mode == Mode::Differentiable && self.weight_dtype != self.dtype {
            return Err(Error::Invalid(format!(
                "the differentiable mode needs {:?} weights; these were converted to {:?} for inference",
                self.dtype, self.weight_dtype
            )));
        }
        let dims = embeds.dims();
        if dims.len() != 3 || dims[2] != self.cfg.hidden_size {
            return Err(Error::Shape {
                name: "input embeddings".into(),
                expected: vec![0, 0, self.cfg.hidden_size],
                found: dims.to_vec(),
            });
        }
        let (b, l) = (dims[0], dims[1]);
        if l == 0 || b == 0 {
            return Err(Error::Invalid("input embeddings are empty (B or L is 0)".into()));
        }
        if start + l > self.cfg.max_position_embeddings {
            return Err(Error::ContextWindow { len: start + l, max: self.cfg.max_position_embeddings });
        }
        Ok((b, l))
    }

    /// Runs the layers on `embeds` (B, L, H) at positions `start_pos..start_pos + L`, using and
    /// extending the KV cache; returns the hidden states after the final norm, (B, L, H).
    ///
    /// Prefill: `start_pos = 0` on an empty cache; decode: `start_pos = kv_len()`.
    /// Errors: [`Error::Invalid`] if `start_pos != kv_len()`; [`Error::ContextWindow`] if
    /// `start_pos + L > max_position_embeddings`;
    /// [`Error::Shape`] if the last dimension is not H.
    pub fn forward_embeds(&mut self, embeds: &Tensor, start_pos: usize) -> Result<Tensor> {
        if self.mode == Mode::Inference {
            return kernels::threads::in_pool(|| self.forward_embeds_here(embeds, start_pos));
        }
        self.forward_embeds_here(embeds, start_pos)
    }

    /// [`Decoder::forward_embeds`] on the calling thread.
    fn forward_embeds_here(&mut self, embeds: &Tensor, start_pos: usize) -> Result<Tensor> {
        let (_b, l) = self.check_input(embeds, start_pos)?;
        if start_pos != self.cache.len() {
            return Err(Error::Invalid(format!(
                "start_pos {start_pos} does not match the KV cache length {}",
                self.cache.len()
            )));
        }
        let mask = self.causal_mask(l, start_pos)?;
        let mut xs = embeds.to_dtype(self.dtype)?;
        for (i, layer) in self.layers.iter().enumerate() {
            xs = layer.forward(&xs, &self.rope, start_pos, mask.as_ref(), Some((&mut self.cache, i)), self.mode)?;
        }
        self.cache.advance(l);
        self.norm.forward(&xs, self.mode)
    }

    /// One decode step of S sequences at once (continuous batching): token `ids[s]` of sequence s at
    /// position `caches[s].len()`, appended to `caches[s]` (each cache as [`Decoder::take_kv_cache`]
    /// returns it, FastV's included) → logits (S, vocab_size). The matrices are read once for all S
    /// rows (the bf16 and quantised mat-vec kernels stream each weight row once for every input row),
    /// so a step of S sequences costs little more than a step of one while decode is memory-bound;
    /// attention runs per sequence over its own cache. Equal to S separate [`Decoder::forward_embeds`]
    /// steps up to float rounding. Outside f32 CPU inference the sequences are stepped one by one.
    ///
    /// Errors: [`Error::Invalid`] for no sequences, `ids`/`caches` of different lengths, or a cache
    /// made for another layer count; [`Error::ContextWindow`] when a sequence is full. On an error
    /// inside the layers the caches are left part-way through the step: drop them.
    pub fn decode_batch(&mut self, ids: &[u32], caches: &mut [KvCache]) -> Result<Tensor> {
        if ids.is_empty() || ids.len() != caches.len() {
            return Err(Error::Invalid(format!(
                "decode_batch: {} token ids for {} KV caches (need the same number, at least one)",
                ids.len(),
                caches.len()
            )));
        }
        for c in caches.iter() {
            if c.num_layers() != self.cfg.num_hidden_layers {
                return Err(Error::Invalid(format!(
                    "KV cache has {} layers, decoder has {}",
                    c.num_layers(),
                    self.cfg.num_hidden_layers
                )));
            }
            if c.len() + 1 > self.cfg.max_position_embeddings {
                return Err(Error::ContextWindow { len: c.len() + 1, max: self.cfg.max_position_embeddings });
            }
        }
        let batched =
            self.mode == Mode::Inference && self.dtype == DType::F32 && self.device.is_cpu() && self.rope.is_f32();
        if !batched {
            let own = self.take_kv_cache();
            let mut rows = Vec::with_capacity(ids.len());
            let mut step_all = || -> Result<()> {
                for (&id, cache) in ids.iter().zip(caches.iter_mut()) {
                    self.cache = std::mem::take(cache);
                    let pos = self.cache.len();
                    let step =
                        Tensor::new(&[[id]], &self.device).map_err(Error::from).and_then(|t| self.forward_ids(&t, pos));
                    *cache = self.take_kv_cache();
                    rows.push(step?.squeeze(1)?);
                }
                Ok(())
            };
            let done = step_all();
            self.cache = own;
            done?;
            return Ok(Tensor::cat(&rows, 0)?);
        }
        kernels::threads::in_pool(|| {
            let ids = Tensor::from_vec(ids.to_vec(), (ids.len(), 1), &self.device)?;
            let mut xs = self.embed_tokens(&ids)?;
            for (i, layer) in self.layers.iter().enumerate() {
                xs = layer.forward_decode_rows(&xs, &self.rope, caches, i)?;
            }
            caches.iter_mut().for_each(|c| c.advance(1));
            let h = self.norm.forward(&xs, Mode::Inference)?;
            Ok(self.lm_head(&h)?.squeeze(1)?)
        })
    }

    /// Like [`Decoder::forward_embeds`] from position 0 but without touching the KV cache (training,
    /// query embedding). Returns final-norm hidden states (B, L, H). Sequences shorter than L must be
    /// right-padded: with causal attention the padding cannot affect the valid positions.
    pub fn forward_hidden(&self, embeds: &Tensor) -> Result<Tensor> {
        if self.mode == Mode::Inference {
            return kernels::threads::in_pool(|| self.forward_hidden_here(embeds));
        }
        self.forward_hidden_here(embeds)
    }

    /// [`Decoder::forward_hidden`] on the calling thread.
    fn forward_hidden_here(&self, embeds: &Tensor) -> Result<Tensor> {
        let (_b, l) = self.check_input(embeds, 0)?;
        let mask = self.causal_mask(l, 0)?;
        let mut xs = embeds.to_dtype(self.dtype)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &self.rope, 0, mask.as_ref(), None, self.mode)?;
        }
        self.norm.forward(&xs, self.mode)
    }

    /// LM head on any hidden states: (B, L, H) → logits (B, L, vocab_size).
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        if let Some(q) = &self.quant {
            return q.lm_head.as_ref().unwrap_or(&q.embed).forward(hidden);
        }
        if self.mode == Mode::Differentiable && kernels::autograd::supports(hidden) {
            return kernels::autograd::linear(hidden, self.lm_head.weight(), self.lm_head.bias());
        }
        kernels::matmul::nn_linear(hidden, &self.lm_head)
    }

    /// Convenience: embed `ids` (B, L), run [`Decoder::forward_embeds`], return logits (B, L, vocab).
    pub fn forward_ids(&mut self, ids: &Tensor, start_pos: usize) -> Result<Tensor> {
        let e = self.embed_tokens(ids)?;
        let h = self.forward_embeds(&e, start_pos)?;
        self.lm_head(&h)
    }

    /// QueCC's query embedding (paper §4; authors' `clip_encoder.py`): the LLM run on the question
    /// tokens alone, last layer's hidden state after the final norm at the last non-padding token.
    ///
    /// `ids`: (B, L) right-padded question tokens (tokenised as the LLM tokenizer does by default,
    /// i.e. with BOS for Llama); `lengths`: non-padding length of each row (`None` = all L).
    /// Returns (B, 1, H). Does not touch the KV cache.
    /// Errors: [`Error::Invalid`] if `lengths` has the wrong count or a length is 0 or > L.
    pub fn query_embedding(&self, ids: &Tensor, lengths: Option<&[usize]>) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let lengths: Vec<usize> = match lengths {
            Some(v) => v.to_vec(),
            None => vec![l; b],
        };
        if lengths.len() != b || lengths.iter().any(|&n| n == 0 || n > l) {
            return Err(Error::Invalid(format!("query lengths {lengths:?} do not fit ids of shape ({b}, {l})")));
        }
        let hidden = self.forward_hidden(&self.embed_tokens(ids)?)?;
        let rows = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| hidden.narrow(0, i, 1)?.narrow(1, n - 1, 1))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&rows, 0)?)
    }
}
