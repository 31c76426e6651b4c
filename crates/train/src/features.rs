//! Frozen-tower features of an image set, computed once (the tower is frozen, paper §3, so running it
//! every step — and letting candle's matmul backward compute unused weight gradients through it —
//! would be wasted work). Images are CLIP-normalised at their native size (80×80 here: no resize).
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use engine::vision::{CLIP_MEAN, CLIP_STD};
use image::RgbImage;
use models::vision::{extract_features, ClipVisionTower, FeatureLayers, VisionFeatures};

use crate::{Error, Result};

/// The feature layers used with a pretrained tower of `num_layers` blocks: single-level = the last
/// block (HF index −1: the pretraining objective sits there, unlike CLIP's contrastive head, so −1 is
/// the most informative layer), multi-level = the last four blocks (as QueCC's `[12, 16, 22, 23]`
/// takes four levels). Errors: fewer than four blocks.
pub fn feature_layers(num_layers: usize) -> Result<FeatureLayers> {
    if num_layers < 4 {
        return Err(Error::config(
            "num_hidden_layers",
            format!("the tower needs ≥ 4 blocks for 4 feature levels, has {num_layers}"),
        ));
    }
    let l = num_layers as i64;
    Ok(FeatureLayers { select_layer: -1, multi: vec![l - 3, l - 2, l - 1, l] })
}

/// CLIP-normalised pixels (B, 3, S, S) f32 of `images` (all S×S, [`CLIP_MEAN`], [`CLIP_STD`]).
/// Errors: [`Error::Config`] if an image is not `size`×`size`.
pub fn pixels(images: &[&RgbImage], size: u32, device: &Device) -> Result<Tensor> {
    let mut out = Vec::with_capacity(images.len() * 3 * (size * size) as usize);
    for (i, img) in images.iter().enumerate() {
        if img.dimensions() != (size, size) {
            return Err(Error::config(
                "image_size",
                format!("image {i} is {:?}, the tower takes {size}×{size}", img.dimensions()),
            ));
        }
        let chw = synth::to_chw_f32(img);
        let plane = (size * size) as usize;
        for c in 0..3 {
            out.extend(chw[c * plane..(c + 1) * plane].iter().map(|&x| (x - CLIP_MEAN[c]) / CLIP_STD[c]));
        }
    }
    Ok(Tensor::from_vec(out, (images.len(), 3, size as usize, size as usize), device)?)
}

/// Features of every image of a set: single (N, G², d) and multi (N, G², 4d), f32.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    /// Single-level features (N, G², d).
    pub single: Tensor,
    /// Multi-level features (N, G², 4d).
    pub multi: Tensor,
    /// Grid side G.
    pub grid: usize,
}

impl FeatureSet {
    /// Runs the frozen `tower` over `images` in chunks of `batch_size`. Errors: bad image sizes,
    /// layer indices out of range.
    pub fn compute(tower: &ClipVisionTower, images: &[&RgbImage], batch_size: usize) -> Result<Self> {
        let cfg = tower.config();
        let layers = feature_layers(cfg.num_hidden_layers)?;
        let dev = Device::Cpu;
        let (mut single, mut multi) = (vec![], vec![]);
        for chunk in images.chunks(batch_size.max(1)) {
            let px = pixels(chunk, cfg.image_size as u32, &dev)?;
            let f = extract_features(tower, &px, &layers)?;
            single.push(f.single);
            multi.push(f.multi.ok_or_else(|| Error::config("multi", "tower returned no multi-level features"))?);
        }
        if single.is_empty() {
            return Err(Error::config("images", "the image set is empty"));
        }
        Ok(Self {
            single: Tensor::cat(&single, 0)?.contiguous()?,
            multi: Tensor::cat(&multi, 0)?.contiguous()?,
            grid: cfg.grid(),
        })
    }

    /// Number of images N.
    pub fn len(&self) -> usize {
        self.single.dim(0).unwrap_or(0)
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The features of rows `index` (B) u32, in `dtype`, as the compressors take them.
    pub fn gather(&self, index: &Tensor, dtype: DType) -> Result<VisionFeatures> {
        Ok(VisionFeatures {
            single: self.single.index_select(index, 0)?.to_dtype(dtype)?,
            multi: Some(self.multi.index_select(index, 0)?.to_dtype(dtype)?),
            grid: self.grid,
        })
    }

    /// Saves as safetensors (`single`, `multi`), atomically. Errors: I/O.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors = [("single", &self.single), ("multi", &self.multi)];
        let bytes = safetensors::serialize(tensors, None).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        crate::checkpoint_io::write_atomic(path, &bytes)
    }

    /// Loads a file written by [`Self::save`]. Errors: missing/corrupt file or tensors
    /// ([`Error::Checkpoint`] naming it).
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |msg: String| Error::Checkpoint { path: path.to_path_buf(), msg };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let map = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let single = map.get("single").ok_or_else(|| bad("no `single` tensor".into()))?.clone();
        let multi = map.get("multi").ok_or_else(|| bad("no `multi` tensor".into()))?.clone();
        let (n, g2, _) = single.dims3().map_err(|e| bad(e.to_string()))?;
        let grid = (g2 as f64).sqrt().round() as usize;
        if grid * grid != g2 || multi.dims3().map_err(|e| bad(e.to_string()))?.0 != n {
            return Err(bad(format!("inconsistent shapes {:?} / {:?}", single.dims(), multi.dims())));
        }
        Ok(Self { single, multi, grid })
    }
}
