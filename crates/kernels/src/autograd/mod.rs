//! Fused forward + backward kernels for training (the models crate's `Mode::Differentiable`):
//! each block is one candle custom op with a hand-written
//! backward pass, instead of a chain of elementary ops.
//!
//! Why: candle's autograd turns every elementary op of the forward pass — views (reshape, transpose,
//! narrow, broadcast) included — into a backward step that allocates a zero gradient, adds into it and
//! often materialises a strided copy. For the small models of the train crate (rows of 32–128
//! floats) that bookkeeping, not arithmetic, dominated a training step (backward took 4–5× the
//! forward). One op per block (a Linear with its bias or residual, RMSNorm, LayerNorm, SwiGLU's gate,
//! GELU, and the whole attention core with RoPE, causal softmax and grouped-query heads) removes it.
//!
//! The functions compute exactly what the composed ops compute (same formulas as HF `modeling_qwen2.py`
//! / PyTorch `nn.LayerNorm`, `nn.GELU`, `F.scaled_dot_product_attention`); the f64 finite-difference
//! tests of the `train` crate check every backward pass. f32 and f64 CPU tensors are supported; other
//! dtypes or devices return [`crate::Error::Invalid`] (callers fall back to composed ops).
//!
//! | file | op |
//! |---|---|
//! | [`linear`] | `x Wᵀ + b`, `x Wᵀ + residual`; no input gradient for tensors outside autograd |
//! | [`norm`] | RMSNorm (HF `Qwen2RMSNorm`), LayerNorm (`torch.nn.LayerNorm`) |
//! | [`activation`] | `silu(gate) · up` (SwiGLU), exact GELU |
//! | [`attention`] | multi-head attention core: RoPE, scaled scores, optional causal mask, softmax, GQA |
//! | [`conv`] | QueCC's depth-wise convolution over token rows; one row added to every token of a sequence |
pub(crate) mod vmath;

mod activation;
mod attention;
mod conv;
pub(crate) mod kernels;
mod linear;
mod norm;

pub use activation::{gelu_erf, quick_gelu, silu_mul, silu_mul_halves};
pub(crate) use attention::softmax_rows;
pub use attention::{attention, AttentionSpec, Rope};

/// Rotary position embedding applied in place to f32 rows, the training attention's rotation: each
/// row of `x` (rows of `width`, heads of `hd`, row r at position `first + r % len`) has every head
/// rotated (`inverse` = false) or un-rotated with the tables `cos`, `sin` (len, hd / 2), HF's
/// `rotate_half` layout.
#[allow(clippy::too_many_arguments)]
pub fn rotate_f32(
    x: &mut [f32],
    width: usize,
    hd: usize,
    len: usize,
    first: usize,
    cos: &[f32],
    sin: &[f32],
    inverse: bool,
) {
    attention::rotate(x, width, hd, len, first, cos, sin, inverse)
}
pub use conv::{add_row, depthwise_conv, ConvTaps};
pub use kernels::serial;
pub use linear::{linear, linear_residual};
pub use norm::{layer_norm, rms_norm};

use candle_core::{DType, Device, Tensor};

/// Whether the fused kernels handle `t` (f32/f64 on the CPU).
pub fn supports(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && matches!(t.dtype(), DType::F32 | DType::F64)
}
