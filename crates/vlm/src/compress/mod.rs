//! Visual-token compressors: all map [`VisionFeatures`] (and, for QueCC, the query embedding) to V
//! visual tokens (B, V, d) for the projector.
//!
//! | kind | file | V | query |
//! |---|---|---|---|
//! | none | [`none`] | grid² (576) | no |
//! | QueCC (authors' `quecc.py`) | [`quecc`] | ((G − k)/s + 1)² | yes (switchable off) |
//! | TokenPacker (CircleRadon/TokenPacker `builder.py`) | [`tokenpacker`] | (G/r)² | no |
//! | 2-D average pooling (Matryoshka-style) | [`avgpool`] | (G/r)² | no |
//!
//! With the 24×24 grid of ViT-L/14-336 the producible V are the squares of the divisors of 24:
//! 1, 4, 9, 16, 36, 64, 144, 576 (the paper uses all but 9).
use crate::vision::VisionFeatures;
use crate::{Error, Result};
use candle_core::Tensor;

pub mod avgpool;
pub mod none;
pub mod quecc;
pub mod tokenpacker;
pub mod window_attention;

pub use avgpool::AvgPool;
pub use none::NoCompression;
pub use quecc::{Quecc, QueccConfig};
pub use tokenpacker::{TokenPacker, TokenPackerConfig};
pub use window_attention::{FeatureMlp, WindowAttention};

/// A visual-token compressor (paper §4).
pub trait Compressor {
    /// features: single (B, G², d), multi (B, G², 4d); query: the LLM's embedding of the question
    /// (B, 1, H_llm), required iff [`Self::needs_query`]. Returns (B, V, d).
    /// Errors: [`Error::Invalid`] when a required input (query, multi-level features) is missing or has
    /// the wrong shape; candle errors from the ops.
    fn compress(&self, features: &VisionFeatures, query: Option<&Tensor>) -> Result<Tensor>;
    /// V, the number of visual tokens produced per image.
    fn visual_tokens(&self) -> usize;
    /// Whether [`Self::compress`] needs the query embedding.
    fn needs_query(&self) -> bool;
    /// Whether [`Self::compress`] needs the multi-level features.
    fn needs_multi(&self) -> bool;
}

/// The V producible by window/pool side r dividing the grid G: (G/r)² for every divisor r of G, ascending.
pub fn allowed_visual_tokens(grid: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (1..=grid).filter(|r| grid % r == 0).map(|r| (grid / r) * (grid / r)).collect();
    v.sort_unstable();
    v
}

/// For V tokens from a G×G grid, the output grid side g = √V (which must divide G).
/// Errors: [`Error::Invalid`] naming V and the allowed values.
pub fn output_grid_for(visual_tokens: usize, grid: usize) -> Result<usize> {
    let g = (visual_tokens as f64).sqrt().round() as usize;
    if visual_tokens == 0 || g * g != visual_tokens || grid % g != 0 {
        return Err(Error::Invalid(format!(
            "cannot produce V = {visual_tokens} visual tokens from a {grid}×{grid} grid; allowed V: {:?}",
            allowed_visual_tokens(grid)
        )));
    }
    Ok(g)
}

/// Checks features.single is (B, G², d) and returns (B, d).
pub(crate) fn check_single(features: &VisionFeatures, d: usize) -> Result<usize> {
    let g2 = features.grid * features.grid;
    match features.single.dims() {
        [b, t, c] if *t == g2 && *c == d => Ok(*b),
        dims => Err(Error::Invalid(format!(
            "single-level features must be (B, {g2}, {d}), got {dims:?}"
        ))),
    }
}

/// Returns features.multi after checking it is (B, G², c).
pub(crate) fn check_multi(features: &VisionFeatures, b: usize, c: usize) -> Result<&Tensor> {
    let g2 = features.grid * features.grid;
    let m = features
        .multi
        .as_ref()
        .ok_or_else(|| Error::Invalid("this compressor needs multi-level vision features".into()))?;
    if m.dims() != [b, g2, c] {
        return Err(Error::Invalid(format!(
            "multi-level features must be ({b}, {g2}, {c}), got {:?}",
            m.dims()
        )));
    }
    Ok(m)
}
