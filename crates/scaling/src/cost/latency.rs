//! A measured latency cost model: what `vlmscale bench infer --profile OUT.json` writes and
//! `vlmscale frontier --latency-profile OUT.json` reads.
//!
//! Time to first token of one query (one image, Q text tokens, V visual tokens) on the measured
//! machine, in milliseconds:
//!
//! TTFT(N, Q, V) = vision_ms + compressor_ms + prefill_ms_per_token_per_billion · N · (Q + V)
//!               [+ prefill_ms_per_token_per_billion · N · Q, QueCC's extra LLM pass over the question]
//!
//! with N in billions. Unlike the paper's 2·N·(Q+V) FLOPs, it charges the vision tower, whose cost does
//! not shrink with V or N — so under a tight latency budget the optimum can differ from the FLOPs one.
use crate::error::{Error, Result};
use crate::frontier::CostModel;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One weight format's measured LLM rates ([`LatencyProfile::formats`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormatRates {
    /// The weight format as `bench infer --weights` names it: `f32`, `bf16`, `q8_0`, `q4_0`.
    pub weights: String,
    /// LLM prefill time per input token per billion parameters with weights in this format, ms.
    pub prefill_ms_per_token_per_billion: f64,
    /// LLM decode time per generated token per billion parameters with weights in this format, ms.
    pub decode_ms_per_token_per_billion: f64,
}

/// Measured per-component costs of one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyProfile {
    /// Free-form description of the machine and settings (threads, dtype).
    #[serde(default)]
    pub machine: String,
    /// Vision tower time for one image, ms (independent of N and V).
    pub vision_ms: f64,
    /// Compressor + projector time for one image, ms.
    #[serde(default)]
    pub compressor_ms: f64,
    /// LLM prefill time per input token per billion LLM parameters, ms.
    pub prefill_ms_per_token_per_billion: f64,
    /// LLM decode time per generated token per billion LLM parameters, ms.
    pub decode_ms_per_token_per_billion: f64,
    /// Whether the compressor runs the LLM over the question first (QueCC).
    #[serde(default)]
    pub quecc_query_pass: bool,
    /// The LLM's rates per weight format, when the bench measured several (`bench infer --weights
    /// bf16,q8_0,q4_0 --profile`); the top-level rates are then the last format's. Vision and
    /// compressor times are shared. Empty: one format, the top-level rates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formats: Vec<FormatRates>,
}

impl LatencyProfile {
    /// Reads a profile. Errors: [`Error::Io`]; [`Error::Json`] naming a missing field or a value that is
    /// negative or not finite.
    pub fn from_file(path: &Path) -> Result<LatencyProfile> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let p: LatencyProfile =
            serde_json::from_str(&text).map_err(|e| Error::Json { path: path.to_path_buf(), msg: e.to_string() })?;
        for (field, v) in [
            ("vision_ms", p.vision_ms),
            ("compressor_ms", p.compressor_ms),
            ("prefill_ms_per_token_per_billion", p.prefill_ms_per_token_per_billion),
            ("decode_ms_per_token_per_billion", p.decode_ms_per_token_per_billion),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Json {
                    path: path.to_path_buf(),
                    msg: format!("field `{field}` must be a finite number ≥ 0, found {v}"),
                });
            }
        }
        if p.prefill_ms_per_token_per_billion == 0.0 {
            return Err(Error::Json {
                path: path.to_path_buf(),
                msg: "field `prefill_ms_per_token_per_billion` must be > 0".into(),
            });
        }
        let bad =
            |i: usize, msg: String| Error::Json { path: path.to_path_buf(), msg: format!("`formats[{i}]`: {msg}") };
        for (i, f) in p.formats.iter().enumerate() {
            if f.weights.trim().is_empty() {
                return Err(bad(i, "field `weights` must name the weight format".into()));
            }
            if p.formats[..i].iter().any(|g| g.weights == f.weights) {
                return Err(bad(i, format!("weight format `{}` listed twice", f.weights)));
            }
            let (pre, dec) = (f.prefill_ms_per_token_per_billion, f.decode_ms_per_token_per_billion);
            if !(pre.is_finite() && pre > 0.0) {
                return Err(bad(
                    i,
                    format!("field `prefill_ms_per_token_per_billion` must be a finite number > 0, found {pre}"),
                ));
            }
            if !(dec.is_finite() && dec >= 0.0) {
                return Err(bad(
                    i,
                    format!("field `decode_ms_per_token_per_billion` must be a finite number ≥ 0, found {dec}"),
                ));
            }
        }
        Ok(p)
    }

    /// One single-format profile per measured weight format, named (vision and compressor shared);
    /// without [`LatencyProfile::formats`], this profile alone, named `weights` ("" when unnamed).
    pub fn per_format(&self, weights: &str) -> Vec<(String, LatencyProfile)> {
        if self.formats.is_empty() {
            return vec![(weights.to_string(), self.clone())];
        }
        self.formats
            .iter()
            .map(|f| {
                let p = LatencyProfile {
                    prefill_ms_per_token_per_billion: f.prefill_ms_per_token_per_billion,
                    decode_ms_per_token_per_billion: f.decode_ms_per_token_per_billion,
                    formats: vec![],
                    ..self.clone()
                };
                (f.weights.clone(), p)
            })
            .collect()
    }

    /// Writes the profile as pretty JSON, atomically. Errors: [`Error::Io`].
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::output::write_atomic(path, json.as_bytes())
    }

    /// Time to first token in **seconds** for N billion parameters, Q text and V visual tokens.
    pub fn ttft_seconds(&self, n_b: f64, q: f64, v: f64) -> f64 {
        let llm_tokens = q + v + if self.quecc_query_pass { q } else { 0.0 };
        (self.vision_ms + self.compressor_ms + self.prefill_ms_per_token_per_billion * n_b * llm_tokens) / 1e3
    }
}

impl CostModel for LatencyProfile {
    fn cost(&self, n_b: f64, q: f64, v: f64) -> f64 {
        self.ttft_seconds(n_b, q, v)
    }
    fn unit(&self) -> &'static str {
        "s"
    }
}
