//! The assembled VLM: a LLaVA-layout checkpoint directory turned into one model that answers a
//! question about an image — preprocessing → CLIP vision tower → compressor (none | QueCC, with QueCC's
//! query embedding from the LLM) → projector → the visual tokens spliced into the conversation
//! template at `<image>` → prefill + decode with the KV cache.
//!
//! Sources: LLaVA `llava/model/llava_arch.py` (`encode_images`, `prepare_inputs_labels_for_multimodal`),
//! `llava/model/multimodal_encoder/clip_encoder.py` (feature selection; in the authors' repository
//! locuslab/llava-token-compression also the query embedding and the multi-level features
//! `hidden_states[12, 16, 22, 23]`), `llava/mm_utils.py` (`expand2square`, `tokenizer_image_token`);
//! the paper (arXiv 2411.03312) §4.
//!
//! Configuration resolution (all from the checkpoint's `config.json` unless stated):
//! - vision tower weights: [`Checkpoint::vision_tower_source`] (embedded under
//!   `model.vision_tower.vision_tower.vision_model.*`, a local CLIP directory from `mm_vision_tower`, or
//!   the caller's override directory);
//! - vision tower config: the override / local CLIP directory's `config.json`; else a `vision_config`
//!   object in the checkpoint's `config.json` (as HF `LlavaConfig` stores it); else, when
//!   `mm_vision_tower` names `clip-vit-large-patch14-336`, that model's known config;
//! - image preprocessing: the CLIP directory's `preprocessor_config.json` if present, else CLIP's
//!   mean/std with `shortest_edge` = crop = the tower's `image_size`; pad to square iff
//!   `image_aspect_ratio == "pad"`;
//! - multi-level feature layers (QueCC): `mm_vision_multi_select_layers` (a vlmscale extension key; the
//!   authors hard-code it) or the authors' `[12, 16, 22, 23]`;
//! - conversation template by LLM architecture: Llama → `vicuna_v1`, Qwen2 → `qwen_1_5`.
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use image::DynamicImage;

use crate::checkpoint::{Checkpoint, MultimodalConfig, VisionTowerSource, PROJECTOR_PREFIX};
use crate::generate::{generate_with_fastv, GenerateConfig, StopReason};
use crate::text::{input_embeddings, PromptTokens, Template, TextTokenizer, TokenStream};
use crate::vision::load::load_clip_tower_with_config;
use crate::vision::{ImageProcessorConfig, LLAVA_VISION_PREFIX};
use crate::{Error, Result};
use models::compress::{Compressor, CompressorSpec, QueccConfig};
use models::decoder::FastV;
use models::decoder::{Architecture, Decoder, DecoderConfig};
use models::projector::{Projector, ProjectorKind};
use models::reduction::{Reduced, TokenReduction};
use models::vision::{extract_features, extract_with_maps, ClipVisionConfig, ClipVisionTower, FeatureLayers};
use models::Mode;

pub use quant::{QuantFormat, WeightFormat};

/// The authors' multi-level feature layers (HF `hidden_states` indices) for QueCC / TokenPacker.
pub const DEFAULT_MULTI_LAYERS: [i64; 4] = [12, 16, 22, 23];

/// `config.json` key of the multi-level feature layers (a vlmscale extension; the authors' code
/// hard-codes [`DEFAULT_MULTI_LAYERS`]). Written by the trainer, read here: one name on both sides.
pub const MULTI_SELECT_LAYERS_KEY: &str = "mm_vision_multi_select_layers";

/// `config.json` key naming the trained compressor when LLaVA's keys cannot tell it apart
/// (`quecc-noquery`: QueCC without the query injection). Written by the trainer, read here.
pub const COMPRESSOR_KEY: &str = "vlmscale_compressor";

/// Which parts of the VLM [`Vlm::convert_weights_of`] stores in q8_0/q4_0 (the others in bf16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightParts {
    /// The LLM's matrices (embeddings, projections, LM head).
    pub llm: bool,
    /// The CLIP vision tower's block matrices.
    pub vision: bool,
    /// The compressor's matrices (QueCC, TokenPacker).
    pub compressor: bool,
    /// The projector's matrices.
    pub projector: bool,
}

impl Default for WeightParts {
    /// The LLM only: decode, bound by reading its weights, gains most.
    fn default() -> Self {
        Self { llm: true, vision: false, compressor: false, projector: false }
    }
}

impl WeightParts {
    /// Every part.
    pub const ALL: WeightParts = WeightParts { llm: true, vision: true, compressor: true, projector: true };

    /// Parses a comma-separated list of `llm`, `vision`, `compressor`, `projector`, or `all`.
    /// Errors: [`Error::Invalid`] naming an unknown part, or an empty list.
    pub fn parse(list: &str) -> Result<Self> {
        let mut p = WeightParts { llm: false, vision: false, compressor: false, projector: false };
        for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match part {
                "llm" => p.llm = true,
                "vision" => p.vision = true,
                "compressor" => p.compressor = true,
                "projector" => p.projector = true,
                "all" => p = Self::ALL,
                other => {
                    return Err(Error::Invalid(format!(
                        "unknown part `{other}` (llm, vision, compressor, projector or all)"
                    )))
                }
            }
        }
        if p == (WeightParts { llm: false, vision: false, compressor: false, projector: false }) {
            return Err(Error::Invalid("no part named (llm, vision, compressor, projector or all)".into()));
        }
        Ok(p)
    }
}

