//! QueCC (query-based convolutional cross-attention), exactly as the authors' `quecc.py`
//! (locuslab/llava-token-compression, `llava/model/multimodal_projector/quecc.py`; paper §4):
//!
//! ```text
//! x  = single + text_projection(query)                 text_projection = Linear(H_llm→d) → LayerNorm(1e-6)
//! q  = q_downsample(grid(q_proj(x)))                   q_proj = Linear(d→d) → GELU → Linear(d→d) → LayerNorm(1e-6)
//!                                                      q_downsample = depth-wise Conv2d(d, d, k, stride s, groups d)
//! k  = k_proj(multi), v = v_proj(multi)                Linear(4d→d) → GELU → Linear(d→d) → LayerNorm(1e-6)
//! out = clip_attn(q, window(k), window(v))             nn.MultiheadAttention(d, 8), each query to its own window
//! ```
//! No residual. With kernel k and stride s the output grid side is h = (G − k)/s + 1 (floor), V = h²,
//! and the window side is G/h, which must divide G exactly (the authors' einops rearrange fails otherwise).
//!
//! Weight names (under the compressor's prefix, `model.mm_projector.0` in the authors' checkpoints):
//! `text_projection.0.*`, `text_projection.1.*` (LayerNorm), `q_proj.{0,2,3}.*`, `k_proj.{0,2,3}.*`,
//! `v_proj.{0,2,3}.*`, `q_downsample.weight` (d, 1, k, k), `q_downsample.bias` (d),
//! `clip_attn.{in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias}`.
//!
//! The conv is computed as a gather (`index_select`) of the k×k taps of every output cell followed by a
//! weighted sum, so the whole module is differentiable in [`Mode::Differentiable`].
use super::window_attention::{FeatureMlp, WindowAttention};
use super::{allowed_visual_tokens, check_multi, check_single, Compressor};
use crate::layers::{weight, LayerNorm, Linear};
use crate::vision::VisionFeatures;
use crate::Mode;
use crate::{Error, Result};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// QueCC hyper-parameters (the authors' `training_config` fields in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct QueccConfig {
    /// Tower width d (`tower_config.hidden_size`, 1024).
    pub embed_dim: usize,
    /// Width of the multi-level features (hard-coded 4096 = 4·1024 by the authors).
    pub multi_dim: usize,
    /// Width of the query embedding, H_llm (`mm_vision_output_text_embedding_size`, default 4096).
    pub text_dim: usize,
    /// Patch grid side G (24).
    pub grid: usize,
    /// Conv kernel k (`mm_vision_token_compression_kernel_size`, default 4).
    pub kernel: usize,
    /// Conv stride s (`mm_vision_token_compression_stride`, default 4).
    pub stride: usize,
    /// Attention heads (8).
    pub num_heads: usize,
    /// Add the projected query to the features (the paper's method). `false` is the ablation without
    /// query injection; `text_projection` is then neither loaded nor used.
    pub use_query: bool,
}

impl QueccConfig {
    /// The authors' defaults for a tower of width d with a G×G grid and an LLM of width H_llm:
    /// kernel = stride = 4 (V = 36 on 24×24), multi-level width 4d, 8 heads, query on.
    pub fn new(embed_dim: usize, grid: usize, text_dim: usize) -> Self {
        Self {
            embed_dim,
            multi_dim: 4 * embed_dim,
            text_dim,
            grid,
            kernel: 4,
            stride: 4,
            num_heads: 8,
            use_query: true,
        }
    }

    /// Sets kernel = stride = G/√V (the authors' scripts' scheme). Errors: V not producible →
    /// [`Error::Invalid`] naming V and the allowed values.
    pub fn with_visual_tokens(mut self, visual_tokens: usize) -> Result<Self> {
        let g = super::output_grid_for(visual_tokens, self.grid)?;
        self.kernel = self.grid / g;
        self.stride = self.kernel;
        Ok(self)
    }

    /// Output grid side h = (G − k)/s + 1. Errors: k or s zero, k > G, or G/h not a whole window.
    pub fn out_grid(&self) -> Result<usize> {
        let (g, k, s) = (self.grid, self.kernel, self.stride);
        if k == 0 || s == 0 || k > g {
            return Err(Error::Invalid(format!(
                "QueCC kernel {k} / stride {s} invalid for a {g}×{g} grid (need 1 ≤ kernel ≤ {g}, stride ≥ 1)"
            )));
        }
        let h = (g - k) / s + 1;
        if g % h != 0 {
            return Err(Error::Invalid(format!(
                "QueCC kernel {k}, stride {s} gives a {h}×{h} query grid (V = {}), whose windows do not tile the \
                 {g}×{g} grid; allowed V: {:?}",
                h * h,
                allowed_visual_tokens(g)
            )));
        }
        Ok(h)
    }
}

/// The QueCC compressor (see the module docs).
#[derive(Debug, Clone)]
pub struct Quecc {
    cfg: QueccConfig,
    out_grid: usize,
    text_projection: Option<(Linear, LayerNorm)>,
    q_proj: (FeatureMlp, LayerNorm),
    k_proj: (FeatureMlp, LayerNorm),
    v_proj: (FeatureMlp, LayerNorm),
    conv_weight: Tensor, // (d, 1, k, k) as stored; kept as the Var itself so optimiser updates apply
    conv_bias: Tensor,   // (d)
    taps: Tensor,        // (h·h·k·k) u32 indices into the G² grid: `conv_taps` as a tensor
    conv_taps: kernels::autograd::ConvTaps, // the same taps for the fused training op
    mode: Mode,
    attn: WindowAttention,
}

