//! Visual-token budget per evaluation: how a checkpoint is made to feed V visual tokens to its LLM
//! without retraining. **The one place to add a training-free reduction method**: a variant of
//! [`TokenReduction`], its case in [`TokenReduction::plan`] (which V it can produce from a
//! checkpoint) and in [`Reducer::visual_embeddings`] (how).
//!
//! Methods today:
//! * `trained` — the checkpoint's own compressor at its trained V (QueCC, TokenPacker, pooling or
//!   none); any other V is refused.
//! * `avgpool` — for a checkpoint without a compressor (LLaVA-1.5: all G² patch tokens), the G×G
//!   grid of patch features is averaged to √V×√V before the projector (2-D average pooling, the
//!   training-free form of Matryoshka-Multimodal's `F.avg_pool2d`, mu-cai/matryoshka-mm
//!   `llava_arch.py`); V must be a square whose side divides G.
use candle_core::Tensor;
use engine::model::Vlm;
use models::compress::{AvgPool, Compressor, CompressorSpec};
use models::vision::VisionFeatures;

/// A training-free way to choose V at evaluation time (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum TokenReduction {
    /// The checkpoint's own compressor at its trained V only.
    Trained,
    /// 2-D average pooling of the patch grid (checkpoints without a compressor).
    Avgpool,
}

impl TokenReduction {
    /// The method's name (`trained`, `avgpool`), also the `compressor` column of an eval-grid CSV.
    pub fn name(&self) -> &'static str {
        match self {
            TokenReduction::Trained => "trained",
            TokenReduction::Avgpool => "avgpool",
        }
    }

    /// Parses [`TokenReduction::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        [TokenReduction::Trained, TokenReduction::Avgpool].into_iter().find(|r| r.name() == s)
    }

    /// How a checkpoint with compressor `spec` (trained V = `trained_v`) over a `grid`×`grid` patch
    /// grid of width `dim` produces `v` visual tokens with this method (`None`: the trained V).
    /// Needs only the checkpoint's configuration (`engine::model::VlmSpec`), so a grid can decide
    /// which cells exist before loading any weights.
    ///
    /// Errors: a message saying why this checkpoint cannot produce `v` this way.
    pub fn plan(
        &self,
        spec: &CompressorSpec,
        trained_v: usize,
        grid: usize,
        dim: usize,
        v: Option<usize>,
    ) -> Result<Reducer, String> {
        let v = v.unwrap_or(trained_v);
        if v == trained_v {
            return Ok(Reducer { visual_tokens: v, pool: None });
        }
        match self {
            TokenReduction::Trained => Err(format!(
                "the checkpoint was trained for V = {trained_v} visual tokens; V = {v} needs a training-free reduction (--token-reduction avgpool)"
            )),
            TokenReduction::Avgpool => {
                if *spec != CompressorSpec::None {
                    return Err(format!(
                        "avgpool pools the full {grid}×{grid} patch grid, but this checkpoint has a trained compressor producing V = {trained_v}"
                    ));
                }
                let pool = AvgPool::new(v, grid, dim).map_err(|e| e.to_string())?;
                Ok(Reducer { visual_tokens: v, pool: Some(pool) })
            }
        }
    }

    /// [`TokenReduction::plan`] for a loaded model.
    pub fn plan_for(&self, vlm: &Vlm, v: Option<usize>) -> Result<Reducer, String> {
        let cfg = vlm.vision_config();
        self.plan(vlm.compressor_spec(), vlm.visual_tokens(), cfg.grid(), cfg.hidden_size, v)
    }
}

/// A planned reduction: produces the visual embeddings of one image at the chosen V.
#[derive(Debug, Clone)]
pub struct Reducer {
    visual_tokens: usize,
    pool: Option<AvgPool>,
}

impl Reducer {
    /// V, visual tokens per image.
    pub fn visual_tokens(&self) -> usize {
        self.visual_tokens
    }

    /// Visual embeddings (1, V, H) of pixels (1, 3, S, S); `question` is the text QueCC's query
    /// embedding reads. Errors: the model's.
    pub fn visual_embeddings(&self, vlm: &Vlm, pixels: &Tensor, question: &str) -> engine::Result<Tensor> {
        match &self.pool {
            None => vlm.visual_embeddings(pixels, question),
            Some(pool) => {
                // No compressor: `compress` returns the (1, G², d) patch features themselves.
                let single = vlm.compress(pixels, None)?;
                let feats = VisionFeatures { single, multi: None, grid: vlm.vision_config().grid() };
                let pooled = kernels::threads::in_pool(|| pool.compress(&feats, None))?;
                vlm.project(&pooled)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenReduction;
    use models::compress::{CompressorSpec, QueccConfig};

    #[test]
    fn avgpool_produces_squares_whose_side_divides_the_grid() {
        // 24×24 grid (ViT-L/14-336): side 1, 2, 3, 4, 6, 8, 12, 24 → V = 1, 4, 9, 16, 36, 64, 144, 576.
        let plan = |v| TokenReduction::Avgpool.plan(&CompressorSpec::None, 576, 24, 8, Some(v));
        for v in [1, 4, 9, 16, 36, 64, 144, 576] {
            assert_eq!(plan(v).unwrap().visual_tokens(), v);
        }
        for v in [2, 25, 100, 256] {
            assert!(plan(v).is_err(), "V = {v}");
        }
    }

    #[test]
    fn trained_and_compressed_checkpoints_keep_their_v() {
        assert_eq!(TokenReduction::Trained.plan(&CompressorSpec::None, 576, 24, 8, None).unwrap().visual_tokens(), 576);
        assert!(TokenReduction::Trained.plan(&CompressorSpec::None, 576, 24, 8, Some(64)).is_err());
        let quecc = CompressorSpec::Quecc(QueccConfig::new(8, 24, 16).with_visual_tokens(36).unwrap());
        assert_eq!(TokenReduction::Avgpool.plan(&quecc, 36, 24, 8, Some(36)).unwrap().visual_tokens(), 36);
        let err = TokenReduction::Avgpool.plan(&quecc, 36, 24, 8, Some(16)).unwrap_err();
        assert!(err.contains("trained compressor producing V = 36"), "{err}");
    }
}
