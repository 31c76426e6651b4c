//! The vlmscale engine: a LLaVA-style VLM on candle.
//!
//! Data flow (see `docs/design.md`): image → [`vision`] preprocessing and CLIP tower (HF-indexed hidden
//! states) → [`compress`] (none | QueCC | TokenPacker | average pooling) → [`projector`] → the
//! [`decoder`] (Qwen2 / Llama) with the projected visual tokens spliced in at `<image>` ([`text`]).
//! [`model::Vlm`] assembles all of it from a LLaVA-layout checkpoint directory ([`checkpoint`]) and
//! answers a question about an image with streaming and per-stage timings; [`bench_infer`] times one
//! query at real sizes.
pub mod autograd;
pub mod bench_infer;
pub mod bench_vision;
pub mod checkpoint;
pub mod compress;
pub mod decoder;
pub mod error;
pub mod generate;
pub mod layers;
pub mod matmul;
pub mod matmul_bf16;
pub mod matmul_rows;
pub mod memory;
pub mod model;
pub mod projector;
pub mod safetensors_reader;
pub mod text;
pub mod threads;
pub mod vision;

pub use error::{Error, Result};
