#![warn(missing_docs)]
//! The experiment of *Inference Optimal VLMs Need Fewer Visual Tokens and More Parameters* (Li, Goyal,
//! Semedo, Kolter; arXiv 2411.03312, §3–4) as a grid sweep: every (LLM size N × visual tokens V ×
//! compressor × task) cell of a TOML config ([`grid`]) is trained and evaluated by a [`runner::CellRunner`]
//! — the real [`train_runner::TrainRunner`] (train crate) or the test/demo [`synthetic::SyntheticRunner`]
//! — locally in parallel, resumable ([`sweep`]), or as a Slurm job array ([`slurm`]); the per-cell JSONs
//! are aggregated into the scaling crate's scores CSV ([`aggregate`]) and the law is fitted per task
//! family into a report stating which of the paper's claims reproduced ([`report`]); [`reproduce`]
//! runs all of it end to end; [`lock`] keeps two runs on one results folder from mixing or
//! duplicating cells.
//!
//! Units: N in billions of parameters; V and Q as token counts; score as accuracy in [0, 1].
pub mod aggregate;
pub mod error;
pub mod grid;
pub mod llm_preset;
pub mod lock;
pub mod report;
pub mod reproduce;
pub mod runner;
pub mod slurm;
pub mod sweep;
pub mod synthetic;
pub mod train_runner;

pub use error::{Error, Result};
