//! A LLaVA-layout checkpoint directory, as the authors' LLaVA code (`save_pretrained` of
//! `LlavaLlamaForCausalLM` / LLaVA-NeXT's `LlavaQwenForCausalLM`) writes it:
//!
//! - `config.json`: the LLM's HF config plus the `mm_*` keys set by `llava_arch.py`
//!   (`initialize_vision_modules`) — see [`MultimodalConfig`];
//! - weights: a single `model.safetensors`, or shards listed in `model.safetensors.index.json`
//!   (`weight_map`: tensor name → shard file), memory-mapped;
//! - `tokenizer.json`.
//!
//! LLM weights keep HF's names (`model.embed_tokens.weight`, `model.layers.{i}…`, `lm_head.weight`);
//! the projector (and the compressor, inserted at index 0 of the `nn.Sequential` by the authors'
//! `build_token_compressor`) live under `model.mm_projector.`; a fine-tuned vision tower under
//! `model.vision_tower.vision_tower.`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::{Error, Result};
use models::decoder::{Decoder, DecoderConfig};

/// Name of the single-file weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Name of the shard index.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// Prefix of vision-tower weights saved inside a LLaVA checkpoint.
pub const VISION_TOWER_PREFIX: &str = "model.vision_tower.vision_tower.";
/// Prefix of projector (and compressor) weights.
pub const PROJECTOR_PREFIX: &str = "model.mm_projector.";

/// The `mm_*` keys of a LLaVA `config.json` (authors' `llava_arch.py`, `clip_encoder.py`,
/// `multimodal_projector/builder.py`, `quecc.py`). Absent keys are `None`; the accessors apply the
/// defaults the authors' code uses.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
pub struct MultimodalConfig {
    /// HF name or path of the CLIP vision tower (e.g. `openai/clip-vit-large-patch14-336`).
    pub mm_vision_tower: Option<String>,
    /// Projector: `linear`, `mlp{N}x_gelu` (e.g. `mlp2x_gelu`) or `identity`; default `linear`.
    pub mm_projector_type: Option<String>,
    /// Width d of the vision features fed to the projector (CLIP ViT-L: 1024).
    pub mm_hidden_size: Option<usize>,
    /// Index into CLIP's HF `hidden_states` for the single-level features (LLaVA-1.5: −2).
    pub mm_vision_select_layer: Option<i64>,
    /// `patch` (drop CLS, default) or `cls_patch`.
    pub mm_vision_select_feature: Option<String>,
    /// Token compressor: absent/null = none (plain LLaVA-1.5); `quecc`; the authors' other
    /// experimental values (`token-packer`, `local-conv-self-attn-deep`, …) are passed through.
    pub mm_vision_token_compression_type: Option<String>,
    /// QueCC depth-wise conv kernel k (default 4): V = (24 / k)².
    pub mm_vision_token_compression_kernel_size: Option<usize>,
    /// QueCC conv stride (default 4, equal to the kernel in the authors' scripts).
    pub mm_vision_token_compression_stride: Option<usize>,
    /// Visual tokens entering the compressor (default 576 for `patch`, 577 for `cls_patch`).
    pub mm_vision_output_token_count: Option<usize>,
    /// Width of the query embedding fed to QueCC's text projection, i.e. the LLM's H (default 4096).
    pub mm_vision_output_text_embedding_size: Option<usize>,
    /// Token count after combination (authors' experimental compressors; unused by QueCC).
    pub mm_vision_output_combined_token_count: Option<usize>,
    /// `flat` (default); `spatial*` (LLaVA-NeXT anyres) is not supported.
    pub mm_patch_merge_type: Option<String>,
    /// Image start/end tokens around the visual tokens (not supported when true).
    pub mm_use_im_start_end: Option<bool>,
    /// `pad` (LLaVA-1.5: pad to square with the CLIP mean colour), `square`/`resize`, or `anyres`.
    pub image_aspect_ratio: Option<String>,
    /// Training-time maximum sequence length (the prompt is truncated to it in LLaVA).
    pub tokenizer_model_max_length: Option<usize>,
}

