#![warn(missing_docs)]
//! Training small VLMs on a laptop with the engine's own modules (one architecture code path for
//! training and inference): a CLIP-architecture vision tower pretrained on generated images and then
//! frozen ([`vision_pretrain`]), its features precomputed once per image set ([`features`]), and a
//! compressor + projector + Qwen2 LLM trained from scratch with candle autograd ([`vlm_train`]).
//!
//! | file | concept |
//! |---|---|
//! | [`sizes`] | LLM size presets (Qwen2 configs spanning > 10× parameters) |
//! | [`init`] | seeded HF-style weight initialisation |
//! | [`optim`] | AdamW, warm-up + cosine schedule, global-norm gradient clipping |
//! | [`vision_pretrain`] | supervised per-patch scene pretraining of the tower |
//! | [`features`] | frozen-tower features of an image set |
//! | [`batch`] | ChatML tokenisation of LLaVA conversations with answer-only loss targets |
//! | [`model`] | the trainable VLM: compressor + projector + decoder from one `VarMap` |
//! | [`vlm_train`] | the training loop with checkpoint/resume |
//! | [`checkpoint_io`] | atomic LLaVA-layout checkpoints and trainer state |
//! | [`eval`] | exact-match accuracy per question family with greedy generation |
pub mod batch;
pub mod checkpoint_io;
pub mod error;
pub mod eval;
pub mod features;
pub mod init;
pub mod llm_pretrain;
pub mod model;
pub mod optim;
pub mod sizes;
pub mod vision_pretrain;
pub mod vlm_train;

pub use error::{Error, Result};
