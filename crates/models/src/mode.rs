//! The execution mode of every module: fused inference kernels or differentiable tensor ops.

/// Which kernels a module (vision tower, compressor, projector, decoder) uses.
///
/// candle's fused `candle_nn::ops::rms_norm`, `layer_norm`, `softmax_last_dim` and
/// `candle_nn::rotary_emb::rope` have no (or an incomplete) backward pass and silently drop gradients
/// (huggingface/candle #2168, #3011, #3569). [`Mode::Inference`] uses them (and the engine's own
/// inference kernels) for speed; [`Mode::Differentiable`] computes the same functions with ops that
/// candle's autograd (or the kernels crate's fused backward ops) differentiates, so that `backward`
/// reaches every weight and the input embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Fused kernels, no gradients.
    #[default]
    Inference,
    /// Differentiable ops; gradients flow to every weight and to the inputs.
    Differentiable,
}
