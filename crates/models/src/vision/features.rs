//! Feature selection from the tower's HF-indexed hidden states, as LLaVA's `CLIPVisionTower.feature_select`
//! does in the authors' `clip_encoder.py`: single-level = `hidden_states[mm_vision_select_layer]`
//! (default −2), multi-level = `hidden_states[12, 16, 22, 23]` concatenated on channels; CLS dropped
//! (`mm_vision_select_feature = "patch"`).
//!
//! Index convention: `hidden_states` has `L + 1` entries for an L-block tower (0 = embeddings after
//! `pre_layrnorm`, k = output of block k); negative indices count from the end as in Python, so −2 is
//! block L−1 (block 23 of ViT-L's 24). For towers of other depths the multi-level list is configurable
//! ([`FeatureLayers::multi`]); the tiny test tower (6 blocks) uses `[2, 3, 4, 5]`.
use super::clip::{drop_cls, ClipVisionTower};
use crate::{Error, Result};
use candle_core::Tensor;

/// Vision features handed to a compressor.
#[derive(Debug, Clone)]
pub struct VisionFeatures {
    /// Single-level patch features (B, grid², d).
    pub single: Tensor,
    /// Multi-level patch features (B, grid², n_levels·d) (4d with the default four layers), if requested.
    pub multi: Option<Tensor>,
    /// Patches per side of the grid (24 for ViT-L/14-336).
    pub grid: usize,
}

/// Which hidden states to select (HF indices, negative = from the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureLayers {
    /// `mm_vision_select_layer` (LLaVA default −2).
    pub select_layer: i64,
    /// Multi-level layers concatenated on channels (authors' default `[12, 16, 22, 23]`); empty = none.
    pub multi: Vec<i64>,
}

impl Default for FeatureLayers {
    /// LLaVA/QueCC defaults: select −2, multi `[12, 16, 22, 23]`.
    fn default() -> Self {
        Self { select_layer: -2, multi: vec![12, 16, 22, 23] }
    }
}

impl FeatureLayers {
    /// Only single-level features (for `none`, average pooling).
    pub fn single_only(select_layer: i64) -> Self {
        Self { select_layer, multi: Vec::new() }
    }

    /// Resolves an HF index against a tower with `num_layers` blocks (`num_layers + 1` hidden states).
    /// Errors: out of range → [`Error::Invalid`] naming the index.
    pub fn resolve(index: i64, num_layers: usize) -> Result<usize> {
        let n = num_layers as i64 + 1;
        let r = if index < 0 { n + index } else { index };
        if r < 0 || r >= n {
            return Err(Error::Invalid(format!(
                "vision feature layer {index} is out of range for a tower with {num_layers} blocks \
                 (valid: {} ..= {})",
                -n,
                n - 1
            )));
        }
        Ok(r as usize)
    }

    /// The deepest hidden-state index needed (the tower need not run further).
    pub fn depth(&self, num_layers: usize) -> Result<usize> {
        let mut d = Self::resolve(self.select_layer, num_layers)?;
        for &m in &self.multi {
            d = d.max(Self::resolve(m, num_layers)?);
        }
        Ok(d)
    }
}

/// Runs `tower` only as deep as `layers` needs and selects the features.
/// pixels (B, C, H, W) → [`VisionFeatures`] with single (B, grid², d) and multi (B, grid², |multi|·d).
/// Errors: layer index out of range or beyond the loaded depth, bad pixel shape.
pub fn extract_features(tower: &ClipVisionTower, pixels: &Tensor, layers: &FeatureLayers) -> Result<VisionFeatures> {
    let n = tower.config().num_hidden_layers;
    let depth = layers.depth(n)?;
    let hs = tower.hidden_states(pixels, depth)?;
    let single = drop_cls(&hs[FeatureLayers::resolve(layers.select_layer, n)?])?;
    let multi = if layers.multi.is_empty() {
        None
    } else {
        let parts =
            layers.multi.iter().map(|&m| Ok(hs[FeatureLayers::resolve(m, n)?].clone())).collect::<Result<Vec<_>>>()?;
        Some(drop_cls(&Tensor::cat(&parts, 2)?)?)
    };
    Ok(VisionFeatures { single, multi, grid: tower.config().grid() })
}
