//! SwiGLU MLP (HF `Qwen2MLP` / `LlamaMLP`): `down(silu(gate(x)) · up(x))`.
use candle_core::{DType, Tensor};
use candle_nn::{linear_b, Linear, VarBuilder};

use super::DecoderConfig;
use crate::matmul::nn_linear;
use crate::Result;

/// The feed-forward block of one decoder layer.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    /// Loads `{vb}.{gate,up,down}_proj.weight` (+ `.bias` when `mlp_bias`).
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i, b) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Self {
            gate_proj: linear_b(h, i, b, vb.pp("gate_proj"))?,
            up_proj: linear_b(h, i, b, vb.pp("up_proj"))?,
            down_proj: linear_b(i, h, b, vb.pp("down_proj"))?,
        })
    }

    /// Training path: `residual + down(silu(gate(x)) · up(x))` with fused differentiable ops
    /// ([`crate::autograd`]). `xs`, `residual` (B, L, H) → (B, L, H).
    /// Errors: dtypes other than f32/f64 ([`crate::Error::Invalid`]), shape mismatches.
    pub fn forward_fused(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        use crate::autograd::{linear, linear_residual, silu_mul};
        let gate = linear(xs, self.gate_proj.weight(), self.gate_proj.bias())?;
        let up = linear(xs, self.up_proj.weight(), self.up_proj.bias())?;
        let act = silu_mul(&gate, &up)?;
        match self.down_proj.bias() {
            None => linear_residual(&act, self.down_proj.weight(), residual),
            Some(bias) => Ok((linear(&act, self.down_proj.weight(), Some(bias))? + residual)?),
        }
    }

    /// Converts the projection weights to `dtype` (biases unchanged).
    pub(crate) fn convert_weights(&mut self, dtype: DType) -> Result<()> {
        for l in [&mut self.gate_proj, &mut self.up_proj, &mut self.down_proj] {
            *l = super::attention::convert_linear(l, dtype)?;
        }
        Ok(())
    }

    /// (B, L, H) → (B, L, H). `silu` has a backward pass in candle, so one path serves both modes.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let gate = nn_linear(xs, &self.gate_proj)?.silu()?;
        let up = nn_linear(xs, &self.up_proj)?;
        nn_linear(&(gate * up)?, &self.down_proj)
    }
}
