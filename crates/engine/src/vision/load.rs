//! Loading the CLIP tower from disk: a CLIP directory (`config.json` + `*.safetensors`, tensors under
//! `vision_model.*`, as `openai/clip-vit-large-patch14-336` ships) or a LLaVA checkpoint directory whose
//! tensors sit under [`LLAVA_VISION_PREFIX`].
use crate::{Error, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use models::vision::{ClipVisionConfig, ClipVisionTower};
use models::Mode;
use std::path::{Path, PathBuf};

/// Prefix of the vision tower inside the authors' LLaVA checkpoints.
pub const LLAVA_VISION_PREFIX: &str = "model.vision_tower.vision_tower.vision_model";
/// Prefix inside a stand-alone CLIP checkpoint.
pub const CLIP_VISION_PREFIX: &str = "vision_model";

/// The `*.safetensors` files of a directory, sorted; or the path itself if it is a file.
/// Errors: [`Error::Io`] if unreadable, [`Error::Invalid`] if the directory holds none.
pub fn safetensors_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let rd = std::fs::read_dir(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Invalid(format!("no *.safetensors file in {}", path.display())));
    }
    Ok(files)
}

/// A `VarBuilder` over safetensors files, each checked first (header and data bounds) so that a corrupt
/// or truncated file is an [`Error::Checkpoint`] naming it. Tensors are converted to `dtype`.
/// Tensors are read one by one into their own buffers ([`crate::safetensors_reader`]): resident once.
pub fn var_builder_from_files(files: &[PathBuf], dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    Ok(crate::safetensors_reader::SafetensorsReader::open(files)?.into_var_builder(dtype, device))
}

/// Loads the first `depth` blocks of a CLIP vision tower from `dir` (its `config.json` and
/// `*.safetensors`; tensors under `vision_model.*` or [`LLAVA_VISION_PREFIX`]`.*`), f32.
/// Errors: unreadable/corrupt files, bad config, missing tensor (naming `dir`), wrong shape.
pub fn load_clip_tower(dir: &Path, depth: usize, mode: Mode, device: &Device) -> Result<ClipVisionTower> {
    let cfg = ClipVisionConfig::from_file(&dir.join("config.json"))?;
    load_clip_tower_with_config(dir, &cfg, depth, mode, device)
}

/// As [`load_clip_tower`], with the tower configuration given instead of read from `dir/config.json`
/// (a LLaVA checkpoint's `vision_config`). Same errors, minus the config file's.
pub fn load_clip_tower_with_config(
    dir: &Path,
    cfg: &ClipVisionConfig,
    depth: usize,
    mode: Mode,
    device: &Device,
) -> Result<ClipVisionTower> {
    let files = safetensors_files(dir)?;
    let vb = var_builder_from_files(&files, DType::F32, device)?;
    let prefix = if vb.contains_tensor(&format!("{CLIP_VISION_PREFIX}.pre_layrnorm.weight")) {
        CLIP_VISION_PREFIX
    } else if vb.contains_tensor(&format!("{LLAVA_VISION_PREFIX}.pre_layrnorm.weight")) {
        LLAVA_VISION_PREFIX
    } else {
        CLIP_VISION_PREFIX
    };
    ClipVisionTower::new_with_depth(cfg, depth, mode, vb.pp(prefix)).map_err(|e| match e {
        Error::MissingTensor { name, .. } => Error::MissingTensor { name, location: dir.display().to_string() },
        e => e,
    })
}
