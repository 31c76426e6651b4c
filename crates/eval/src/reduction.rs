//! Visual-token budget per evaluation: how a checkpoint is made to feed V visual tokens to its LLM
//! without retraining. This module only decides which V a checkpoint can produce
//! ([`TokenReduction::plan`], from its configuration) and applies the plan ([`Reducer`]); the methods,
//! their validation and their math are `models::reduction`'s, run by the engine
//! (`Vlm::reduced_visual_embeddings`, FastV's pruned prefill) — the same methods and names as
//! `vlmscale generate --token-reduction`.
//!
//! * `trained` — the checkpoint's own compressor at its trained V (QueCC, TokenPacker, pooling or
//!   none); any other V is refused.
//! * `visionzip`, `cls-topk`, `prumerge-plus` (V chosen per image), `prumerge-plus-fixed`, `avgpool`
//!   (V a square whose side divides G), `fastv` (pruning inside the LLM at layer K = 2) — for a
//!   checkpoint without a compressor (LLaVA-1.5: all G² patch tokens); see docs/token-reduction.md.
use candle_core::Tensor;
use engine::model::Vlm;
use models::compress::CompressorSpec;
use models::reduction::{self as mr, ReductionMethod};

/// A way to choose V at evaluation time (see the module docs): the trained V, or one of
/// `models::reduction`'s training-free methods under its own name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum TokenReduction {
    /// The checkpoint's own compressor at its trained V only.
    Trained,
    /// VisionZip: CLS + dominant patches by CLS attention, plus contextual tokens merged by key similarity.
    Visionzip,
    /// FasterVLM: the V patches with the highest mean-over-heads CLS attention.
    ClsTopk,
    /// PruMerge+: IQR outliers of CLS attention + spatial samples, merged (adaptive V: no V given).
    PrumergePlus,
    /// PruMerge+ keeping the top V − 1 by the same score, plus its merged remainder token.
    PrumergePlusFixed,
    /// 2-D average pooling of the patch grid to √V × √V.
    Avgpool,
    /// FastV: prune image tokens inside the LLM at layer K by the last prompt token's attention.
    Fastv,
}

impl TokenReduction {
    /// Every value, `trained` first, then `models::reduction`'s methods in their order.
    pub const ALL: [TokenReduction; 7] = [
        TokenReduction::Trained,
        TokenReduction::Visionzip,
        TokenReduction::ClsTopk,
        TokenReduction::PrumergePlus,
        TokenReduction::PrumergePlusFixed,
        TokenReduction::Avgpool,
        TokenReduction::Fastv,
    ];

    /// The training-free method (`None` for `trained`).
    pub fn method(&self) -> Option<ReductionMethod> {
        Some(match self {
            TokenReduction::Trained => return None,
            TokenReduction::Visionzip => ReductionMethod::VisionZip,
            TokenReduction::ClsTopk => ReductionMethod::ClsTopK,
            TokenReduction::PrumergePlus => ReductionMethod::PruMergePlus,
            TokenReduction::PrumergePlusFixed => ReductionMethod::PruMergePlusFixed,
            TokenReduction::Avgpool => ReductionMethod::AvgPool,
            TokenReduction::Fastv => ReductionMethod::FastV,
        })
    }

    /// The name (`trained`, or [`ReductionMethod::name`]), also the `compressor` column of an
    /// eval-grid CSV.
    pub fn name(&self) -> &'static str {
        self.method().map_or("trained", ReductionMethod::name)
    }

    /// Parses [`TokenReduction::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == s)
    }

    /// How a checkpoint with compressor `spec` (trained V = `trained_v`) over a `grid`×`grid` patch
    /// grid and an LLM of `llm_layers` layers produces `v` visual tokens with this method (`None`:
    /// the trained V, or the adaptive PruMerge+'s own); `fastv_layer` is FastV's K. Needs only the checkpoint's configuration
    /// (`engine::model::VlmSpec`), so a grid can decide which cells exist before loading any weights.
    ///
    /// Errors: a message saying why this checkpoint cannot produce `v` this way
    /// (`models::reduction::TokenReduction::validate`'s reason for the training-free methods).
    pub fn plan(
        &self,
        spec: &CompressorSpec,
        trained_v: usize,
        grid: usize,
        llm_layers: usize,
        v: Option<usize>,
        fastv_layer: usize,
    ) -> Result<Reducer, String> {
        let native = |v| Ok(Reducer { visual_tokens: v, entering: v, reduction: None });
        let Some(method) = self.method() else {
            let v = v.unwrap_or(trained_v);
            if v == trained_v {
                return native(v);
            }
            return Err(format!(
                "the checkpoint was trained for V = {trained_v} visual tokens; V = {v} needs a training-free reduction (--token-reduction avgpool, visionzip, …)"
            ));
        };
        if *spec != CompressorSpec::None {
            let v = v.unwrap_or(trained_v);
            if v == trained_v && !method.adaptive() {
                return native(v);
            }
            return Err(format!(
                "{method} reduces the full {grid}×{grid} patch grid, but this checkpoint has a trained compressor producing V = {trained_v}"
            ));
        }
        let v = if method.adaptive() { v } else { Some(v.unwrap_or(trained_v)) };
        if method == ReductionMethod::AvgPool && v == Some(trained_v) {
            // Pooling with window 1 is the identity.
            return native(trained_v);
        }
        let reduction = mr::TokenReduction { method, visual_tokens: v, fastv_layer };
        reduction.validate(grid, llm_layers).map_err(|e| match e {
            models::Error::Invalid(s) => s,
            e => e.to_string(),
        })?;
        let n = grid * grid;
        let (visual_tokens, entering) = match (method, v) {
            (ReductionMethod::FastV, Some(v)) => (v, n),
            (_, Some(v)) => (v, v),
            // The adaptive PruMerge+: at most every patch plus its merged remainder token.
            (_, None) => (n + 1, n + 1),
        };
        Ok(Reducer { visual_tokens, entering, reduction: Some(reduction) })
    }

    /// [`TokenReduction::plan`] for a loaded model.
    pub fn plan_for(&self, vlm: &Vlm, v: Option<usize>, fastv_layer: usize) -> Result<Reducer, String> {
        let layers = vlm.decoder().config().num_hidden_layers;
        self.plan(vlm.compressor_spec(), vlm.visual_tokens(), vlm.vision_config().grid(), layers, v, fastv_layer)
    }
}