impl MultimodalConfig {
    /// Projector type with LLaVA's default `linear`.
    pub fn projector_type(&self) -> &str {
        self.mm_projector_type.as_deref().unwrap_or("linear")
    }

    /// Selected feature with LLaVA's default `patch`.
    pub fn select_feature(&self) -> &str {
        self.mm_vision_select_feature.as_deref().unwrap_or("patch")
    }

    /// QueCC kernel with the authors' default 4.
    pub fn compression_kernel_size(&self) -> usize {
        self.mm_vision_token_compression_kernel_size.unwrap_or(4)
    }

    /// QueCC stride with the authors' default 4.
    pub fn compression_stride(&self) -> usize {
        self.mm_vision_token_compression_stride.unwrap_or(4)
    }

    /// Tokens entering the compressor, default 576 (`patch`) / 577 (`cls_patch`) as in `quecc.py`.
    pub fn output_token_count(&self) -> usize {
        self.mm_vision_output_token_count.unwrap_or(if self.select_feature() == "patch" { 576 } else { 577 })
    }

    /// QueCC text-embedding width with the authors' default 4096.
    pub fn text_embedding_size(&self) -> usize {
        self.mm_vision_output_text_embedding_size.unwrap_or(4096)
    }

    /// The compressor type, `None` for a plain LLaVA checkpoint.
    pub fn compression_type(&self) -> Option<&str> {
        self.mm_vision_token_compression_type.as_deref().filter(|s| !s.is_empty() && *s != "none")
    }

    /// Rejects values the engine does not implement. Errors: [`Error::Config`] naming the field.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let err = |msg: String| Error::Config { path: path.to_path_buf(), msg };
        let f = self.select_feature();
        if f != "patch" && f != "cls_patch" {
            return Err(err(format!("mm_vision_select_feature `{f}` is not supported (patch or cls_patch)")));
        }
        let p = self.projector_type();
        let mlp_ok = p
            .strip_prefix("mlp")
            .and_then(|r| r.strip_suffix("x_gelu"))
            .is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n >= 1));
        if !(p == "linear" || p == "identity" || mlp_ok) {
            return Err(err(format!("mm_projector_type `{p}` is not supported (linear, mlp<N>x_gelu or identity)")));
        }
        if let Some(m) = &self.mm_patch_merge_type {
            if m != "flat" {
                return Err(err(format!("mm_patch_merge_type `{m}` is not supported (only flat)")));
            }
        }
        if let Some(a) = &self.image_aspect_ratio {
            if a == "anyres" || a.starts_with("anyres") {
                return Err(err(format!("image_aspect_ratio `{a}` is not supported")));
            }
        }
        if self.mm_use_im_start_end == Some(true) {
            return Err(err("mm_use_im_start_end = true is not supported".into()));
        }
        if self.compression_kernel_size() == 0 || self.compression_stride() == 0 {
            return Err(err("mm_vision_token_compression_kernel_size and _stride must be > 0".into()));
        }
        let n = self.output_token_count();
        let side = (n as f64).sqrt().round() as usize;
        if self.compression_type().is_some() && side * side != n {
            return Err(err(format!("mm_vision_output_token_count {n} is not a square grid")));
        }
        Ok(())
    }
}

/// Where the vision tower's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisionTowerSource {
    /// Inside the checkpoint, under [`VISION_TOWER_PREFIX`].
    Embedded,
    /// A local CLIP directory (HF `CLIPVisionModel` layout).
    Directory(PathBuf),
}

/// An opened LLaVA-layout checkpoint directory: parsed configs and validated weight files.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    llm: DecoderConfig,
    mm: MultimodalConfig,
    weight_files: Vec<PathBuf>,
    tensors: BTreeMap<String, PathBuf>,
}

fn checkpoint_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), msg: msg.into() }
}

/// Maps `path` and parses its safetensors header; returns the tensor names.
fn read_safetensors_names(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    // SAFETY: read-only map; the file must not be modified while the checkpoint is in use.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    safetensors_names_from_bytes(path, &mmap)
}

