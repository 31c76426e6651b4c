//! LLM size presets: Qwen2-architecture configs (HF `Qwen2Config` keys) small enough to train on a
//! 2-core CPU, spanning ~50× in parameter count so a scaling grid over N is possible (paper §3 uses
//! Qwen-1.5 0.5B–7B, a 14× span).
use models::decoder::DecoderConfig;
use serde_json::{json, Value};

use crate::{Error, Result};

/// One preset: the Qwen2 hyper-parameters that vary with size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmSize {
    /// Preset name (`xs`, `s`, `m`, `l`).
    pub name: &'static str,
    /// Width H of the residual stream.
    pub hidden_size: usize,
    /// SwiGLU MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads (head_dim = H / heads = 16).
    pub num_attention_heads: usize,
    /// Key/value heads (GQA).
    pub num_key_value_heads: usize,
}

/// The presets, smallest first. With the generated-text vocabulary (~120 tokens) they have about
/// 22.6 k, 82 k, 0.41 M and 1.20 M parameters ([`LlmSize::num_parameters`]), a 53× span.
pub const SIZES: [LlmSize; 4] = [
    LlmSize {
        name: "xs",
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
    },
    LlmSize {
        name: "s",
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
    },
    LlmSize {
        name: "m",
        hidden_size: 96,
        intermediate_size: 256,
        num_hidden_layers: 4,
        num_attention_heads: 6,
        num_key_value_heads: 2,
    },
    LlmSize {
        name: "l",
        hidden_size: 128,
        intermediate_size: 384,
        num_hidden_layers: 6,
        num_attention_heads: 8,
        num_key_value_heads: 4,
    },
];

/// Context window of every preset (Q ≈ 30 text tokens + V ≤ 64 visual tokens + answer fit easily).
pub const MAX_POSITION_EMBEDDINGS: usize = 256;

impl LlmSize {
    /// Looks a preset up by name. Errors: [`Error::UnknownSize`] listing the presets.
    pub fn from_name(name: &str) -> Result<Self> {
        SIZES.iter().copied().find(|s| s.name == name).ok_or_else(|| {
            Error::UnknownSize(name.to_string(), SIZES.iter().map(|s| s.name).collect::<Vec<_>>().join(", "))
        })
    }

    /// The HF `config.json` of this LLM (Qwen2, tied embeddings as Qwen-1.5-0.5B, RoPE θ = 10⁶ and
    /// RMSNorm ε = 1e-6 as Qwen2's defaults) for a vocabulary of `vocab_size` tokens; `eos_token_id` is
    /// the ChatML turn end.
    pub fn hf_config(&self, vocab_size: usize, eos_token_id: u32) -> Value {
        json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "vocab_size": vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": MAX_POSITION_EMBEDDINGS,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1_000_000.0,
            "hidden_act": "silu",
            "tie_word_embeddings": true,
            "use_sliding_window": false,
            "eos_token_id": eos_token_id,
            "torch_dtype": "float32",
        })
    }

    /// The resolved decoder config. Errors: only if the preset were inconsistent.
    pub fn decoder_config(&self, vocab_size: usize, eos_token_id: u32) -> Result<DecoderConfig> {
        Ok(DecoderConfig::from_json_str(&self.hf_config(vocab_size, eos_token_id).to_string())?)
    }

    /// N: LLM parameters (embedding included once, tied).
    pub fn num_parameters(&self, vocab_size: usize) -> usize {
        let (h, i, l) = (self.hidden_size, self.intermediate_size, self.num_hidden_layers);
        let hd = h / self.num_attention_heads;
        let kv = self.num_key_value_heads * hd;
        let attn = h * h + h + 2 * (h * kv + kv) + h * h; // q (bias), k, v (bias), o
        let mlp = 3 * h * i;
        vocab_size * h + l * (attn + mlp + 2 * h) + h
    }
}
