#![warn(missing_docs)]
//! The model modules of a LLaVA-style VLM, each built candle-transformers style (`new(cfg, mode, vb)`
//! with HF / LLaVA weight names, then `forward`):
//!
//! image features → [`vision`] (CLIP tower with HF-indexed hidden states, feature selection) →
//! [`compress`] (none | QueCC | TokenPacker | average pooling) or training-free [`reduction`] →
//! [`projector`] → [`decoder`] (Qwen2 /
//! Llama with rotary embeddings and a KV cache). [`layers`] holds the blocks they share; [`Mode`]
//! selects inference kernels or differentiable ops for every module.
//!
//! Loading from a checkpoint directory, preprocessing and generation live in the engine crate; the
//! kernels these modules call live in the kernels crate, whose [`Error`] they return.
pub mod compress;
pub mod decoder;
pub mod layers;
pub mod mode;
pub mod projector;
pub mod reduction;
pub mod vision;

pub use kernels::{Error, Result};
pub use mode::Mode;