/// Parses the bytes of a whole safetensors file (8-byte header length, JSON header, data) and
/// returns the tensor names; `path` names the file in errors. The byte-level entry point of
/// [`Checkpoint::open`]'s weight check (also fed by the fuzz targets).
///
/// Errors: [`Error::Checkpoint`] naming `path` for a file too short to hold a header, a header
/// length beyond the file, a header that is not valid JSON / safetensors metadata, or tensor data
/// that does not match the file's length (truncated or corrupt).
pub fn safetensors_names_from_bytes(path: &Path, bytes: &[u8]) -> Result<Vec<String>> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| checkpoint_err(path, format!("not a valid safetensors file (truncated or corrupt?): {e}")))?;
    Ok(st.names().into_iter().map(|s| s.to_string()).collect())
}

/// Parses the text of `model.safetensors.index.json` and returns its `weight_map` (tensor name →
/// shard file), every shard path checked to be a plain relative path inside the checkpoint folder.
/// `index_path` names the file in errors. Used by [`Checkpoint::open`] before any shard is opened.
///
/// Errors: [`Error::Checkpoint`] naming `index_path` for invalid JSON, a missing or mistyped
/// `weight_map`, or a shard path that is empty, absolute or contains `..` / `.`.
pub fn parse_weights_index(index_path: &Path, text: &str) -> Result<BTreeMap<String, String>> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let index: Index =
        serde_json::from_str(text).map_err(|e| checkpoint_err(index_path, format!("invalid index: {e}")))?;
    for f in index.weight_map.values() {
        // Shards live inside the checkpoint folder: a relative path of plain names only
        // (checked before anything is opened: no `..`, no absolute path).
        let inside = !f.is_empty() && Path::new(f).components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(checkpoint_err(
                index_path,
                format!("`weight_map` shard path {f:?} leaves the checkpoint folder: shards must be relative paths inside it"),
            ));
        }
    }
    Ok(index.weight_map)
}

/// Parses the text of a LLaVA checkpoint's `config.json`: the LLM's HF config and the `mm_*` keys,
/// both validated. `config_path` names the file in errors. The text-level entry point of
/// [`Checkpoint::open`].
///
/// Errors: [`Error::Config`] naming `config_path` and the field for invalid JSON, a mistyped or
/// missing key, or a value the engine does not support.
pub fn parse_config_json(config_path: &Path, text: &str) -> Result<(DecoderConfig, MultimodalConfig)> {
    let llm = DecoderConfig::from_json_str(text).map_err(|e| match e {
        Error::Config { msg, .. } => Error::Config { path: config_path.to_path_buf(), msg },
        other => other,
    })?;
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Config { path: config_path.to_path_buf(), msg: format!("invalid JSON: {e}") })?;
    let mm: MultimodalConfig = models::decoder::deserialize_naming_field(&value)
        .map_err(|msg| Error::Config { path: config_path.to_path_buf(), msg })?;
    mm.validate(config_path)?;
    Ok((llm, mm))
}

