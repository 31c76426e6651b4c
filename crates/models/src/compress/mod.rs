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
use crate::projector::ProjectorLayout;
use crate::vision::{FeatureLayers, VisionFeatures};
use crate::Mode;
use crate::{Error, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

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
pub trait Compressor: Send + Sync {
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
    /// Stores the compressor's matrix weights in `format` for inference: bf16 with f32 activations runs
    /// the products through [`kernels::matmul_bf16`], q8_0/q4_0 through [`quant::QuantLinear`]
    /// (norms, biases, the conv and attention scores stay f32); a converted compressor has no backward
    /// pass. Compressors without matrices (pooling, none) keep the default, which does nothing.
    /// Errors: candle conversion errors; q8_0/q4_0 with a matrix width not a multiple of 32 (naming
    /// the tensor).
    fn convert_weights(&mut self, format: quant::WeightFormat) -> Result<()> {
        let _ = format;
        Ok(())
    }
}

/// The V producible by window/pool side r dividing the grid G: (G/r)² for every divisor r of G, ascending.
pub fn allowed_visual_tokens(grid: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (1..=grid).filter(|r| grid.is_multiple_of(*r)).map(|r| (grid / r) * (grid / r)).collect();
    v.sort_unstable();
    v
}

/// For V tokens from a G×G grid, the output grid side g = √V (which must divide G).
/// Errors: [`Error::Invalid`] naming V and the allowed values.
pub fn output_grid_for(visual_tokens: usize, grid: usize) -> Result<usize> {
    let g = (visual_tokens as f64).sqrt().round() as usize;
    if visual_tokens == 0 || g * g != visual_tokens || !grid.is_multiple_of(g) {
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
        dims => Err(Error::Invalid(format!("single-level features must be (B, {g2}, {d}), got {dims:?}"))),
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
        return Err(Error::Invalid(format!("multi-level features must be ({b}, {g2}, {c}), got {:?}", m.dims())));
    }
    Ok(m)
}

/// Which compressor to build, with its hyper-parameters; the one place that knows each compressor's
/// weight layout inside the authors' `mm_projector`.
#[derive(Debug, Clone, PartialEq)]
pub enum CompressorSpec {
    /// All G² tokens (LLaVA-1.5).
    None,
    /// 2-D average pooling to V tokens.
    AvgPool {
        /// V.
        visual_tokens: usize,
    },
    /// QueCC.
    Quecc(QueccConfig),
    /// TokenPacker.
    TokenPacker(TokenPackerConfig),
}

impl CompressorSpec {
    /// Parses a compressor name (`none`, `avgpool`, `quecc`, `tokenpacker`) with V, for a tower of width
    /// d and grid G and an LLM of width H_llm (QueCC's query width); QueCC/TokenPacker use their authors'
    /// defaults otherwise (8 heads, multi-level width 4d, kernel = stride = G/√V).
    /// Errors: unknown name or V not producible → [`Error::Invalid`].
    pub fn from_name(name: &str, visual_tokens: usize, grid: usize, dim: usize, llm_hidden: usize) -> Result<Self> {
        Ok(match name {
            "none" => {
                if visual_tokens != grid * grid {
                    return Err(Error::Invalid(format!(
                        "compressor `none` produces V = {} tokens, not {visual_tokens}",
                        grid * grid
                    )));
                }
                Self::None
            }
            "avgpool" => {
                output_grid_for(visual_tokens, grid)?;
                Self::AvgPool { visual_tokens }
            }
            "quecc" => Self::Quecc(QueccConfig::new(dim, grid, llm_hidden).with_visual_tokens(visual_tokens)?),
            "tokenpacker" => {
                output_grid_for(visual_tokens, grid)?;
                Self::TokenPacker(TokenPackerConfig { visual_tokens, ..TokenPackerConfig::new(dim, grid) })
            }
            other => {
                return Err(Error::Invalid(format!("unknown compressor {other:?} (none, avgpool, quecc, tokenpacker)")))
            }
        })
    }

    /// Builds the compressor from `mm_projector` (the `VarBuilder` at `model.mm_projector`): QueCC at
    /// `.0`, TokenPacker at the prefix itself; none/avgpool have no weights.
    /// Errors: invalid hyper-parameters, missing tensor, wrong shape.
    pub fn build(&self, grid: usize, dim: usize, mode: Mode, mm_projector: VarBuilder) -> Result<Box<dyn Compressor>> {
        Ok(match self {
            Self::None => Box::new(NoCompression::new(grid, dim)),
            Self::AvgPool { visual_tokens } => Box::new(AvgPool::new(*visual_tokens, grid, dim)?),
            Self::Quecc(cfg) => Box::new(Quecc::new(cfg, mode, mm_projector.pp(0))?),
            Self::TokenPacker(cfg) => Box::new(TokenPacker::new(cfg, mode, mm_projector)?),
        })
    }

    /// Where the projector's Linear layers sit in `mm_projector` for this compressor.
    pub fn projector_layout(&self) -> ProjectorLayout {
        match self {
            Self::None | Self::AvgPool { .. } => ProjectorLayout::Sequential,
            Self::Quecc(_) => ProjectorLayout::SequentialAfterCompressor,
            Self::TokenPacker(_) => ProjectorLayout::TokenPackerMlp,
        }
    }

    /// The vision features this compressor needs: `select_layer` always, plus the multi-level layers
    /// (`multi`, e.g. `[12, 16, 22, 23]`) for QueCC and TokenPacker only, so the tower runs no deeper
    /// than needed.
    pub fn feature_layers(&self, select_layer: i64, multi: &[i64]) -> FeatureLayers {
        match self {
            Self::Quecc(_) | Self::TokenPacker(_) => FeatureLayers { select_layer, multi: multi.to_vec() },
            _ => FeatureLayers::single_only(select_layer),
        }
    }
}