impl std::fmt::Display for WeightParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (self.llm, "llm"),
            (self.vision, "vision"),
            (self.compressor, "compressor"),
            (self.projector, "projector"),
        ];
        let on: Vec<&str> = names.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
        f.write_str(&on.join(","))
    }
}

/// Sampling options for [`Vlm::answer`] (stop tokens come from the template).
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerOptions {
    /// Maximum new tokens.
    pub max_new_tokens: usize,
    /// Temperature; 0 = greedy.
    pub temperature: f64,
    /// Nucleus sampling threshold in (0, 1]; 1 = off.
    pub top_p: f64,
    /// Sampler seed.
    pub seed: u64,
    /// Training-free visual-token reduction for this query (method and V; `None` = every token the
    /// checkpoint's compressor emits). Only for checkpoints without a trained compressor (plain
    /// LLaVA-1.5); see [`models::reduction`].
    pub token_reduction: Option<TokenReduction>,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        Self { max_new_tokens: 128, temperature: 0.0, top_p: 1.0, seed: 0, token_reduction: None }
    }
}

/// Load-time options of [`Vlm::load_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Also load the vision block after the select layer (when the tower has one), which PruMerge+
    /// scores with; VisionZip, CLS top-k, avgpool and FastV need nothing more than a plain load.
    pub token_reduction: bool,
}

/// The visual tokens of one image after a [`TokenReduction`] (see [`Vlm::reduced_visual_embeddings`]).
#[derive(Debug, Clone)]
pub struct ReducedVisual {
    /// Projected visual tokens (1, V, H) (all G² for FastV, which prunes in the LLM).
    pub visual: Tensor,
    /// The reduction's tokens before the projector (1, V, d) and kept indices.
    pub reduced: Reduced,
}

/// Wall-clock timings of one [`Vlm::answer`], in milliseconds unless stated.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VlmTimings {
    /// Image decoding and preprocessing.
    pub preprocess_ms: f64,
    /// CLIP vision tower (only as deep as the selected layers need).
    pub vision_ms: f64,
    /// QueCC's query embedding: the LLM on the question alone (0 without QueCC).
    pub query_embedding_ms: f64,
    /// Compressor (0 work for `none`).
    pub compressor_ms: f64,
    /// Projector.
    pub projector_ms: f64,
    /// LLM prefill of the Q + V input.
    pub prefill_ms: f64,
    /// Time to first token: from the start of [`Vlm::answer`] (image decoding included) to the
    /// first sampled token.
    pub ttft_ms: f64,
    /// Decode steps run (new tokens after the first).
    pub decode_tokens: usize,
    /// Total decode time.
    pub decode_ms: f64,
    /// Decode throughput, tokens/s (0 if no decode step ran).
    pub decode_tokens_per_s: f64,
    /// Q, text tokens of the templated prompt.
    pub text_tokens: usize,
    /// V, visual tokens.
    pub visual_tokens: usize,
}

impl VlmTimings {
    /// LLM input length Q + V.
    pub fn input_len(&self) -> usize {
        self.text_tokens + self.visual_tokens
    }
}

impl std::fmt::Display for VlmTimings {
    /// One line: `vision 12.3 ms | compressor … | query-embedding … | prefill … | TTFT … | decode … tok/s | Q + V = 50 + 36 = 86`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "vision {:.1} ms | compressor {:.1} ms | query-embedding {:.1} ms | prefill {:.1} ms | TTFT {:.1} ms | decode {:.2} tokens/s | Q + V = {} + {} = {}",
            self.vision_ms,
            self.compressor_ms,
            self.query_embedding_ms,
            self.prefill_ms,
            self.ttft_ms,
            self.decode_tokens_per_s,
            self.text_tokens,
            self.visual_tokens,
            self.input_len()
        )
    }
}

/// The result of [`Vlm::answer`].
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The decoded answer (special tokens skipped).
    pub text: String,
    /// New token ids (stop token excluded).
    pub tokens: Vec<u32>,
    /// Why generation ended.
    pub stop: StopReason,
    /// Timings.
    pub timings: VlmTimings,
}

/// Which compressor a checkpoint uses, for reports (`vlmscale inspect`).
#[derive(Debug, Clone, PartialEq)]
pub enum CompressorInfo {
    /// Plain LLaVA: all patch tokens.
    None,
    /// QueCC with its conv kernel and stride.
    Quecc {
        /// Kernel k.
        kernel: usize,
        /// Stride s.
        stride: usize,
    },
}