impl Checkpoint {
    /// Opens `dir`: reads `config.json` (LLM + `mm_*` keys), finds `model.safetensors` or the shards of
    /// `model.safetensors.index.json`, and checks every weight file's header and the index.
    ///
    /// Errors: [`Error::Io`] for a missing/unreadable file; [`Error::Config`] for a malformed or
    /// unsupported `config.json` (naming the field); [`Error::Checkpoint`] naming the file for missing
    /// weights, a truncated/corrupt safetensors file, an index that lists a tensor its shard lacks or
    /// a shard path outside `dir` (`..`, absolute; refused before it is opened).
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(checkpoint_err(dir, "not a directory"));
        }
        let config_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|source| Error::Io { path: config_path.clone(), source })?;
        let (llm, mm) = parse_config_json(&config_path, &text)?;

        let index_path = dir.join(WEIGHTS_INDEX_FILE);
        let single = dir.join(WEIGHTS_FILE);
        let mut tensors = BTreeMap::new();
        let weight_files = if index_path.exists() {
            let text = std::fs::read_to_string(&index_path)
                .map_err(|source| Error::Io { path: index_path.clone(), source })?;
            let weight_map = parse_weights_index(&index_path, &text)?;
            let mut files: Vec<String> = weight_map.values().cloned().collect();
            files.sort();
            files.dedup();
            let mut paths = vec![];
            for f in &files {
                let p = dir.join(f);
                if !p.is_file() {
                    return Err(checkpoint_err(&p, format!("shard listed in {WEIGHTS_INDEX_FILE} is missing")));
                }
                let names: std::collections::HashSet<String> = read_safetensors_names(&p)?.into_iter().collect();
                for (name, file) in weight_map.iter().filter(|(_, file)| *file == f) {
                    if !names.contains(name) {
                        return Err(checkpoint_err(
                            &p,
                            format!("tensor `{name}` listed for {file} in {WEIGHTS_INDEX_FILE} is not in the shard"),
                        ));
                    }
                }
                for n in names {
                    tensors.insert(n, p.clone());
                }
                paths.push(p);
            }
            paths
        } else if single.exists() {
            for n in read_safetensors_names(&single)? {
                tensors.insert(n, single.clone());
            }
            vec![single]
        } else {
            return Err(checkpoint_err(dir, format!("no {WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE}")));
        };
        Ok(Self { dir: dir.to_path_buf(), llm, mm, weight_files, tensors })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The LLM's configuration.
    pub fn llm_config(&self) -> &DecoderConfig {
        &self.llm
    }

    /// The `mm_*` keys.
    pub fn multimodal_config(&self) -> &MultimodalConfig {
        &self.mm
    }

    /// The safetensors files holding the weights.
    pub fn weight_files(&self) -> &[PathBuf] {
        &self.weight_files
    }

    /// Whether the checkpoint holds tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Names of all tensors, sorted.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    /// Path of `tokenizer.json`. Errors: [`Error::Checkpoint`] if it does not exist.
    pub fn tokenizer_path(&self) -> Result<PathBuf> {
        let p = self.dir.join("tokenizer.json");
        if p.is_file() {
            Ok(p)
        } else {
            Err(checkpoint_err(&p, "missing (the checkpoint's tokenizer)"))
        }
    }

    /// A VarBuilder over all weight files, converting to `dtype` on load. Tensors are read one by one
    /// into their own buffers ([`crate::safetensors_reader`]), so the weights are resident once.
    /// Errors: [`Error::Io`] / [`Error::Checkpoint`] for unreadable or corrupt files.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        Ok(crate::safetensors_reader::SafetensorsReader::open(&self.weight_files)?.into_var_builder(dtype, device))
    }

    /// The LLM of the checkpoint. Errors: missing or mis-shaped LLM weights (naming the tensor).
    pub fn decoder(&self, dtype: DType, device: &Device) -> Result<Decoder> {
        Decoder::new(&self.llm, self.var_builder(dtype, device)?)
    }

    /// Where to load the vision tower from: `override_dir` (the CLI's `--vision-tower DIR`) if given;
    /// else the checkpoint itself if it holds [`VISION_TOWER_PREFIX`] weights; else `mm_vision_tower`
    /// if it names a local directory (absolute, or relative to the checkpoint).
    ///
    /// Errors: [`Error::Config`] naming `mm_vision_tower` when none of these applies (e.g. an HF hub
    /// name without network access).
    pub fn vision_tower_source(&self, override_dir: Option<&Path>) -> Result<VisionTowerSource> {
        if let Some(d) = override_dir {
            if !d.is_dir() {
                return Err(checkpoint_err(d, "vision tower directory does not exist"));
            }
            return Ok(VisionTowerSource::Directory(d.to_path_buf()));
        }
        if self.tensors.keys().any(|k| k.starts_with(VISION_TOWER_PREFIX)) {
            return Ok(VisionTowerSource::Embedded);
        }
        let config_path = self.dir.join("config.json");
        let name = self.mm.mm_vision_tower.as_deref().ok_or_else(|| Error::Config {
            path: config_path.clone(),
            msg: "no `mm_vision_tower` and no vision-tower weights in the checkpoint".into(),
        })?;
        for cand in [PathBuf::from(name), self.dir.join(name)] {
            if cand.is_dir() {
                return Ok(VisionTowerSource::Directory(cand));
            }
        }
        Err(Error::Config {
            path: config_path,
            msg: format!(
                "mm_vision_tower `{name}` is not in the checkpoint and not a local directory; pass a local CLIP directory (--vision-tower DIR)"
            ),
        })
    }
}