/// A planned reduction: produces the visual embeddings of one image at the chosen V.
#[derive(Debug, Clone)]
pub struct Reducer {
    visual_tokens: usize,
    entering: usize,
    reduction: Option<mr::TokenReduction>,
}

impl Reducer {
    /// V, visual tokens per image (FastV: kept after layer K; the adaptive PruMerge+: its upper
    /// bound G² + 1).
    pub fn visual_tokens(&self) -> usize {
        self.visual_tokens
    }

    /// Visual tokens entering the LLM's input (FastV: every patch token), for the context-window check.
    pub fn entering_tokens(&self) -> usize {
        self.entering
    }

    /// The engine's reduction (`None`: the checkpoint's own tokens).
    pub fn reduction(&self) -> Option<&mr::TokenReduction> {
        self.reduction.as_ref()
    }

    /// Visual embeddings (1, V, H) of pixels (1, 3, S, S) (FastV: all G², pruned in the LLM);
    /// `question` is the text QueCC's query embedding reads. Errors: the model's.
    pub fn visual_embeddings(&self, vlm: &Vlm, pixels: &Tensor, question: &str) -> engine::Result<Tensor> {
        match &self.reduction {
            None => vlm.visual_embeddings(pixels, question),
            Some(r) => Ok(vlm.reduced_visual_embeddings(pixels, r)?.visual),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenReduction;
    use models::compress::{CompressorSpec, QueccConfig};
    use models::reduction::ReductionMethod;

    #[test]
    fn avgpool_produces_squares_whose_side_divides_the_grid() {
        // 24×24 grid (ViT-L/14-336): side 1, 2, 3, 4, 6, 8, 12, 24 → V = 1, 4, 9, 16, 36, 64, 144, 576.
        let plan = |v| TokenReduction::Avgpool.plan(&CompressorSpec::None, 576, 24, 24, Some(v), 2);
        for v in [1, 4, 9, 16, 36, 64, 144, 576] {
            assert_eq!(plan(v).unwrap().visual_tokens(), v);
        }
        for v in [2, 25, 100, 256] {
            assert!(plan(v).is_err(), "V = {v}");
        }
    }

    #[test]
    fn trained_and_compressed_checkpoints_keep_their_v() {
        assert_eq!(
            TokenReduction::Trained.plan(&CompressorSpec::None, 576, 24, 24, None, 2).unwrap().visual_tokens(),
            576
        );
        assert!(TokenReduction::Trained.plan(&CompressorSpec::None, 576, 24, 24, Some(64), 2).is_err());
        let quecc = CompressorSpec::Quecc(QueccConfig::new(8, 24, 16).with_visual_tokens(36).unwrap());
        assert_eq!(TokenReduction::Avgpool.plan(&quecc, 36, 24, 24, Some(36), 2).unwrap().visual_tokens(), 36);
        let err = TokenReduction::Avgpool.plan(&quecc, 36, 24, 24, Some(16), 2).unwrap_err();
        assert!(err.contains("trained compressor producing V = 36"), "{err}");
        assert!(TokenReduction::Visionzip.plan(&quecc, 36, 24, 24, Some(16), 2).is_err());
    }

    #[test]
    fn every_engine_method_under_its_engine_name() {
        for r in TokenReduction::ALL {
            assert_eq!(TokenReduction::from_name(r.name()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(r.name()));
        }
        for m in ReductionMethod::ALL {
            assert!(TokenReduction::ALL.iter().any(|r| r.method() == Some(m)), "{m}");
        }
        let plain = |r: TokenReduction, v| r.plan(&CompressorSpec::None, 576, 24, 24, v, 2);
        for r in [TokenReduction::Visionzip, TokenReduction::ClsTopk, TokenReduction::PrumergePlusFixed] {
            let p = plain(r, Some(100)).unwrap();
            assert_eq!((p.visual_tokens(), p.entering_tokens()), (100, 100));
            assert!(plain(r, Some(577)).is_err());
        }
        let fastv = plain(TokenReduction::Fastv, Some(64)).unwrap();
        assert_eq!((fastv.visual_tokens(), fastv.entering_tokens()), (64, 576));
        assert!(
            TokenReduction::Fastv.plan(&CompressorSpec::None, 576, 24, 2, Some(64), 2).is_err(),
            "K = 2 of 2 layers"
        );
        assert!(TokenReduction::Fastv.plan(&CompressorSpec::None, 576, 24, 2, Some(64), 1).is_ok());
        assert_eq!(plain(TokenReduction::PrumergePlus, None).unwrap().reduction().unwrap().visual_tokens, None);
        assert!(plain(TokenReduction::PrumergePlus, Some(64)).is_err());
    }
}