impl Quecc {
    /// Builds QueCC from `vb` (prefix `model.mm_projector.0` in the authors' checkpoints).
    /// Errors: invalid kernel/stride/V or heads ([`Error::Invalid`]), missing tensor, wrong shape.
    pub fn new(cfg: &QueccConfig, mode: Mode, vb: VarBuilder) -> Result<Self> {
        let out_grid = cfg.out_grid()?;
        let d = cfg.embed_dim;
        let ln = |vb: VarBuilder| LayerNorm::new(d, 1e-6, mode, vb);
        let text_projection = if cfg.use_query {
            let tp = vb.pp("text_projection");
            Some((Linear::new(cfg.text_dim, d, true, tp.pp(0))?, ln(tp.pp(1))?))
        } else {
            None
        };
        let mlp = |name: &str, in_dim: usize| -> Result<(FeatureMlp, LayerNorm)> {
            Ok((FeatureMlp::new(in_dim, d, vb.pp(name))?, ln(vb.pp(name).pp(3))?))
        };
        let k = cfg.kernel;
        let bound = 1.0 / ((k * k) as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let conv_w = weight(&vb.pp("q_downsample"), (d, 1, k, k), "weight", init)?;
        let conv_bias = weight(&vb.pp("q_downsample"), d, "bias", init)?;
        let conv_taps = kernels::autograd::ConvTaps::new(cfg.grid, k, cfg.stride)?;
        let taps = Tensor::from_slice(conv_taps.indices(), conv_taps.indices().len(), vb.device())?;
        Ok(Self {
            cfg: cfg.clone(),
            out_grid,
            text_projection,
            q_proj: mlp("q_proj", d)?,
            k_proj: mlp("k_proj", cfg.multi_dim)?,
            v_proj: mlp("v_proj", cfg.multi_dim)?,
            conv_weight: conv_w,
            conv_bias,
            taps,
            conv_taps,
            mode,
            attn: WindowAttention::new(d, cfg.num_heads, mode, vb.pp("clip_attn"))?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &QueccConfig {
        &self.cfg
    }

    /// Whether the fused differentiable kernels ([`kernels::autograd`]) apply to `t`.
    fn fused(&self, t: &Tensor) -> bool {
        self.mode == Mode::Differentiable && kernels::autograd::supports(t)
    }
}

impl Compressor for Quecc {
    fn compress(&self, features: &VisionFeatures, query: Option<&Tensor>) -> Result<Tensor> {
        let d = self.cfg.embed_dim;
        if features.grid != self.cfg.grid {
            return Err(Error::Invalid(format!(
                "QueCC built for a {0}×{0} grid, features have {1}×{1}",
                self.cfg.grid, features.grid
            )));
        }
        let b = check_single(features, d)?;
        let multi = check_multi(features, b, self.cfg.multi_dim)?;
        let mut x = features.single.clone();
        if let Some((lin, ln)) = &self.text_projection {
            let q = query.ok_or_else(|| Error::Invalid("QueCC needs the query embedding (B, 1, H_llm)".into()))?;
            if q.dims() != [b, 1, self.cfg.text_dim] {
                return Err(Error::Invalid(format!(
                    "QueCC query embedding must be ({b}, 1, {}), got {:?}",
                    self.cfg.text_dim,
                    q.dims()
                )));
            }
            let t = ln.forward(&lin.forward(q)?)?;
            x = if self.fused(&x) { kernels::autograd::add_row(&x, &t)? } else { x.broadcast_add(&t)? };
        }
        let q = self.q_proj.1.forward(&self.q_proj.0.forward(&x)?)?; // (B, G², d)
        if self.fused(&q) {
            // Training: one op for the conv, and the frozen features put in window order before the
            // (row-wise) k/v projections instead of the projected keys after them.
            let q = kernels::autograd::depthwise_conv(&q, &self.conv_weight, &self.conv_bias, &self.conv_taps)?;
            let multi = super::window_attention::windows(multi, self.cfg.grid, self.out_grid)?;
            let keys = self.k_proj.1.forward(&self.k_proj.0.forward(&multi)?)?;
            let values = self.v_proj.1.forward(&self.v_proj.0.forward(&multi)?)?;
            return self.attn.forward_windowed(&q, &keys, &values);
        }
        let (h, k) = (self.out_grid, self.cfg.kernel);
        let taps = q.index_select(&self.taps, 1)?.reshape((b, h * h, k * k, d))?;
        let w = self.conv_weight.reshape((d, k * k))?.t()?; // (k·k, d)
        let q = taps.broadcast_mul(&w)?.sum(2)?.broadcast_add(&self.conv_bias)?; // (B, V, d)
        let keys = self.k_proj.1.forward(&self.k_proj.0.forward(multi)?)?;
        let values = self.v_proj.1.forward(&self.v_proj.0.forward(multi)?)?;
        self.attn.forward(&q, &keys, &values, self.cfg.grid, h)
    }
    fn convert_weights(&mut self, format: quant::WeightFormat) -> Result<()> {
        if let Some((linear, _)) = &mut self.text_projection {
            linear.convert_weights(format)?;
        }
        for (mlp, _) in [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj] {
            mlp.convert_weights(format)?;
        }
        self.attn.convert_weights(format)
    }

    fn visual_tokens(&self) -> usize {
        self.out_grid * self.out_grid
    }
    fn needs_query(&self) -> bool {
        self.cfg.use_query
    }
    fn needs_multi(&self) -> bool {
        true
    }
}
