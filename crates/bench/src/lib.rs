#![warn(missing_docs)]
//! Benchmarks of vlmscale and the peers they are compared with. Speed claims live here, not in tests.
//!
//! | module | what |
//! |---|---|
//! | [`infer`] | one VLM query at real sizes: per-stage latency (vision, compressor, prefill, decode), TTFT, memory |
//! | [`serve`] | the HTTP server under load: one stream, S concurrent streams, C clients × N mixed requests; llama-server beside it |
//! | [`reduction`] | TTFT per V of a training-free token reduction on plain LLaVA-1.5 against all 576 tokens |
//! | [`vision`] | the vision tower + compressor forward at real sizes |
//! | [`train`] | training throughput per LLM size (samples/s, GFLOP/s) |
//! | [`machine`] | the CPU's measured limits (f32 matmul, read bandwidth, f64 multiply-add) and load |
//! | [`peers`] | locating the PyTorch peer scripts (`peers/`); the candle-transformers peers (cargo feature `peers`) |
pub mod infer;
pub mod machine;
pub mod peers;
pub mod reduction;
pub mod serve;
pub mod train;
pub mod vision;
