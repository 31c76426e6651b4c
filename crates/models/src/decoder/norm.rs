//! RMSNorm (HF `Qwen2RMSNorm` / `LlamaRMSNorm`): `w · x / sqrt(mean(x²) + eps)`, statistics in f32 (f64 kept for f64 inputs).
use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;

use crate::Mode;
use crate::Result;

/// Root-mean-square layer norm over the last dimension.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Loads `{vb}.weight` of shape (size,). Errors: missing tensor or wrong shape (candle error naming it).
    /// A `VarMap`-backed builder (training) initialises the weight to ones, as HF does.
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self { weight: vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?, eps })
    }

    /// `xs`: (…, size) → (…, size), same dtype.
    pub fn forward(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        match mode {
            Mode::Inference => Ok(candle_nn::ops::rms_norm(&xs.contiguous()?, &self.weight, self.eps as f32)?),
            Mode::Differentiable if kernels::autograd::supports(xs) && xs.dtype() == self.weight.dtype() => {
                kernels::autograd::rms_norm(xs, &self.weight, self.eps)
            }
            Mode::Differentiable => {
                let dtype = xs.dtype();
                // HF upcasts to f32; f64 (gradient checks) stays f64 rather than losing precision.
                let work = if dtype == DType::F64 { DType::F64 } else { DType::F32 };
                let x = xs.to_dtype(work)?;
                let var = x.sqr()?.mean_keepdim(D::Minus1)?;
                let x = x.broadcast_div(&(var + self.eps)?.sqrt()?)?;
                Ok(x.to_dtype(dtype)?.broadcast_mul(&self.weight)?)
            }
        }
    }
}
