#![warn(missing_docs)]
//! Compute kernels of the vlmscale engine on candle tensors (CPU), with no model knowledge:
//!
//! | module | what |
//! |---|---|
//! | [`matmul`] | the f32 product entry points (`matmul`, `linear`) and the backend switch |
//! | [`matmul_rows`] | the f32 few-row (decode/short prefill) product kernel |
//! | [`matmul_bf16`] | bf16-weight × f32-activation products (AMX, AVX512-BF16, AVX-512 mat-vec, scalar) |
//! | [`attention`] | the inference attention core: causal over a KV cache, or full (ViT) |
//! | [`autograd`] | fused forward + backward custom ops for training |
//! | [`threads`] | the rayon pool every parallel kernel runs in |
//! | [`memory`] | allocator policy and peak-RSS measurement |
//! | [`random`] | seeded random tensors (candle's CPU generator cannot be seeded) |
//!
//! [`Error`] is the error type of the kernels and of the crates built on them (quant, models, engine):
//! one `Result` flows from a kernel up to the assembled VLM. GGML's quantised weight formats and their
//! kernels are the `vlmscale-quant` crate.
pub mod attention;
pub mod autograd;
pub mod error;
pub mod matmul;
pub mod matmul_bf16;
pub mod matmul_rows;
pub mod memory;
pub mod random;
pub mod threads;

pub use error::{Error, Result};
