//! 2-D average pooling of the G×G patch grid to √V×√V (Matryoshka-Multimodal-style; torch
//! `F.avg_pool2d(kernel = stride = G/√V)`), parameter-free. Computed by reshape + mean so it is
//! differentiable.
use super::{check_single, output_grid_for, Compressor};
use crate::vision::VisionFeatures;
use crate::Result;
use candle_core::Tensor;

/// Average pooling compressor: single (B, G², d) → (B, V, d).
#[derive(Debug, Clone)]
pub struct AvgPool {
    grid: usize,
    out_grid: usize,
    dim: usize,
}

impl AvgPool {
    /// V tokens from a G×G grid of width d. Errors: V not producible ([`crate::Error::Invalid`] naming V
    /// and the allowed values).
    pub fn new(visual_tokens: usize, grid: usize, dim: usize) -> Result<Self> {
        Ok(Self { grid, out_grid: output_grid_for(visual_tokens, grid)?, dim })
    }
}

impl Compressor for AvgPool {
    fn compress(&self, features: &VisionFeatures, _query: Option<&Tensor>) -> Result<Tensor> {
        let b = check_single(features, self.dim)?;
        let (g, r, d) = (self.out_grid, self.grid / self.out_grid, self.dim);
        let x = features.single.reshape((b, g, r, g, r, d))?;
        let x = x.mean(4)?.mean(2)?; // (B, g, g, d)
        Ok(x.reshape((b, g * g, d))?)
    }
    fn visual_tokens(&self) -> usize {
        self.out_grid * self.out_grid
    }
    fn needs_query(&self) -> bool {
        false
    }
    fn needs_multi(&self) -> bool {
        false
    }
}
