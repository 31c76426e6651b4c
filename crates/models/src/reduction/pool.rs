//! 2-D average pooling of the patch grid to √V × √V (the Matryoshka / M3 operator, torch
//! `F.avg_pool2d(kernel = stride = G/√V)`), applied at inference to a checkpoint trained with all G²
//! tokens; the same operator as the trained [`crate::compress::AvgPool`].
use super::Reduced;
use crate::compress::{AvgPool, Compressor};
use crate::vision::VisionFeatures;
use crate::Result;

/// features.single (B, G², d) → (B, V, d); `kept` is empty (every patch contributes).
/// Errors: V not a square whose side divides G ([`crate::Error::Invalid`] listing the allowed V).
pub fn reduce(features: &VisionFeatures, visual_tokens: usize) -> Result<Reduced> {
    let (b, _, d) = features.single.dims3()?;
    let tokens = AvgPool::new(visual_tokens, features.grid, d)?.compress(features, None)?;
    Ok(Reduced { tokens, kept: vec![Vec::new(); b] })
}
