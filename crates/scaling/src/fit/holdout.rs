//! Leave-one-N-out validation: fit without the largest LLM and predict its errors — the paper's check
//! (a law fitted on 0.5–7B predicts the 14B VLM "with an error margin of less than 2 %", Figure caption).
use serde::{Deserialize, Serialize};

/// One held-out cell's observation and prediction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldOutCell {
    /// V (visual tokens).
    pub visual_tokens: f64,
    /// Q (text tokens).
    pub text_tokens: f64,
    /// Observed error.
    pub observed: f64,
    /// Error predicted by the law fitted without this N.
    pub predicted: f64,
}

/// Result of holding out the largest N.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holdout {
    /// The held-out N (billions).
    pub held_out_llm_params: f64,
    /// Parameters fitted without it (grid + bounded squared refinement).
    pub law: crate::law::Law,
    /// Per-cell predictions for the held-out N.
    pub cells: Vec<HeldOutCell>,
    /// Mean |predicted − observed| (error units).
    pub mean_abs_error: f64,
    /// Max |predicted − observed|.
    pub max_abs_error: f64,
    /// Mean |predicted − observed| / observed, as a fraction (+∞ when an observed error is 0; JSON
    /// `null`).
    #[serde(deserialize_with = "super::null_as_infinity")]
    pub mean_rel_error: f64,
}
