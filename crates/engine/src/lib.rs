#![warn(missing_docs)]
//! The vlmscale engine: a LLaVA-style VLM assembled from the models crate's modules.
//!
//! Data flow (see `docs/design.md`): image → [`vision`] preprocessing → CLIP tower → compressor →
//! projector → decoder (`models`), with the projected visual tokens spliced in at `<image>` ([`text`]).
//! [`model::Vlm`] assembles all of it from a LLaVA-layout checkpoint directory ([`checkpoint`],
//! read by [`safetensors_reader`]) and answers a question about an image with streaming and per-stage
//! timings ([`generate`]).
pub mod checkpoint;
pub mod generate;
pub mod model;
pub mod safetensors_reader;
pub mod text;
pub mod vision;

pub use kernels::{Error, Result};
