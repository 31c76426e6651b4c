//! The decoder's execution mode: fused inference kernels or differentiable tensor ops.

/// Which kernels the decoder uses.
///
/// candle's fused `candle_nn::ops::rms_norm`, `softmax_last_dim` and `candle_nn::rotary_emb::rope`
/// have no (or an incomplete) backward pass and silently drop gradients (huggingface/candle #2168,
/// #3011, #3569). [`Mode::Inference`] uses them for speed; [`Mode::Differentiable`] computes the same
/// functions with plain tensor ops so that `backward` reaches every weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Fused kernels, no gradients.
    #[default]
    Inference,
    /// Plain tensor ops; gradients flow to every weight and to the input embeddings.
    Differentiable,
}
