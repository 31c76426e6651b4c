//! TokenPacker (Li et al. 2024), the compressor behind the paper's scaling grid, following its authors'
//! `llava/model/multimodal_projector/builder.py` (CircleRadon/TokenPacker), with the down-sampling ratio
//! generalised from 2 to r = G/√V:
//!
//! ```text
//! q   = ln_q_1(q_proj_1(bilinear(single → √V×√V)))    q_proj_1 = Linear(d→d, no bias); F.interpolate
//!                                                     (mode="bilinear", align_corners=False)
//! k   = ln_k_1(k_proj_1(multi)), v = ln_v_1(v_proj_1(multi))   Linear(4d→d) → GELU → Linear(d→d)
//! out = clip_attn(q, window(k), window(v))            nn.MultiheadAttention(d, d/128 = 8), r×r windows
//! ```
//! No residual and no query text. LayerNorm eps 1e-6. The authors' module also contains the projector
//! (`mlp.0`, `mlp.2`, an `mlp2x_gelu`); here it is the separate [`crate::projector::Projector`].
//!
//! Weight names (under the compressor's prefix, `model.mm_projector` in TokenPacker checkpoints):
//! `q_proj_1.weight`, `k_proj_1.{0,2}.*`, `v_proj_1.{0,2}.*`, `ln_q_1.*`, `ln_k_1.*`, `ln_v_1.*`,
//! `clip_attn.{in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias}`.
use super::window_attention::{FeatureMlp, WindowAttention};
use super::{check_multi, check_single, output_grid_for, Compressor};
use crate::layers::{LayerNorm, Linear};
use crate::vision::VisionFeatures;
use crate::Mode;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;

/// TokenPacker hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenPackerConfig {
    /// Tower width d (1024).
    pub embed_dim: usize,
    /// Width of the multi-level features (4d = 4096).
    pub multi_dim: usize,
    /// Patch grid side G (24).
    pub grid: usize,
    /// Visual tokens V (the authors' default 144 = (24/2)²).
    pub visual_tokens: usize,
    /// Attention heads (d / 128 = 8 for d = 1024).
    pub num_heads: usize,
}

impl TokenPackerConfig {
    /// Defaults for a tower of width d and a G×G grid: V = (G/2)², multi width 4d, 8 heads.
    pub fn new(embed_dim: usize, grid: usize) -> Self {
        Self { embed_dim, multi_dim: 4 * embed_dim, grid, visual_tokens: (grid / 2) * (grid / 2), num_heads: 8 }
    }
}

/// The TokenPacker compressor (see the module docs).
#[derive(Debug, Clone)]
pub struct TokenPacker {
    cfg: TokenPackerConfig,
    out_grid: usize,
    q_proj_1: Linear,
    ln_q_1: LayerNorm,
    k_proj_1: FeatureMlp,
    ln_k_1: LayerNorm,
    v_proj_1: FeatureMlp,
    ln_v_1: LayerNorm,
    interp: Tensor, // (g, G) bilinear weights
    mode: Mode,
    attn: WindowAttention,
}

/// PyTorch `upsample_bilinear2d` (align_corners=False) weights along one axis: (out, in).
pub fn bilinear_matrix(in_size: usize, out_size: usize, dev: &Device) -> Result<Tensor> {
    let scale = in_size as f64 / out_size as f64;
    let mut m = vec![0f32; out_size * in_size];
    for o in 0..out_size {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(in_size - 1);
        let i1 = if i0 + 1 < in_size { i0 + 1 } else { i0 };
        let l1 = src - i0 as f64;
        m[o * in_size + i0] += (1.0 - l1) as f32;
        m[o * in_size + i1] += l1 as f32;
    }
    Ok(Tensor::from_vec(m, (out_size, in_size), dev)?)
}

