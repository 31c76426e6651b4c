//! Pieces shared by QueCC and TokenPacker: the k/v feature MLPs on multi-level features and the local
//! ("point-to-region") cross-attention in which each query attends only to the patch tokens of its own
//! window (authors' `quecc.py`: einops `b (i k j l) d -> (b i j) (k l) d`; TokenPacker `divide_feature`).
use crate::layers::{Activation, Linear, MultiheadAttention};
use crate::Mode;
use crate::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// `Linear(in → d) → GELU (erf) → Linear(d → d)`, weights at `{prefix}.0` and `{prefix}.2` (an
/// `nn.Sequential`). Input (…, in) → (…, d).
#[derive(Debug, Clone)]
pub struct FeatureMlp {
    fc1: Linear,
    fc2: Linear,
}

impl FeatureMlp {
    /// Loads `{prefix}.0.{weight,bias}` (d, in) and `{prefix}.2.{weight,bias}` (d, d).
    pub fn new(in_dim: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { fc1: Linear::new(in_dim, dim, true, vb.pp(0))?, fc2: Linear::new(dim, dim, true, vb.pp(2))? })
    }

    /// Stores both weight matrices in `format` for inference ([`Linear::convert_weights`]).
    /// Errors: candle conversion errors.
    pub fn convert_weights(&mut self, format: impl Into<quant::WeightFormat>) -> Result<()> {
        let format = format.into();
        self.fc1.convert_weights(format)?;
        self.fc2.convert_weights(format)
    }

    /// (…, in) → (…, d).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&Activation::Gelu.forward(&self.fc1.forward(x)?)?)
    }
}

/// Windowed multi-head cross-attention (`torch.nn.MultiheadAttention`, no residual): the g×g queries
/// each attend to the (G/g)² keys of their window of the G×G grid, windows in row-major order.
#[derive(Debug, Clone)]
pub struct WindowAttention {
    attn: MultiheadAttention,
}

impl WindowAttention {
    /// Loads `{prefix}.in_proj_weight`, `in_proj_bias`, `out_proj.*` (the authors' `clip_attn`).
    pub fn new(dim: usize, num_heads: usize, mode: Mode, vb: VarBuilder) -> Result<Self> {
        Ok(Self { attn: MultiheadAttention::new(dim, num_heads, mode, vb)? })
    }

    /// Stores the attention's projection weights in `format` for inference
    /// ([`MultiheadAttention::convert_weights`]). Errors: candle conversion errors.
    pub fn convert_weights(&mut self, format: impl Into<quant::WeightFormat>) -> Result<()> {
        let format = format.into();
        self.attn.convert_weights(format)
    }

    /// queries (B, g², d) in row-major grid order; keys, values (B, G², d) → (B, g², d).
    /// Requires g | G (checked by the compressors' constructors).
    pub fn forward(
        &self,
        queries: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        grid: usize,
        out_grid: usize,
    ) -> Result<Tensor> {
        self.forward_windowed(queries, &windows(keys, grid, out_grid)?, &windows(values, grid, out_grid)?)
    }

    /// As [`Self::forward`] with keys and values already in window order ([`windows`]), (B·g², (G/g)², d).
    /// Training reorders the frozen multi-level features once instead of the projected keys (the
    /// projections act row by row, so the result is the same).
    pub fn forward_windowed(&self, queries: &Tensor, keys: &Tensor, values: &Tensor) -> Result<Tensor> {
        let (b, n, d) = queries.dims3()?;
        let q = queries.reshape((b * n, 1, d))?;
        let out = self.attn.forward(&q, keys, values)?;
        Ok(out.reshape((b, n, d))?)
    }
}

/// The tokens of each g×g window of a G×G grid: (B, G², c) → (B·g², (G/g)², c), windows and the
/// tokens inside a window in row-major order (authors' einops `b (i k j l) c -> (b i j) (k l) c`).
/// Errors: shapes that do not fit (g must divide G).
pub fn windows(x: &Tensor, grid: usize, out_grid: usize) -> Result<Tensor> {
    let (b, _, c) = x.dims3()?;
    let (g, w) = (out_grid, grid / out_grid);
    Ok(x.reshape((b, g, w, g, w, c))?.permute((0, 1, 3, 2, 4, 5))?.reshape((b * g * g, w * w, c))?)
}
