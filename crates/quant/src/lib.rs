#![warn(missing_docs)]
//! GGML's Q8_0 and Q4_0 weight formats and their CPU kernels, self-contained (std, `half`, `rayon`;
//! the bf16 prefill route alone calls the kernels crate's `matmul_bf16`).
//!
//! - [`block`]: `block_q8_0` / `block_q4_0` (32 weights, one f16 scale; Q4_0's nibble order), GGML's
//!   reference quantisation and dequantisation, bit-exact.
//! - [`QuantMatrix`]: an (N, K) weight in `nn.Linear` layout as blocks, from f32/bf16/f16 rows; K must
//!   be a multiple of 32 ([`QuantError::Width`] names the tensor otherwise). [`QuantLayout`]: the
//!   blocks row by row (GGML's order) or in interleaved groups of 16 rows (the AVX-512 VNNI kernel's).
//! - [`ActQ8`]: activation rows quantised on the fly to Q8_0, as GGML's CPU backend does.
//! - [`QuantPath`]: the dot-product kernel (AVX-512 VNNI, AVX2, scalar), detected at run time, each
//!   forcible through [`matmul_with`].
//! - [`matvec`] (decode) / [`matmul`] (several rows) / [`matmul_bf16_panels`] (prefill through the
//!   bf16 tile kernel).
//! - [`QuantLinear`]: the inference layer on candle tensors (decode through the int8 dot kernel,
//!   prefill through bf16 panels), and [`WeightFormat`], what `convert_weights` converts to.
//!
//! Source of record: ggml `ggml-common.h` and `ggml-quants.c` (llama.cpp repository); the `gguf`
//! Python package's `gguf.quants` (committed fixtures in `tests/fixtures`).
pub mod act;
pub mod block;
pub mod linear;
pub mod matrix;
pub mod path;
pub mod product;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use act::ActQ8;
pub use block::{BlockQ4_0, BlockQ8_0, QK};
pub use linear::{fallback_note, QuantLinear, WeightFormat};
pub use matrix::{QuantFormat, QuantLayout, QuantMatrix, GROUP_ROWS};
pub use path::QuantPath;
pub use product::{matmul, matmul_bf16_panels, matmul_f32_panels, matmul_with, matvec};

/// Errors of the quantised formats and products.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// The width of a matrix is not a positive multiple of the 32-weight block.
    #[error(
        "tensor `{tensor}`: shape ({rows}, {k}): width {k} is not a positive multiple of 32, the q8_0/q4_0 block size"
    )]
    Width {
        /// The tensor's name.
        tensor: String,
        /// Its rows.
        rows: usize,
        /// Its width.
        k: usize,
    },
    /// A buffer has the wrong number of values.
    #[error("{what}: expected {expected} values, found {found}")]
    Length {
        /// Which buffer (tensor name and shape, or the product's input/output).
        what: String,
        /// Values needed.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// A block read from elsewhere has an infinite or NaN scale.
    #[error("tensor `{tensor}`: block {block} has a non-finite scale")]
    Scale {
        /// The tensor's name.
        tensor: String,
        /// Index of the block.
        block: usize,
    },
    /// A forced kernel path this CPU cannot run.
    #[error("quantised kernel path {0} is not available on this CPU")]
    PathUnavailable(QuantPath),
}

impl From<QuantError> for kernels::Error {
    /// Carried as [`kernels::Error::Quant`]: a bad shape or block is the user's input; a wrong buffer
    /// length or a forced path this CPU lacks is not.
    fn from(e: QuantError) -> Self {
        let user_error = !matches!(e, QuantError::Length { .. } | QuantError::PathUnavailable(_));
        kernels::Error::Quant { error: Box::new(e), user_error }
    }
}