/// A loaded LLaVA-style VLM (see the module docs).
pub struct Vlm {
    dir: PathBuf,
    vision_cfg: ClipVisionConfig,
    image_processor: ImageProcessorConfig,
    tower: ClipVisionTower,
    layers: FeatureLayers,
    spec: CompressorSpec,
    compressor: Box<dyn Compressor>,
    projector: Projector,
    projector_kind: ProjectorKind,
    decoder: Decoder,
    tokenizer: TextTokenizer,
    template: Template,
    stop_token_ids: Vec<u32>,
    mm: MultimodalConfig,
    device: Device,
}

impl std::fmt::Debug for Vlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vlm")
            .field("dir", &self.dir)
            .field("architecture", &self.decoder.config().architecture)
            .field("compressor", &self.spec)
            .field("visual_tokens", &self.visual_tokens())
            .finish()
    }
}

fn config_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Config { path: path.to_path_buf(), msg: msg.into() }
}

/// Re-attributes a missing-tensor error to `location`.
fn locate(e: Error, location: &Path) -> Error {
    match e {
        Error::MissingTensor { name, .. } => Error::MissingTensor { name, location: location.display().to_string() },
        e => e,
    }
}

/// Maps candle's "cannot find tensor" errors (from VarBuilder) to [`Error::MissingTensor`], and its
/// "shape mismatch for <tensor>" errors to [`Error::Checkpoint`] naming `location` (both bad input,
/// exit code 2, not a failed tensor op).
fn missing_tensor(e: Error, location: &Path) -> Error {
    if let Error::Candle(c) = &e {
        let msg = c.to_string();
        if let Some(rest) = msg.split("cannot find tensor ").nth(1) {
            let name = rest.split_whitespace().next().unwrap_or(rest).to_string();
            return Error::MissingTensor { name, location: location.display().to_string() };
        }
        if let Some(i) = msg.find("shape mismatch for ") {
            // The first line only: candle may append a backtrace.
            let what = msg[i + "shape mismatch for ".len()..].lines().next().unwrap_or_default();
            return Error::Checkpoint { path: location.to_path_buf(), msg: format!("shape mismatch: tensor {what}") };
        }
    }
    locate(e, location)
}

impl Vlm {
    /// Loads a LLaVA-layout checkpoint directory (see the module docs for how each part is resolved).
    ///
    /// `vision_tower_override`: a local CLIP directory replacing `mm_vision_tower` (the CLI's
    /// `--vision-tower`). `dtype`: the LLM's weights and activations (f32, bf16, f16); the vision tower,
    /// compressor and projector run in f32.
    ///
    /// Errors: those of [`VlmSpec::resolve`]; [`Error::MissingTensor`] / [`Error::Shape`] naming the
    /// tensor; [`Error::Tokenizer`] if `tokenizer.json` is unreadable or lacks the template's special
    /// tokens; [`Error::Checkpoint`] if it is missing.
    pub fn load(dir: &Path, vision_tower_override: Option<&Path>, dtype: DType, device: &Device) -> Result<Self> {
        Self::load_with(dir, vision_tower_override, dtype, device, &LoadOptions::default())
    }

    /// [`Vlm::load`] with [`LoadOptions`]. Errors: those of [`Vlm::load`].
    pub fn load_with(
        dir: &Path,
        vision_tower_override: Option<&Path>,
        dtype: DType,
        device: &Device,
        options: &LoadOptions,
    ) -> Result<Self> {
        let VlmSpec { ckpt, vision_cfg, clip_dir, image_processor, layers, spec, projector_kind, template, .. } =
            VlmSpec::resolve(dir, vision_tower_override)?;
        let mm = ckpt.multimodal_config().clone();
        let llm = ckpt.llm_config().clone();
        let (grid, d) = (vision_cfg.grid(), vision_cfg.hidden_size);
        let mut depth = layers.depth(vision_cfg.num_hidden_layers)?;
        if options.token_reduction && spec == CompressorSpec::None {
            // PruMerge+ scores with the block after the select layer.
            let select = FeatureLayers::resolve(layers.select_layer, vision_cfg.num_hidden_layers)?;
            depth = depth.max((select + 1).min(vision_cfg.num_hidden_layers));
        }
        let mode = Mode::Inference;
        let tower = match &clip_dir {
            Some(cd) => {
                load_clip_tower_with_config(cd, &vision_cfg, depth, mode, device).map_err(|e| missing_tensor(e, cd))?
            }
            None => {
                let vb = ckpt.var_builder(DType::F32, device)?;
                ClipVisionTower::new_with_depth(&vision_cfg, depth, mode, vb.pp(LLAVA_VISION_PREFIX))
                    .map_err(|e| missing_tensor(e, dir))?
            }
        };

        // Compressor and projector weights (f32), LLM in `dtype`.
        let vb32 = ckpt.var_builder(DType::F32, device)?;
        let mm_vb = vb32.pp(PROJECTOR_PREFIX.trim_end_matches('.'));
        let compressor = spec.build(grid, d, mode, mm_vb.clone()).map_err(|e| missing_tensor(e, dir))?;
        let projector = Projector::new(projector_kind, d, llm.hidden_size, spec.projector_layout(), mm_vb)
            .map_err(|e| missing_tensor(e, dir))?;
        let decoder = ckpt.decoder(dtype, device).map_err(|e| missing_tensor(e, dir))?;

        let tokenizer = TextTokenizer::from_file(&ckpt.tokenizer_path()?)?;
        let stop_token_ids = tokenizer.stop_token_ids(template)?;

        Ok(Self {
            dir: dir.to_path_buf(),
            vision_cfg,
            image_processor,
            tower,
            layers,
            spec,
            compressor,
            projector,
            projector_kind,
            decoder,
            tokenizer,
            template,
            stop_token_ids,
            mm,
            device: device.clone(),
        })
    }