impl TokenPacker {
    /// Builds TokenPacker from `vb`. Errors: V not producible from the grid ([`Error::Invalid`] naming V
    /// and the allowed values), bad head count, missing tensor, wrong shape.
    pub fn new(cfg: &TokenPackerConfig, mode: Mode, vb: VarBuilder) -> Result<Self> {
        let out_grid = output_grid_for(cfg.visual_tokens, cfg.grid)?;
        let d = cfg.embed_dim;
        let ln = |name: &str| LayerNorm::new(d, 1e-6, mode, vb.pp(name));
        Ok(Self {
            cfg: cfg.clone(),
            out_grid,
            q_proj_1: Linear::new(d, d, false, vb.pp("q_proj_1"))?,
            ln_q_1: ln("ln_q_1")?,
            k_proj_1: FeatureMlp::new(cfg.multi_dim, d, vb.pp("k_proj_1"))?,
            ln_k_1: ln("ln_k_1")?,
            v_proj_1: FeatureMlp::new(cfg.multi_dim, d, vb.pp("v_proj_1"))?,
            ln_v_1: ln("ln_v_1")?,
            interp: bilinear_matrix(cfg.grid, out_grid, vb.device())?.to_dtype(vb.dtype())?,
            mode,
            attn: WindowAttention::new(d, cfg.num_heads, mode, vb.pp("clip_attn"))?,
        })
    }

    /// Bilinear down-sampling (B, G², d) → (B, g², d), separable: rows then columns.
    fn downsample(&self, x: &Tensor, b: usize) -> Result<Tensor> {
        let (gi, go, d) = (self.cfg.grid, self.out_grid, self.cfg.embed_dim);
        let m = self.interp.unsqueeze(0)?.broadcast_as((b, go, gi))?;
        let rows = m.matmul(&x.reshape((b, gi, gi * d))?)?; // (B, go, gi·d): (row_out, col_in, d)
        let cols = rows.reshape((b, go, gi, d))?.transpose(1, 2)?.reshape((b, gi, go * d))?;
        let out = m.matmul(&cols)?; // (B, col_out, row_out·d)
        Ok(out.reshape((b, go, go, d))?.transpose(1, 2)?.reshape((b, go * go, d))?)
    }
}

impl Compressor for TokenPacker {
    fn compress(&self, features: &VisionFeatures, _query: Option<&Tensor>) -> Result<Tensor> {
        if features.grid != self.cfg.grid {
            return Err(Error::Invalid(format!(
                "TokenPacker built for a {0}×{0} grid, features have {1}×{1}",
                self.cfg.grid, features.grid
            )));
        }
        let b = check_single(features, self.cfg.embed_dim)?;
        let multi = check_multi(features, b, self.cfg.multi_dim)?;
        if self.mode == Mode::Differentiable {
            // Training: the frozen features in window order before the row-wise k/v projections
            // (instead of reordering the projected keys and values).
            let multi = super::window_attention::windows(multi, self.cfg.grid, self.out_grid)?;
            let keys = self.ln_k_1.forward(&self.k_proj_1.forward(&multi)?)?;
            let values = self.ln_v_1.forward(&self.v_proj_1.forward(&multi)?)?;
            let q = self.downsample(&features.single, b)?;
            let q = self.ln_q_1.forward(&self.q_proj_1.forward(&q)?)?;
            return self.attn.forward_windowed(&q, &keys, &values);
        }
        let keys = self.ln_k_1.forward(&self.k_proj_1.forward(multi)?)?;
        let values = self.ln_v_1.forward(&self.v_proj_1.forward(multi)?)?;
        let q = self.downsample(&features.single, b)?;
        let q = self.ln_q_1.forward(&self.q_proj_1.forward(&q)?)?;
        self.attn.forward(&q, &keys, &values, self.cfg.grid, self.out_grid)
    }
    fn convert_weights(&mut self, format: quant::WeightFormat) -> Result<()> {
        self.q_proj_1.convert_weights(format)?;
        self.k_proj_1.convert_weights(format)?;
        self.v_proj_1.convert_weights(format)?;
        self.attn.convert_weights(format)
    }

    fn visual_tokens(&self) -> usize {
        self.out_grid * self.out_grid
    }
    fn needs_query(&self) -> bool {
        false
    }
    fn needs_multi(&self) -> bool {
        true
    }
}
