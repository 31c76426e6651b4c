//! Architecture descriptions the exact cost model needs: the LLM (read from a Hugging Face
//! `config.json`, or a built-in Qwen-1.5 / Vicuna preset), the CLIP vision tower and the compressor.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Decoder-only LLM shape (Qwen2 / Llama family), as in a Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmArch {
    /// Model width H.
    pub hidden_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Whether the LM head shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Context window, tokens.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
}

impl LlmArch {
    /// K/V heads (query heads when not set).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Parameters in the matrices every token passes through per block: q, k, v, o projections and the
    /// three SwiGLU matrices (biases and norms excluded: they cost O(H) per token).
    pub fn block_matmul_params(&self) -> f64 {
        let h = self.hidden_size as f64;
        let kv = (self.kv_heads() * self.hidden_size / self.num_attention_heads) as f64;
        2.0 * h * h + 2.0 * h * kv + 3.0 * h * self.intermediate_size as f64
    }

    /// Total parameter count N (embeddings, blocks with Qwen2's q/k/v biases counted as Llama's none —
    /// biases are < 0.1 % —, norms, and an untied LM head), raw count.
    pub fn params(&self) -> f64 {
        let h = self.hidden_size as f64;
        let emb = self.vocab_size as f64 * h;
        let blocks = self.num_hidden_layers as f64 * (self.block_matmul_params() + 2.0 * h);
        emb + blocks + h + if self.tie_word_embeddings { 0.0 } else { emb }
    }

    /// Reads an LLM config from a Hugging Face `config.json` (a LLaVA checkpoint's config works too:
    /// the `mm_*` keys are ignored).
    ///
    /// Errors: [`Error::Io`] if unreadable, [`Error::Json`] naming the missing or malformed field.
    pub fn from_config_file(path: &Path) -> Result<LlmArch> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let arch: LlmArch =
            serde_json::from_str(&text).map_err(|e| Error::Json { path: path.to_path_buf(), msg: e.to_string() })?;
        if arch.hidden_size == 0
            || arch.num_attention_heads == 0
            || !arch.hidden_size.is_multiple_of(arch.num_attention_heads)
        {
            return Err(Error::Json {
                path: path.to_path_buf(),
                msg: format!(
                    "hidden_size {} is not a positive multiple of num_attention_heads {}",
                    arch.hidden_size, arch.num_attention_heads
                ),
            });
        }
        Ok(arch)
    }

    /// Built-in shapes of the paper's LLMs (from their Hugging Face `config.json`s): `qwen1.5-0.5b`,
    /// `qwen1.5-1.8b`, `qwen1.5-4b`, `qwen1.5-7b`, `qwen1.5-14b`, `vicuna-7b`.
    pub fn preset(name: &str) -> Option<LlmArch> {
        let q = |h, l, a, i, tie| LlmArch {
            hidden_size: h,
            num_hidden_layers: l,
            num_attention_heads: a,
            num_key_value_heads: None,
            intermediate_size: i,
            vocab_size: 151936,
            tie_word_embeddings: tie,
            max_position_embeddings: Some(32768),
        };
        Some(match name {
            "qwen1.5-0.5b" => q(1024, 24, 16, 2816, true),
            "qwen1.5-1.8b" => q(2048, 24, 16, 5504, false),
            "qwen1.5-4b" => q(2560, 40, 20, 6912, false),
            "qwen1.5-7b" => q(4096, 32, 32, 11008, false),
            "qwen1.5-14b" => q(5120, 40, 40, 13696, false),
            "vicuna-7b" => {
                LlmArch { vocab_size: 32000, max_position_embeddings: Some(4096), ..q(4096, 32, 32, 11008, false) }
            }
            _ => return None,
        })
    }

    /// Names accepted by [`LlmArch::preset`].
    pub const PRESETS: [&'static str; 6] =
        ["qwen1.5-0.5b", "qwen1.5-1.8b", "qwen1.5-4b", "qwen1.5-7b", "qwen1.5-14b", "vicuna-7b"];

    /// The Qwen-1.5 preset whose parameter count is nearest (in log scale) to `params` (raw count).
    pub fn nearest_qwen(params: f64) -> (&'static str, LlmArch) {
        LlmArch::PRESETS[..5]
            .iter()
            .map(|n| (*n, LlmArch::preset(n).expect("preset exists")))
            .min_by(|a, b| (a.1.params() / params).ln().abs().total_cmp(&(b.1.params() / params).ln().abs()))
            .expect("five presets")
    }
}

