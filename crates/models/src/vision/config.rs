//! CLIP vision configuration, deserialised from an HF `config.json` (either a full CLIP config's
//! `vision_config` or a bare `CLIPVisionConfig`). Defaults are HF `CLIPVisionConfig`'s
//! (`configuration_clip.py`).
use crate::layers::Activation;
use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// HF `CLIPVisionConfig` fields the vision tower uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    /// Width d of the tower (1024 for ViT-L/14).
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    /// MLP width (4096 for ViT-L/14).
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    /// Number of transformer blocks (24 for ViT-L/14).
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads (16 for ViT-L/14).
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    /// Input channels (3).
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    /// Input resolution in pixels (336 for ViT-L/14-336).
    #[serde(default = "d_image")]
    pub image_size: usize,
    /// Patch size in pixels (14).
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    /// HF activation name (`quick_gelu` for OpenAI CLIP).
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// LayerNorm epsilon (1e-5).
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
}

const FIELDS: [(&str, &str); 9] = [
    ("hidden_size", "a non-negative integer"),
    ("intermediate_size", "a non-negative integer"),
    ("num_hidden_layers", "a non-negative integer"),
    ("num_attention_heads", "a non-negative integer"),
    ("num_channels", "a non-negative integer"),
    ("image_size", "a non-negative integer"),
    ("patch_size", "a non-negative integer"),
    ("hidden_act", "a string"),
    ("layer_norm_eps", "a number"),
];

fn d_hidden() -> usize {
    768
}
fn d_inter() -> usize {
    3072
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_channels() -> usize {
    3
}
fn d_image() -> usize {
    224
}
fn d_patch() -> usize {
    32
}
fn d_act() -> String {
    "quick_gelu".to_string()
}
fn d_eps() -> f64 {
    1e-5
}

impl ClipVisionConfig {
    /// The vision config of `openai/clip-vit-large-patch14-336` (LLaVA-1.5's tower).
    pub fn clip_vit_large_patch14_336() -> Self {
        Self {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            num_channels: 3,
            image_size: 336,
            patch_size: 14,
            hidden_act: "quick_gelu".to_string(),
            layer_norm_eps: 1e-5,
        }
    }

    /// Reads a `config.json`: uses its `vision_config` object if present, otherwise treats the whole file
    /// as a vision config. Errors: [`Error::Io`] (unreadable), [`Error::Config`] (malformed JSON, a field
    /// of the wrong type, or an unsupported value — see [`Self::validate`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::from_json_str(&text).map_err(|e| match e {
            Error::Config { msg, .. } => Error::Config { path: path.to_path_buf(), msg },
            e => e,
        })
    }

    /// Parses the JSON text of a `config.json` (see [`Self::from_file`]); errors carry an empty path.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let cfg_err = |msg: String| Error::Config { path: Default::default(), msg };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| cfg_err(format!("invalid JSON: {e}")))?;
        let obj = match value.get("vision_config") {
            Some(v) if v.is_object() => v.clone(),
            Some(v) if v.is_null() => serde_json::json!({}),
            Some(_) => return Err(cfg_err("`vision_config` is not an object".into())),
            None if value.is_object() => value,
            None => return Err(cfg_err("config is not a JSON object".into())),
        };
        let cfg: Self = serde_json::from_value(obj.clone()).map_err(|e| {
            // serde's message does not name the field; find it.
            let culprit = FIELDS.iter().find_map(|&(name, kind)| {
                let v = obj.get(name)?;
                let ok = match kind {
                    "a non-negative integer" => v.is_u64(),
                    "a string" => v.is_string(),
                    _ => v.is_number(),
                };
                (!ok).then(|| format!("vision config field `{name}` must be {kind}, found {v}"))
            });
            cfg_err(culprit.unwrap_or_else(|| format!("vision config: {e}")))
        })?;
        cfg.validate().map_err(cfg_err)?;
        Ok(cfg)
    }

    /// Checks the values the tower supports; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_channels", self.num_channels),
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
        ] {
            if v == 0 {
                return Err(format!("`{name}` must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "`hidden_size` {} is not divisible by `num_attention_heads` {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(format!(
                "`image_size` {} is not a multiple of `patch_size` {}",
                self.image_size, self.patch_size
            ));
        }
        if self.activation().is_none() {
            return Err(format!(
                "`hidden_act` {:?} is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)",
                self.hidden_act
            ));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err("`layer_norm_eps` must be positive".into());
        }
        Ok(())
    }

    /// The parsed `hidden_act`.
    pub fn activation(&self) -> Option<Activation> {
        Activation::from_hf(&self.hidden_act)
    }

    /// Patches per side (24 for ViT-L/14-336).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patch tokens per image, CLS excluded (576 for ViT-L/14-336).
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
}
