//! No compression: all G² patch tokens (576 for ViT-L/14-336), as LLaVA-1.5.
use super::{check_single, Compressor};
use crate::vision::VisionFeatures;
use crate::Result;
use candle_core::Tensor;

/// Identity compressor: returns the single-level features (B, G², d).
#[derive(Debug, Clone)]
pub struct NoCompression {
    grid: usize,
    dim: usize,
}

impl NoCompression {
    /// For a G×G grid of width d.
    pub fn new(grid: usize, dim: usize) -> Self {
        Self { grid, dim }
    }
}

impl Compressor for NoCompression {
    fn compress(&self, features: &VisionFeatures, _query: Option<&Tensor>) -> Result<Tensor> {
        check_single(features, self.dim)?;
        Ok(features.single.clone())
    }
    fn visual_tokens(&self) -> usize {
        self.grid * self.grid
    }
    fn needs_query(&self) -> bool {
        false
    }
    fn needs_multi(&self) -> bool {
        false
    }
}