/// CLIP ViT vision tower shape (HF `CLIPVisionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionArch {
    /// Width d.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Encoder blocks in the checkpoint.
    pub num_hidden_layers: usize,
    /// Input side, pixels.
    pub image_size: usize,
    /// Patch side, pixels.
    pub patch_size: usize,
    /// Blocks actually run (LLaVA's `select_layer = −2` stops after block L − 1).
    pub layers_run: usize,
    /// Attention heads (CLIP ViT-L: 16 of width 64); the token reductions that read per-head keys.
    pub num_attention_heads: usize,
}

impl VisionArch {
    /// CLIP ViT-L/14-336 as LLaVA-1.5 uses it: 24 blocks of width 1024, run to block 23.
    pub fn clip_vit_l14_336() -> VisionArch {
        VisionArch {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 24,
            image_size: 336,
            patch_size: 14,
            layers_run: 23,
            num_attention_heads: 16,
        }
    }

    /// Patch tokens per image (576 for ViT-L/14-336).
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }
}

/// The visual-token compressor between the vision tower and the projector: the one compressor type
/// of the workspace (the cost model, the trainer, the sweep and the CLI use it; the engine's
/// `models::compress::CompressorSpec` adds the hyper-parameters of one built compressor). Names as on
/// the command line and in sweep configs: [`CompressorKind::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum CompressorKind {
    /// All patch tokens go to the LLM.
    None,
    /// QueCC (paper §4): query injection, depth-wise strided conv, local cross-attention.
    Quecc,
    /// QueCC without query injection, the paper's ablation.
    #[serde(rename = "quecc-noquery")]
    #[cfg_attr(feature = "clap", value(name = "quecc-noquery"))]
    QueccNoQuery,
    /// TokenPacker: bilinear-downsampled queries, local cross-attention.
    Tokenpacker,
    /// 2-D average pooling.
    Avgpool,
}

impl CompressorKind {
    /// Every kind, in the order of the CLI's help.
    pub const ALL: [CompressorKind; 5] = [
        CompressorKind::None,
        CompressorKind::Quecc,
        CompressorKind::QueccNoQuery,
        CompressorKind::Tokenpacker,
        CompressorKind::Avgpool,
    ];

    /// The name on the command line and in configs (`none`, `quecc`, `quecc-noquery`, `tokenpacker`,
    /// `avgpool`).
    pub fn name(self) -> &'static str {
        match self {
            CompressorKind::None => "none",
            CompressorKind::Quecc => "quecc",
            CompressorKind::QueccNoQuery => "quecc-noquery",
            CompressorKind::Tokenpacker => "tokenpacker",
            CompressorKind::Avgpool => "avgpool",
        }
    }

    /// The kind named `name` ([`CompressorKind::name`]), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether QueCC's query embedding (an LLM pass over the question) is computed.
    pub fn uses_query(self) -> bool {
        self == CompressorKind::Quecc
    }
}

/// LLaVA's multimodal projector (`mm_projector_type`, `llava/model/multimodal_projector/builder.py`)
/// from vision width d to LLM width H: the one projector type of the workspace (the cost model
/// counts it, `models::projector` builds it, the CLI parses it). Names: `linear`, `mlp{N}x_gelu`
/// ([`ProjectorKind::name`]; serialized as that name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ProjectorKind {
    /// `linear`: one Linear(d → H).
    Linear,
    /// `mlp{depth}x_gelu`: Linear(d → H), then depth − 1 × [GELU, Linear(H → H)] (LLaVA-1.5: depth 2).
    MlpGelu {
        /// Number of Linear layers (≥ 1).
        depth: usize,
    },
}

impl ProjectorKind {
    /// LLaVA-1.5's projector, `mlp2x_gelu`.
    pub const MLP2X_GELU: ProjectorKind = ProjectorKind::MlpGelu { depth: 2 };

