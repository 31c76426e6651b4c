//! Rotary position embedding, HF "default" type with the `rotate_half` (non-interleaved) layout
//! (HF `modeling_qwen2.py` / `modeling_llama.py`: `apply_rotary_pos_emb`).
use candle_core::{DType, Device, Tensor, D};

use super::Mode;
use crate::Result;

/// Precomputed cos/sin tables, each (max_position_embeddings, head_dim / 2).
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryEmbedding {
    /// Tables for positions `0..max_positions`; frequencies `θ^(-2i/head_dim)` computed in f32 as HF does.
    pub fn new(
        theta: f64,
        head_dim: usize,
        max_positions: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for f in &inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (max_positions, half), dev)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (max_positions, half), dev)?.to_dtype(dtype)?;
        Ok(Self { cos, sin })
    }

    /// The cos and sin tables (len, head_dim / 2) of positions `start..start + len`, for the fused
    /// training attention ([`crate::autograd::attention`]). Errors: positions beyond the table.
    pub fn tables(&self, start: usize, len: usize) -> Result<crate::autograd::Rope> {
        Ok(crate::autograd::Rope { cos: self.cos.narrow(0, start, len)?, sin: self.sin.narrow(0, start, len)? })
    }

    /// Rotates `xs` (B, heads, L, head_dim) holding positions `start..start + L`.
    pub fn apply(&self, xs: &Tensor, start: usize, mode: Mode) -> Result<Tensor> {
        let (_b, _h, l, d) = xs.dims4()?;
        let cos = self.cos.narrow(0, start, l)?;
        let sin = self.sin.narrow(0, start, l)?;
        match mode {
            Mode::Inference => Ok(candle_nn::rotary_emb::rope(&xs.contiguous()?, &cos, &sin)?),
            Mode::Differentiable => {
                // x·cos + rotate_half(x)·sin with cos/sin repeated to the full head width.
                let cos = Tensor::cat(&[&cos, &cos], D::Minus1)?;
                let sin = Tensor::cat(&[&sin, &sin], D::Minus1)?;
                let x1 = xs.narrow(D::Minus1, 0, d / 2)?;
                let x2 = xs.narrow(D::Minus1, d / 2, d / 2)?;
                let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
                Ok((xs.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
            }
        }
    }
}