    /// Stores the matrix weights of the vision tower, the compressor, the projector and the LLM in
    /// `format` for inference — bf16 with the default f32 activations: products through
    /// [`kernels::matmul_bf16`], half the weight memory (see [`Decoder::convert_weights`],
    /// [`ClipVisionTower::convert_weights`], [`Compressor::convert_weights`],
    /// [`Projector::convert_weights`]). q8_0 / q4_0: the parts of [`WeightParts::default`] (the LLM)
    /// in GGML blocks, the others in bf16 (see [`Vlm::convert_weights_of`]).
    /// Errors: those of [`Vlm::convert_weights_of`].
    pub fn convert_weights(&mut self, format: impl Into<WeightFormat>) -> Result<()> {
        self.convert_weights_of(format.into(), WeightParts::default())
    }

    /// [`Vlm::convert_weights`] with a choice of parts for q8_0 / q4_0: the parts in `parts` get
    /// `format`, the others bf16 (the dense fast path); for a dense `format` every part gets it and
    /// `parts` is ignored. Made from the weights as loaded (the checkpoint's f32/bf16/f16 values widened
    /// to f32 exactly), with GGML's reference quantisation.
    ///
    /// Errors: those of [`Decoder::convert_weights`]; q8_0/q4_0 with LLM activations other than f32
    /// ([`Error::Invalid`]) or a matrix whose width is not a multiple of 32 ([`Error::Quant`] naming
    /// the tensor). The LLM is checked and converted first (all or nothing); a later error leaves the
    /// layers converted before it converted (each layer is either converted or not: the model still runs).
    pub fn convert_weights_of(&mut self, format: WeightFormat, parts: WeightParts) -> Result<()> {
        let (llm, vision, compressor, projector) = match format {
            WeightFormat::Dense(_) => (format, format, format, format),
            WeightFormat::Quant(_) => {
                if self.decoder.dtype() != DType::F32 {
                    return Err(Error::Invalid(format!(
                        "{format} weights need f32 LLM activations (--dtype f32); the LLM runs in {:?}",
                        self.decoder.dtype()
                    )));
                }
                let pick = |on: bool| if on { format } else { WeightFormat::Dense(DType::BF16) };
                (pick(parts.llm), pick(parts.vision), pick(parts.compressor), pick(parts.projector))
            }
        };
        self.decoder.convert_weights(llm)?;
        if self.decoder.dtype() == DType::F32 {
            self.tower.convert_weights(vision)?;
            self.compressor.convert_weights(compressor)?;
            self.projector.convert_weights(projector)?;
        }
        kernels::memory::release_free_memory();
        Ok(())
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A checkpoint's resolved configuration — LLM, vision tower, compressor, projector, template — without
/// loading any weights (for [`Vlm::load`] and reports such as `vlmscale inspect`).
#[derive(Debug, Clone)]
pub struct VlmSpec {
    /// The opened checkpoint (configs and weight-file headers).
    pub ckpt: Checkpoint,
    /// Where the vision tower's weights come from.
    pub vision_source: VisionTowerSource,
    /// The vision tower's config.
    pub vision_cfg: ClipVisionConfig,
    /// The CLIP directory of the tower when not embedded.
    pub clip_dir: Option<PathBuf>,
    /// Image preprocessing.
    pub image_processor: ImageProcessorConfig,
    /// Feature layers the compressor reads (HF `hidden_states` indices).
    pub layers: FeatureLayers,
    /// The compressor.
    pub spec: CompressorSpec,
    /// The projector type.
    pub projector_kind: ProjectorKind,
    /// The conversation template (by LLM architecture).
    pub template: Template,
}

impl VlmSpec {
    /// Resolves `dir`'s configuration (see the module docs).
    ///
    /// Errors: [`Error::Io`] / [`Error::Checkpoint`] for missing, truncated or corrupt files;
    /// [`Error::Config`] naming the field for unsupported or inconsistent values
    /// (`mm_vision_token_compression_type`, `…_kernel_size`/`…_stride`, `mm_hidden_size`,
    /// `mm_vision_output_text_embedding_size`, `mm_vision_output_token_count`,
    /// `mm_vision_select_feature`, `mm_vision_select_layer`, `mm_vision_multi_select_layers`,
    /// `mm_projector_type`, `mm_vision_tower`).
    pub fn resolve(dir: &Path, vision_tower_override: Option<&Path>) -> Result<Self> {
        let ckpt = Checkpoint::open(dir)?;
        let config_path = dir.join("config.json");
        let raw: serde_json::Value = {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|source| Error::Io { path: config_path.clone(), source })?;
            serde_json::from_str(&text).map_err(|e| config_err(&config_path, format!("invalid JSON: {e}")))?
        };
        let mm = ckpt.multimodal_config().clone();
        let llm: DecoderConfig = ckpt.llm_config().clone();
        if mm.select_feature() != "patch" {
            return Err(config_err(
                &config_path,
                format!("mm_vision_select_feature `{}` is not supported (only patch)", mm.select_feature()),
            ));
        }
        let vision_source = ckpt.vision_tower_source(vision_tower_override)?;
        let (vision_cfg, clip_dir) = match &vision_source {
            VisionTowerSource::Directory(d) => (ClipVisionConfig::from_file(&d.join("config.json"))?, Some(d.clone())),
            VisionTowerSource::Embedded => (embedded_vision_config(&raw, &mm, &config_path)?, None),
        };
        let grid = vision_cfg.grid();
        let d = vision_cfg.hidden_size;
        if let Some(h) = mm.mm_hidden_size {
            if h != d {
                return Err(config_err(
                    &config_path,
                    format!("mm_hidden_size {h} does not match the vision tower's hidden_size {d}"),
                ));
            }
        }
        let select_layer = mm.mm_vision_select_layer.unwrap_or(-2);
        let multi = match raw.get(MULTI_SELECT_LAYERS_KEY) {
            None | Some(serde_json::Value::Null) => DEFAULT_MULTI_LAYERS.to_vec(),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_i64()).collect::<Option<Vec<_>>>())
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    config_err(
                        &config_path,
                        format!("mm_vision_multi_select_layers must be a list of integers, found {v}"),
                    )
                })?,
        };
        let spec = match mm.compression_type() {
            None => CompressorSpec::None,
            Some("quecc") => {
                let n = mm.output_token_count();
                if n != grid * grid {
                    return Err(config_err(
                        &config_path,
                        format!(
                            "mm_vision_output_token_count {n} does not match the vision tower's {grid}×{grid} = {} patch tokens",
                            grid * grid
                        ),
                    ));
                }
                let text_dim = mm.text_embedding_size();
                if text_dim != llm.hidden_size {
                    return Err(config_err(
                        &config_path,
                        format!(
                            "mm_vision_output_text_embedding_size {text_dim} does not match the LLM's hidden_size {}",
                            llm.hidden_size
                        ),
                    ));
                }
                let cfg = QueccConfig {
                    kernel: mm.compression_kernel_size(),
                    stride: mm.compression_stride(),
                    // The query-free ablation the trainer writes (same weights, no text injection).
                    use_query: raw.get(COMPRESSOR_KEY).and_then(|v| v.as_str()) != Some("quecc-noquery"),
                    ..QueccConfig::new(d, grid, text_dim)
                };
                cfg.out_grid().map_err(|e| {
                    config_err(&config_path, format!("mm_vision_token_compression_kernel_size/_stride: {e}"))
                })?;
                CompressorSpec::Quecc(cfg)
            }
            // TokenPacker and 2-D average pooling with kernel = stride = G/√V (as the trainer writes
            // them): V = (G / kernel)².
            Some(kind @ ("token-packer" | "tokenpacker" | "avgpool")) => {
                let (k, st) = (mm.compression_kernel_size(), mm.compression_stride());
                if k == 0 || k != st || grid % k != 0 {
                    return Err(config_err(
                        &config_path,
                        format!(
                            "mm_vision_token_compression_kernel_size {k} / _stride {st}: `{kind}` needs kernel = stride dividing the {grid}×{grid} grid"
                        ),
                    ));
                }
                let v = (grid / k) * (grid / k);
                let name = if kind == "avgpool" { "avgpool" } else { "tokenpacker" };
                CompressorSpec::from_name(name, v, grid, d, llm.hidden_size)
                    .map_err(|e| config_err(&config_path, format!("mm_vision_token_compression_type `{kind}`: {e}")))?
            }
            Some(other) => {
                return Err(config_err(
                    &config_path,
                    format!(
                        "mm_vision_token_compression_type `{other}` is not supported (none, quecc, token-packer or avgpool)"
                    ),
                ))
            }
        };
        let layers = spec.feature_layers(select_layer, &multi);
        layers.depth(vision_cfg.num_hidden_layers).map_err(|e| {
            config_err(
                &config_path,
                format!("mm_vision_select_layer / mm_vision_multi_select_layers (multi-level layers): {e}"),
            )
        })?;
        let image_processor = {
            let pad = mm.image_aspect_ratio.as_deref() == Some("pad");
            match clip_dir.as_ref().map(|d| d.join("preprocessor_config.json")) {
                Some(p) if p.is_file() => ImageProcessorConfig::from_file(&p, pad)?,
                _ => ImageProcessorConfig {
                    shortest_edge: vision_cfg.image_size,
                    crop_size: (vision_cfg.image_size, vision_cfg.image_size),
                    ..ImageProcessorConfig::clip_vit_large_patch14_336(pad)
                },
            }
        };
        if image_processor.crop_size != (vision_cfg.image_size, vision_cfg.image_size) {
            return Err(config_err(
                &config_path,
                format!(
                    "the image processor's crop size {:?} does not match the vision tower's image_size {}",
                    image_processor.crop_size, vision_cfg.image_size
                ),
            ));
        }
        let projector_kind = ProjectorKind::parse(mm.projector_type())
            .map_err(|e| config_err(&config_path, format!("mm_projector_type: {e}")))?;
        // A projector layer beyond the configured depth would be ignored silently (a missing
        // `mm_projector_type` means LLaVA's default `linear`, which reads only the first layer).
        let beyond =
            format!("{PROJECTOR_PREFIX}{}.weight", spec.projector_layout().linear_name(projector_kind.depth()));
        if ckpt.contains(&beyond) {
            return Err(config_err(
                &config_path,
                format!(
                    "mm_projector_type {} has {} Linear layer(s), but the weights hold a further projector layer `{beyond}`: set mm_projector_type to match the weights (e.g. mlp2x_gelu)",
                    mm.mm_projector_type.as_deref().map_or("is missing (default `linear`)".to_string(), |t| format!("`{t}`")),
                    projector_kind.depth()
                ),
            ));
        }
        let template = Template::for_architecture(llm.architecture);
        Ok(Self { ckpt, vision_source, vision_cfg, clip_dir, image_processor, layers, spec, projector_kind, template })
    }

    /// The LLM's configuration.
    pub fn llm_config(&self) -> &DecoderConfig {
        self.ckpt.llm_config()
    }

    /// V, visual tokens per image: G² without a compressor, h² for QueCC (h = (G − k)/s + 1).
    pub fn visual_tokens(&self) -> usize {
        let g = self.vision_cfg.grid();
        match &self.spec {
            CompressorSpec::Quecc(c) => c.out_grid().map(|h| h * h).unwrap_or(0),
            CompressorSpec::None => g * g,
            CompressorSpec::AvgPool { visual_tokens } => *visual_tokens,
            CompressorSpec::TokenPacker(c) => c.visual_tokens,
        }
    }

    /// Vision blocks that run (the deepest selected hidden state).
    pub fn vision_layers_run(&self) -> usize {
        self.layers.depth(self.vision_cfg.num_hidden_layers).unwrap_or(self.vision_cfg.num_hidden_layers)
    }
}

