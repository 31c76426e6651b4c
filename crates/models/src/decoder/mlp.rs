//! SwiGLU MLP (HF `Qwen2MLP` / `LlamaMLP`): `down(silu(gate(x)) · up(x))`.
use candle_core::Tensor;
use candle_nn::{linear_b, Linear, VarBuilder};

use super::DecoderConfig;
use crate::Result;
use kernels::matmul::nn_linear;
use quant::{QuantLinear, WeightFormat};

/// The feed-forward block of one decoder layer.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    /// gate|up stacked into one (2·I, H) matrix by [`Mlp::convert_weights`] for inference (one product
    /// instead of two); `gate_proj`/`up_proj` then hold row views of it.
    gate_up: Option<Linear>,
    /// The stacked gate|up and the down projection as GGML blocks after [`Mlp::convert_weights`] to
    /// q8_0/q4_0 (the candle layers above are then empty (0, in) placeholders).
    quant: Option<(QuantLinear, QuantLinear)>,
}

impl Mlp {
    /// Loads `{vb}.{gate,up,down}_proj.weight` (+ `.bias` when `mlp_bias`).
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i, b) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Self {
            gate_proj: linear_b(h, i, b, vb.pp("gate_proj"))?,
            up_proj: linear_b(h, i, b, vb.pp("up_proj"))?,
            down_proj: linear_b(i, h, b, vb.pp("down_proj"))?,
            gate_up: None,
            quant: None,
        })
    }

    /// Training path: `residual + down(silu(gate(x)) · up(x))` with fused differentiable ops
    /// ([`kernels::autograd`]). `xs`, `residual` (B, L, H) → (B, L, H).
    /// Errors: dtypes other than f32/f64 ([`crate::Error::Invalid`]), shape mismatches.
    pub fn forward_fused(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        use kernels::autograd::{linear, linear_residual, silu_mul};
        let gate = linear(xs, self.gate_proj.weight(), self.gate_proj.bias())?;
        let up = linear(xs, self.up_proj.weight(), self.up_proj.bias())?;
        let act = silu_mul(&gate, &up)?;
        match self.down_proj.bias() {
            None => linear_residual(&act, self.down_proj.weight(), residual),
            Some(bias) => Ok((linear(&act, self.down_proj.weight(), Some(bias))? + residual)?),
        }
    }

    /// Converts the projection weights to `format` (biases unchanged; for q8_0/q4_0 kept in f32 beside
    /// the blocks); `prefix` (`model.layers.{i}.mlp`) names the tensors in errors.
    pub(crate) fn convert_weights(&mut self, format: WeightFormat, prefix: &str) -> Result<()> {
        let dtype = match format {
            WeightFormat::Dense(dtype) => dtype,
            WeightFormat::Quant(q) => {
                let dt = self.down_proj.weight().dtype();
                let (fused, _) = super::attention::stack_linears(&[&self.gate_proj, &self.up_proj], dt)?;
                let gate_up = QuantLinear::quantize(
                    &format!("{prefix}.gate_proj.weight (stacked with up_proj)"),
                    q,
                    fused.weight(),
                    fused.bias(),
                )?;
                let down = QuantLinear::quantize(
                    &format!("{prefix}.down_proj.weight"),
                    q,
                    self.down_proj.weight(),
                    self.down_proj.bias(),
                )?;
                let empty = |l: &Linear| -> Result<Linear> {
                    let w = l.weight();
                    Ok(Linear::new(Tensor::zeros((0, w.dim(1)?), w.dtype(), w.device())?, None))
                };
                [self.gate_proj, self.up_proj, self.down_proj] =
                    [empty(&self.gate_proj)?, empty(&self.up_proj)?, empty(&self.down_proj)?];
                self.gate_up = None;
                self.quant = Some((gate_up, down));
                return Ok(());
            }
        };
        self.down_proj = super::attention::convert_linear(&self.down_proj, dtype)?;
        let (fused, views) = super::attention::stack_linears(&[&self.gate_proj, &self.up_proj], dtype)?;
        [self.gate_proj, self.up_proj] =
            <[Linear; 2]>::try_from(views).map_err(|_| crate::Error::Invalid("gate/up stacking".into()))?;
        self.gate_up = Some(fused);
        Ok(())
    }

    /// (B, L, H) → (B, L, H). `silu` has a backward pass in candle, so one path serves both modes.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if let Some((gate_up, down)) = &self.quant {
            // q8_0/q4_0 weights (f32 CPU inference only): silu(gate)·up straight from the stacked output.
            return down.forward(&kernels::autograd::silu_mul_halves(&gate_up.forward(xs)?)?);
        }
        let (gate, up) = match &self.gate_up {
            Some(fused) => {
                let y = nn_linear(xs, fused)?;
                if !y.track_op() && kernels::autograd::supports(&y) {
                    // Inference on the CPU: silu(gate)·up straight from the stacked output, one pass.
                    return nn_linear(&kernels::autograd::silu_mul_halves(&y)?, &self.down_proj);
                }
                let i = y.dim(candle_core::D::Minus1)? / 2;
                (y.narrow(candle_core::D::Minus1, 0, i)?, y.narrow(candle_core::D::Minus1, i, i)?)
            }
            None => (nn_linear(xs, &self.gate_proj)?, nn_linear(xs, &self.up_proj)?),
        };
        nn_linear(&(gate.silu()? * up)?, &self.down_proj)
    }
}
