//! The vlmscale engine: a LLaVA-style VLM on candle.
//!
//! Data flow (see `docs/design.md`): image → [`vision`] preprocessing and CLIP tower (HF-indexed hidden
//! states) → [`compress`] (none | QueCC | TokenPacker | average pooling) → [`projector`] → the
//! [`decoder`] (Qwen2 / Llama) with the projected visual tokens spliced in at `<image>` ([`text`]).
pub mod bench_vision;
pub mod checkpoint;
pub mod compress;
pub mod decoder;
pub mod error;
pub mod generate;
pub mod layers;
pub mod matmul;
pub mod projector;
pub mod text;
pub mod vision;

pub use error::{Error, Result};