/// The vision config of an embedded tower: `vision_config` in `config.json`, else the known
/// ViT-L/14-336 config when `mm_vision_tower` names it. Errors: [`Error::Config`].
fn embedded_vision_config(
    raw: &serde_json::Value,
    mm: &MultimodalConfig,
    config_path: &Path,
) -> Result<ClipVisionConfig> {
    if let Some(v) = raw.get("vision_config").filter(|v| !v.is_null()) {
        let text = serde_json::json!({ "vision_config": v }).to_string();
        return ClipVisionConfig::from_json_str(&text).map_err(|e| match e {
            Error::Config { msg, .. } => config_err(config_path, msg),
            e => e,
        });
    }
    match mm.mm_vision_tower.as_deref() {
            Some(name) if name.trim_end_matches('/').ends_with("clip-vit-large-patch14-336") => {
                Ok(ClipVisionConfig::clip_vit_large_patch14_336())
            }
            other => Err(config_err(
                config_path,
                format!(
                    "the checkpoint embeds a vision tower but its config is unknown (no `vision_config`, mm_vision_tower = {other:?}); pass its CLIP directory (--vision-tower DIR)"
                ),
            )),
        }
}

impl Vlm {
    /// The LLM.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The LLM, mutable (KV cache, mode).
    pub fn decoder_mut(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The conversation template (by architecture).
    pub fn template(&self) -> Template {
        self.template
    }

    /// The vision tower.
    pub fn vision_tower(&self) -> &ClipVisionTower {
        &self.tower
    }

    /// The vision tower's config.
    pub fn vision_config(&self) -> &ClipVisionConfig {
        &self.vision_cfg
    }

    /// The image preprocessing in use.
    pub fn image_processor(&self) -> &ImageProcessorConfig {
        &self.image_processor
    }

    /// The `mm_*` keys.
    pub fn multimodal_config(&self) -> &MultimodalConfig {
        &self.mm
    }

    /// The compressor's specification.
    pub fn compressor_spec(&self) -> &CompressorSpec {
        &self.spec
    }

    /// The compressor, for reports.
    pub fn compressor_info(&self) -> CompressorInfo {
        match &self.spec {
            CompressorSpec::Quecc(c) => CompressorInfo::Quecc { kernel: c.kernel, stride: c.stride },
            _ => CompressorInfo::None,
        }
    }

    /// The projector type.
    pub fn projector_kind(&self) -> ProjectorKind {
        self.projector_kind
    }

    /// The vision feature layers the compressor reads.
    pub fn feature_layers(&self) -> &FeatureLayers {
        &self.layers
    }

    /// V, visual tokens per image.
    pub fn visual_tokens(&self) -> usize {
        self.compressor.visual_tokens()
    }

    /// Token ids that stop generation (the template's end tokens).
    pub fn stop_token_ids(&self) -> &[u32] {
        &self.stop_token_ids
    }

    /// Preprocesses an image → pixels (1, 3, S, S) f32. Errors: [`Error::Invalid`] for an empty image.
    pub fn preprocess(&self, image: &DynamicImage) -> Result<Tensor> {
        Ok(self.image_processor.preprocess(image, &self.device)?.unsqueeze(0)?)
    }

    /// QueCC's query embedding of `question` (the LLM on the question alone, paper §4): (1, 1, H)
    /// f32. Errors: empty question ([`Error::Invalid`]), question longer than the context window.
    pub fn query_embedding(&self, question: &str) -> Result<Tensor> {
        let ids = self.tokenizer.tokenize_query(question)?;
        let max = self.decoder.config().max_position_embeddings;
        if ids.len() > max {
            return Err(Error::ContextWindow { len: ids.len(), max });
        }
        let ids = Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?;
        Ok(self.decoder.query_embedding(&ids, None)?.to_dtype(DType::F32)?)
    }

    /// Vision tower + compressor: pixels (1, 3, S, S) and the query embedding (1, 1, H) (required iff
    /// the compressor needs it) → compressed tokens (1, V, d).
    pub fn compress(&self, pixels: &Tensor, query: Option<&Tensor>) -> Result<Tensor> {
        kernels::threads::in_pool(|| {
            let feats = extract_features(&self.tower, pixels, &self.layers)?;
            self.compressor.compress(&feats, query)
        })
    }

    /// The projector: (1, V, d) → (1, V, H).
    pub fn project(&self, compressed: &Tensor) -> Result<Tensor> {
        self.projector.forward(compressed)
    }

    /// Projected visual tokens for pixels (1, 3, S, S) and `question`: (1, V, H) f32. Runs the query
    /// embedding only when the compressor needs it.
    pub fn visual_embeddings(&self, pixels: &Tensor, question: &str) -> Result<Tensor> {
        let query = if self.compressor.needs_query() { Some(self.query_embedding(question)?) } else { None };
        self.project(&self.compress(pixels, query.as_ref())?)
    }

    /// Vision tower with the maps `reduction` reads, then the reduction and the projector: pixels
    /// (1, 3, S, S) → [`ReducedVisual`] (projected (1, V, H)).
    ///
    /// Errors: [`Error::Invalid`] when the checkpoint has a trained compressor (reduction applies to
    /// fixed-grid LLaVA checkpoints), for a request [`TokenReduction::validate`] rejects (V = 0, V larger
    /// than the grid, FastV's K beyond the LLM's layers, …), or PruMerge+ on a tower loaded without the
    /// block it scores with ([`LoadOptions::token_reduction`]); tensor errors.
    pub fn reduced_visual_embeddings(&self, pixels: &Tensor, reduction: &TokenReduction) -> Result<ReducedVisual> {
        self.check_reduction(reduction)?;
        let out = extract_with_maps(&self.tower, pixels, &self.layers, reduction.maps_request())?;
        let reduced = reduction.reduce(&out)?;
        Ok(ReducedVisual { visual: self.projector.forward(&reduced.tokens)?, reduced })
    }

    fn check_reduction(&self, reduction: &TokenReduction) -> Result<()> {
        if self.spec != CompressorSpec::None {
            return Err(Error::Invalid(format!(
                "token reduction ({}) applies to LLaVA checkpoints without a trained compressor; this one has {:?}",
                reduction.method, self.spec
            )));
        }
        reduction.validate(self.vision_cfg.grid(), self.decoder.config().num_hidden_layers)
    }

    /// The templated prompt for `question` with one `<image>`, tokenised LLaVA-style.
    pub fn prompt_tokens(&self, question: &str) -> Result<PromptTokens> {
        self.tokenizer.tokenize_with_image(&self.template.prompt(question, true))
    }

    /// The whole LLM input (1, Q + V, H) with `visual` (1, V, H) spliced in at `<image>`.
    /// Errors: [`Error::ContextWindow`] if Q + V exceeds the context window.
    pub fn input_embeddings(&self, question: &str, visual: &Tensor) -> Result<Tensor> {
        let prompt = self.prompt_tokens(question)?;
        input_embeddings(&self.decoder, &prompt, Some(visual))
    }

    /// Answers `question` about the image file `image`; `on_text` receives the answer's text as it
    /// is generated (streaming). See [`Vlm::answer_image`].
    pub fn answer(
        &mut self,
        image: &Path,
        question: &str,
        opts: &AnswerOptions,
        on_text: impl FnMut(&str) -> Result<()>,
    ) -> Result<Answer> {
        let t0 = Instant::now();
        let img = crate::vision::load_image(image)?;
        self.answer_image_from(t0, &img, question, opts, on_text)
    }

    /// Answers `question` about a decoded image: preprocess, vision tower, query embedding (QueCC),
    /// compressor, projector, splice, prefill, decode (greedy or sampled), with timings.
    ///
    /// Errors: [`Error::Invalid`] (empty question, bad sampling options), [`Error::ContextWindow`]
    /// (the prompt Q + V does not fit; checked before any model runs), tensor errors.
    pub fn answer_image(
        &mut self,
        image: &DynamicImage,
        question: &str,
        opts: &AnswerOptions,
        on_text: impl FnMut(&str) -> Result<()>,
    ) -> Result<Answer> {
        self.answer_image_from(Instant::now(), image, question, opts, on_text)
    }

    fn answer_image_from(
        &mut self,
        t0: Instant,
        image: &DynamicImage,
        question: &str,
        opts: &AnswerOptions,
        mut on_text: impl FnMut(&str) -> Result<()>,
    ) -> Result<Answer> {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        if question.trim().is_empty() {
            return Err(Error::Invalid("the question is empty".into()));
        }
        let gen_cfg = GenerateConfig {
            max_new_tokens: opts.max_new_tokens,
            temperature: opts.temperature,
            top_p: opts.top_p,
            seed: opts.seed,
            stop_token_ids: self.stop_token_ids.clone(),
        };
        crate::generate::Sampler::new(&gen_cfg)?; // validate options before any work
        let prompt = self.prompt_tokens(question)?;
        let reduction = opts.token_reduction;
        if let Some(r) = &reduction {
            self.check_reduction(r)?;
        }
        // V entering the LLM (FastV: all G² enter, V survive layer K; adaptive PruMerge+: at most G² + 1).
        let v = match reduction {
            Some(r) if r.method.adaptive() => self.vision_cfg.num_patches() + 1,
            Some(r) if r.fastv().is_none() => r.visual_tokens.unwrap_or(0),
            _ => self.visual_tokens(),
        };
        let max = self.decoder.config().max_position_embeddings;
        if prompt.input_len(v) > max {
            return Err(Error::ContextWindow { len: prompt.input_len(v), max });
        }
        let mut t = VlmTimings { text_tokens: prompt.text_len(), visual_tokens: v, ..Default::default() };

        let pixels = self.preprocess(image)?;
        t.preprocess_ms = ms(t0);
        let s = Instant::now();
        let (feats, maps) = match &reduction {
            Some(r) => {
                let out = extract_with_maps(&self.tower, &pixels, &self.layers, r.maps_request())?;
                (out.features.clone(), Some(out))
            }
            None => (extract_features(&self.tower, &pixels, &self.layers)?, None),
        };
        t.vision_ms = ms(s);
        let query = if self.compressor.needs_query() {
            let s = Instant::now();
            let q = self.query_embedding(question)?;
            t.query_embedding_ms = ms(s);
            Some(q)
        } else {
            None
        };
        let s = Instant::now();
        let compressed = match (&reduction, &maps) {
            (Some(r), Some(out)) => r.reduce(out)?.tokens,
            _ => self.compressor.compress(&feats, query.as_ref())?,
        };
        t.compressor_ms = ms(s);
        let s = Instant::now();
        let visual = self.projector.forward(&compressed)?;
        t.projector_ms = ms(s);
        let embeds = input_embeddings(&self.decoder, &prompt, Some(&visual))?;
        let entering = visual.dim(1)?;
        let fastv = match reduction.and_then(|r| r.fastv()) {
            Some((layer, keep)) => {
                let image_start = *prompt
                    .image_positions(entering)
                    .first()
                    .ok_or_else(|| Error::Invalid("FastV needs an <image> in the prompt".into()))?;
                Some(FastV { layer, image_start, image_len: entering, keep })
            }
            None => None,
        };
        // V reported: what the LLM's layers ≥ K see for FastV, the reduced count otherwise.
        t.visual_tokens = fastv.map_or(entering, |f| f.keep);
        let before_llm = ms(t0);

        let mut stream = TokenStream::new(self.tokenizer.clone());
        let mut streamed = 0usize;
        let gen = generate_with_fastv(&mut self.decoder, &embeds, &gen_cfg, fastv.as_ref(), |id| {
            let piece = stream.push(id)?;
            if !piece.is_empty() {
                streamed += piece.len();
                on_text(&piece)?;
            }
            Ok(())
        })?;
        t.prefill_ms = gen.timings.prefill_ms;
        t.ttft_ms = before_llm + gen.timings.ttft_ms;
        t.decode_tokens = gen.timings.decode_tokens;
        t.decode_ms = gen.timings.decode_ms;
        t.decode_tokens_per_s = gen.timings.decode_tokens_per_s;
        let text = self.tokenizer.decode(&gen.tokens, true)?;
        // Flush what the stream held back (an incomplete character at the very end).
        if text.len() > streamed && text.is_char_boundary(streamed) {
            on_text(&text[streamed..])?;
        }
        Ok(Answer { text, tokens: gen.tokens, stop: gen.stop, timings: t })
    }
}

/// The architecture's name as `config.json`'s `model_type` spells it.
pub fn architecture_name(arch: Architecture) -> &'static str {
    match arch {
        Architecture::Qwen2 => "qwen2",
        Architecture::Llama => "llama",
    }
}
