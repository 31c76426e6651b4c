#![warn(missing_docs)]
//! Scaling laws for inference-optimal vision-language models (Li, Goyal, Semedo, Kolter; arXiv
//! 2411.03312): the scores schema ([`data`]), the law forms ([`law`]), fitting ([`fit`]), inference
//! cost models ([`cost`]), the compute-optimal frontier ([`frontier`]) and Figure-1 plots ([`plot`]).
//! No tensors: this crate is the decision side of vlmscale.
//!
//! Units: N in **billions** of parameters in data and laws; FLOPs as raw floating-point operation
//! counts (a multiply-add is 2 FLOPs); tokens as counts; errors as fractions in [0, 1].
pub mod cost;
pub mod data;
pub mod error;
pub mod fit;
pub mod frontier;
pub mod law;
pub mod output;
pub mod paper;
pub mod plot;

pub use error::{Error, Result};
