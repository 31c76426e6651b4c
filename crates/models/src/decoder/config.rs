//! Decoder configuration: HF `config.json` of a Qwen2 (Qwen-1.5) or Llama (Vicuna-1.5) checkpoint.
//!
//! Defaults follow HF transformers' `Qwen2Config` (`configuration_qwen2.py`) and `LlamaConfig`
//! (`configuration_llama.py`). Values the decoder does not implement (RoPE scaling, sliding-window
//! attention, activations other than SiLU) are rejected with an error naming the field.
use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// The decoder family, from `model_type` in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Qwen2 / Qwen-1.5 (`model_type` `qwen2`, or LLaVA-NeXT's `llava_qwen`): q/k/v projections with bias.
    Qwen2,
    /// Llama / Vicuna-1.5 (`model_type` `llama`, or LLaVA's `llava_llama`/`llava`): biases only when
    /// `attention_bias` / `mlp_bias` are set.
    Llama,
}

/// Resolved decoder hyper-parameters (all HF defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Qwen2 or Llama.
    pub architecture: Architecture,
    /// Vocabulary size (rows of `model.embed_tokens.weight`).
    pub vocab_size: usize,
    /// Width H of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA when fewer than the query heads).
    pub num_key_value_heads: usize,
    /// Per-head width (`head_dim`, default `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// Context window: positions `0..max_position_embeddings` are valid.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base θ.
    pub rope_theta: f64,
    /// `lm_head` shares `model.embed_tokens.weight`.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2 always; Llama when `attention_bias`).
    pub qkv_bias: bool,
    /// o_proj carries a bias (Llama `attention_bias`; never in Qwen2).
    pub o_bias: bool,
    /// MLP projections carry a bias (Llama `mlp_bias`).
    pub mlp_bias: bool,
    /// `bos_token_id`, if any.
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` (HF allows an int or a list).
    pub eos_token_ids: Vec<u32>,
}

/// Deserialises a config struct whose fields are all optional; on failure the message names the
/// offending field (each key is retried alone to find it).
pub fn deserialize_naming_field<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> std::result::Result<T, String> {
    match T::deserialize(value) {
        Ok(t) => Ok(t),
        Err(e) => {
            if let Some(obj) = value.as_object() {
                for (k, v) in obj {
                    let mut one = serde_json::Map::new();
                    one.insert(k.clone(), v.clone());
                    if let Err(e) = T::deserialize(&serde_json::Value::Object(one)) {
                        return Err(format!("field `{k}`: {e}"));
                    }
                }
            }
            Err(format!("invalid config: {e}"))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

/// The raw JSON, every field optional so that per-architecture HF defaults can be applied.
#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    use_sliding_window: Option<bool>,
    pretraining_tp: Option<usize>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

impl DecoderConfig {
    /// Reads and resolves `config.json` (an HF LLM config, or a LLaVA config that extends one).
    ///
    /// Errors: [`Error::Io`] if unreadable; [`Error::Config`] naming the file and field if malformed
    /// or unsupported.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::from_json_str(&text).map_err(|e| match e {
            Error::Config { msg, .. } => Error::Config { path: path.to_path_buf(), msg },
            other => other,
        })
    }

    /// Parses a `config.json` text. Errors as [`DecoderConfig::from_file`] (path shown as `config.json`).
    pub fn from_json_str(text: &str) -> Result<Self> {
        let err = |msg: String| Error::Config { path: "config.json".into(), msg };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let raw: RawConfig = deserialize_naming_field(&value).map_err(err)?;
        let model_type = raw.model_type.clone().ok_or_else(|| err("missing field `model_type`".into()))?;
        let architecture = match model_type.as_str() {
            "qwen2" | "llava_qwen" | "llava_qwen2" => Architecture::Qwen2,
            "llama" | "llava_llama" | "llava" => Architecture::Llama,
            other => {
                return Err(err(format!(
                    "model_type `{other}` is not supported (expected qwen2, llava_qwen, llama or llava_llama)"
                )))
            }
        };
        let qwen = architecture == Architecture::Qwen2;
        // HF defaults: Qwen2Config / LlamaConfig constructor arguments.
        let vocab_size = raw.vocab_size.unwrap_or(if qwen { 151936 } else { 32000 });
        let hidden_size = raw.hidden_size.unwrap_or(4096);
        let intermediate_size = raw.intermediate_size.unwrap_or(if qwen { 22016 } else { 11008 });
        let num_hidden_layers = raw.num_hidden_layers.unwrap_or(32);
        let num_attention_heads = raw.num_attention_heads.unwrap_or(32);
        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(if qwen { 32 } else { num_attention_heads });
        let max_position_embeddings = raw.max_position_embeddings.unwrap_or(if qwen { 32768 } else { 2048 });
        let rms_norm_eps = raw.rms_norm_eps.unwrap_or(1e-6);
        let tie_word_embeddings = raw.tie_word_embeddings.unwrap_or(false);
        if num_attention_heads == 0 || num_key_value_heads == 0 {
            return Err(err("`num_attention_heads` and `num_key_value_heads` must be > 0".into()));
        }
        if !num_attention_heads.is_multiple_of(num_key_value_heads) {
            return Err(err(format!(
                "`num_attention_heads` ({num_attention_heads}) must be a multiple of `num_key_value_heads` ({num_key_value_heads})"
            )));
        }
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None => {
                if !hidden_size.is_multiple_of(num_attention_heads) {
                    return Err(err(format!(
                        "`hidden_size` ({hidden_size}) is not divisible by `num_attention_heads` ({num_attention_heads})"
                    )));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(err(format!("`head_dim` ({head_dim}) must be even and > 0 for RoPE")));
        }
        let act = raw.hidden_act.as_deref().unwrap_or("silu");
        if act != "silu" {
            return Err(err(format!("hidden_act `{act}` is not supported (only `silu`)")));
        }
        if qwen && raw.use_sliding_window == Some(true) {
            return Err(err("use_sliding_window = true is not supported (sliding-window attention)".into()));
        }
        if let Some(tp) = raw.pretraining_tp {
            if tp == 0 {
                return Err(err("`pretraining_tp` must be >= 1".into()));
            }
        }
        // RoPE: `rope_theta` (transformers v4) or `rope_parameters.rope_theta` (v5); only the default
        // (unscaled) RoPE is implemented.
        let mut rope_theta = raw.rope_theta;
        for (field, value) in [("rope_scaling", &raw.rope_scaling), ("rope_parameters", &raw.rope_parameters)] {
            let Some(v) = value else { continue };
            if v.is_null() {
                continue;
            }
            let obj = v.as_object().ok_or_else(|| err(format!("`{field}` must be an object or null")))?;
            let kind = obj.get("rope_type").or_else(|| obj.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
            if kind != "default" {
                return Err(err(format!("{field}: rope type `{kind}` is not supported (only `default`)")));
            }
            if let Some(t) = obj.get("rope_theta") {
                rope_theta = Some(t.as_f64().ok_or_else(|| err(format!("`{field}.rope_theta` must be a number")))?);
            }
        }
        let rope_theta = rope_theta.unwrap_or(10000.0);
        let attention_bias = raw.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias, mlp_bias) =
            if qwen { (true, false, false) } else { (attention_bias, attention_bias, raw.mlp_bias.unwrap_or(false)) };
        for (name, v) in [
            ("vocab_size", vocab_size),
            ("hidden_size", hidden_size),
            ("intermediate_size", intermediate_size),
            ("num_hidden_layers", num_hidden_layers),
            ("max_position_embeddings", max_position_embeddings),
        ] {
            if v == 0 {
                return Err(err(format!("`{name}` must be > 0")));
            }
        }
        // A non-positive epsilon or RoPE base gives NaN activations (an empty answer), not an error.
        for (name, v) in [("rms_norm_eps", rms_norm_eps), ("rope_theta", rope_theta)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(err(format!("`{name}` must be a finite number > 0, found {v}")));
            }
        }
        let eos_token_ids = match raw.eos_token_id {
            None => vec![],
            Some(OneOrMany::One(i)) => vec![i],
            Some(OneOrMany::Many(v)) => v,
        };
        Ok(Self {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings,
            rms_norm_eps,
            rope_theta,
            tie_word_embeddings,
            qkv_bias,
            o_bias,
            mlp_bias,
            bos_token_id: raw.bos_token_id,
            eos_token_ids,
        })
    }

    /// Number of LLM parameters N (embeddings and, if untied, `lm_head` included).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let mut attn = h * q + 2 * h * kv + q * h;
        if self.qkv_bias {
            attn += q + 2 * kv;
        }
        if self.o_bias {
            attn += h;
        }
        let mut mlp = 3 * h * self.intermediate_size;
        if self.mlp_bias {
            mlp += 2 * self.intermediate_size + h;
        }
        let layer = attn + mlp + 2 * h;
        let emb = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { emb };
        emb + head + self.num_hidden_layers * layer + h
    }
}
