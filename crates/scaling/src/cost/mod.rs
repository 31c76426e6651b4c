//! Inference cost models, in FLOPs (a multiply-add counts 2).
//!
//! - [`paper_flops`]: the paper's model, FLOPs = 2 · N · (Q + V) (authors' `objective.py`: the plots'
//!   x-axis), which ignores the vision tower, the compressor, attention and decoding.
//! - [`exact`]: a per-term count for a concrete architecture (LLM config, CLIP tower, compressor,
//!   projector), see [`exact::QueryCost`].
pub mod arch;
pub mod exact;
pub mod latency;

/// The paper's inference cost of one query: 2 · N · (Q + V) FLOPs, with N the LLM's parameter count
/// (raw count, not billions), Q text tokens and V visual tokens.
pub fn paper_flops(llm_params: f64, text_tokens: f64, visual_tokens: f64) -> f64 {
    2.0 * llm_params * (text_tokens + visual_tokens)
}