    /// Parses `linear`, `mlp2x_gelu`, `mlp{N}x_gelu` (N ≥ 1), as LLaVA's `build_vision_projector`
    /// does. Errors: anything else → [`UnknownProjector`] naming it.
    pub fn parse(name: &str) -> std::result::Result<Self, UnknownProjector> {
        if name == "linear" {
            return Ok(Self::Linear);
        }
        match name.strip_prefix("mlp").and_then(|r| r.strip_suffix("x_gelu")).map(str::parse::<usize>) {
            Some(Ok(depth)) if depth >= 1 => Ok(Self::MlpGelu { depth }),
            _ => Err(UnknownProjector(name.to_string())),
        }
    }

    /// The `mm_projector_type` spelling: `linear` or `mlp{N}x_gelu`.
    pub fn name(&self) -> String {
        match self {
            Self::Linear => "linear".to_string(),
            Self::MlpGelu { depth } => format!("mlp{depth}x_gelu"),
        }
    }

    /// Linear layers: 1 for `linear`, N for `mlp{N}x_gelu`.
    pub fn depth(&self) -> usize {
        match self {
            Self::Linear => 1,
            Self::MlpGelu { depth } => *depth,
        }
    }
}

/// An `mm_projector_type` that LLaVA's builder does not know (the name is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported mm_projector_type {0:?} (supported: linear, mlp2x_gelu, mlpNx_gelu)")]
pub struct UnknownProjector(pub String);

impl std::fmt::Display for ProjectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for ProjectorKind {
    type Err = UnknownProjector;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ProjectorKind {
    type Error = UnknownProjector;
    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ProjectorKind> for String {
    fn from(k: ProjectorKind) -> String {
        k.name()
    }
}

/// A training-free visual-token reduction for a fixed-grid checkpoint (the engine's
/// `models::reduction`, which re-exports this type; the cost model counts each in
/// [`crate::cost::exact::reduction`]). Names as on the command line: [`ReductionMethod::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ReductionMethod {
    /// VisionZip: CLS + dominant patches by CLS attention, plus contextual tokens merged by key similarity.
    #[cfg_attr(feature = "clap", value(name = "visionzip"))]
    VisionZip,
    /// FasterVLM's [CLS]-attention top-k.
    #[cfg_attr(feature = "clap", value(name = "cls-topk"))]
    ClsTopK,
    /// PruMerge+ with its adaptive (IQR) token count; V depends on the image.
    #[cfg_attr(feature = "clap", value(name = "prumerge-plus"))]
    PruMergePlus,
    /// PruMerge+ at a fixed V.
    #[cfg_attr(feature = "clap", value(name = "prumerge-plus-fixed"))]
    PruMergePlusFixed,
    /// 2-D average pooling of the patch grid to √V × √V.
    #[cfg_attr(feature = "clap", value(name = "avgpool"))]
    AvgPool,
    /// FastV: pruning of image tokens inside the LLM at layer K.
    #[cfg_attr(feature = "clap", value(name = "fastv"))]
    FastV,
}

impl ReductionMethod {
    /// Every method, in the order of the docs.
    pub const ALL: [Self; 6] =
        [Self::VisionZip, Self::ClsTopK, Self::PruMergePlus, Self::PruMergePlusFixed, Self::AvgPool, Self::FastV];

    /// The method's name on the command line (`visionzip`, `cls-topk`, `prumerge-plus`,
    /// `prumerge-plus-fixed`, `avgpool`, `fastv`).
    pub fn name(self) -> &'static str {
        match self {
            Self::VisionZip => "visionzip",
            Self::ClsTopK => "cls-topk",
            Self::PruMergePlus => "prumerge-plus",
            Self::PruMergePlusFixed => "prumerge-plus-fixed",
            Self::AvgPool => "avgpool",
            Self::FastV => "fastv",
        }
    }

    /// Whether V is chosen by the method (PruMerge+'s outlier count) rather than by the caller.
    pub fn adaptive(self) -> bool {
        self == Self::PruMergePlus
    }
}

/// A token-reduction name that is not one of [`ReductionMethod::ALL`] (the name is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown token reduction {0:?} (visionzip, cls-topk, prumerge-plus, prumerge-plus-fixed, avgpool, fastv)")]
pub struct UnknownReduction(pub String);

impl std::fmt::Display for ReductionMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ReductionMethod {
    type Err = UnknownReduction;
    /// Parses [`ReductionMethod::name`].
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownReduction(s.to_string()))
    }
}
