//! The one seam where a request's visual-token count V and reduction method are decided
//! ([`plan`]) and applied ([`visual_embeddings`]); the methods, their names, their validation and
//! their math are `models::reduction`'s (the same as `vlmscale generate --token-reduction`).
//!
//! A checkpoint with a trained compressor (QueCC, TokenPacker, trained 2-D pooling) produces exactly
//! its trained V; a request for another V is served at the trained V and the response says so. A plain
//! LLaVA checkpoint (all G² patch tokens) can be reduced training-free by any [`ReductionMethod`]:
//! `visionzip`, `cls-topk`, `prumerge-plus` (V chosen per image), `prumerge-plus-fixed`, `avgpool`
//! (V = (G/r)²) and `fastv` (pruning inside the LLM at layer K = 2). This module maps the request onto
//! them and their errors onto OpenAI-style 400s.
use candle_core::Tensor;
use engine::model::Vlm;
use models::compress::{allowed_visual_tokens, CompressorSpec};
use models::reduction::{ReductionMethod, TokenReduction, DEFAULT_FASTV_LAYER};

use crate::error::ApiError;

/// The largest V the API accepts (ViT-L/14-336's 24 × 24 grid).
pub const MAX_VISUAL_TOKENS: i64 = 576;

/// The method used when a request gives `visual_tokens` below a plain checkpoint's G² and no
/// `token_reduction`.
pub const DEFAULT_METHOD: ReductionMethod = ReductionMethod::AvgPool;

/// Parses `token_reduction` ([`ReductionMethod::name`]s). `None` for `"none"` (the
/// checkpoint's own tokens).
///
/// Errors: 400 `invalid_token_reduction` for an unknown name, listing the available ones.
pub fn parse_method(name: &str) -> Result<Option<ReductionMethod>, ApiError> {
    let n = name.trim().to_ascii_lowercase();
    if n == "none" || n.is_empty() {
        return Ok(None);
    }
    n.parse::<ReductionMethod>().map(Some).map_err(|_| {
        ApiError::invalid_param(
            "invalid_token_reduction",
            "token_reduction",
            format!("unknown token_reduction `{name}`; available: {}", available_names()),
        )
    })
}

/// The V `method` can produce from a G × G grid, ascending (empty for the adaptive `prumerge-plus`,
/// which chooses V per image).
pub fn method_options(method: ReductionMethod, grid: usize) -> Vec<usize> {
    match method {
        ReductionMethod::AvgPool => allowed_visual_tokens(grid),
        m if m.adaptive() => vec![],
        _ => (1..=grid * grid).collect(),
    }
}

fn available_names() -> String {
    let mut v = vec!["none"];
    v.extend(ReductionMethod::ALL.iter().map(|r| r.name()));
    v.join(", ")
}

/// What a model's checkpoint produces natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeTokens {
    /// V of the checkpoint.
    pub visual_tokens: usize,
    /// The patch grid side G of the vision tower.
    pub grid: usize,
    /// The trained compressor's name (`none`, `quecc`, `tokenpacker`, `avgpool`).
    pub compressor: &'static str,
    /// Layers of the LLM (FastV's layer K must be below it).
    pub llm_layers: usize,
}

impl NativeTokens {
    /// Of a loaded model.
    pub fn of(vlm: &Vlm) -> Self {
        let compressor = match vlm.compressor_spec() {
            CompressorSpec::None => "none",
            CompressorSpec::Quecc(_) => "quecc",
            CompressorSpec::TokenPacker(_) => "tokenpacker",
            CompressorSpec::AvgPool { .. } => "avgpool",
        };
        Self {
            visual_tokens: vlm.visual_tokens(),
            grid: vlm.vision_config().grid(),
            compressor,
            llm_layers: vlm.decoder().config().num_hidden_layers,
        }
    }

    /// Whether training-free reductions apply (a plain checkpoint: all G² patch tokens).
    pub fn reducible(&self) -> bool {
        self.compressor == "none"
    }

    /// `none` or `trained:<compressor>`.
    pub fn label(&self) -> String {
        if self.reducible() {
            "none".into()
        } else {
            format!("trained:{}", self.compressor)
        }
    }

    /// The V a request may get with `method` (`None`: only the native V).
    pub fn options(&self, method: Option<ReductionMethod>) -> Vec<usize> {
        let mut v = match method {
            Some(m) if self.reducible() => method_options(m, self.grid),
            _ => vec![],
        };
        if !v.contains(&self.visual_tokens) {
            v.push(self.visual_tokens);
        }
        v.sort_unstable();
        v
    }
}

/// How one request's visual tokens are produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisualPlan {
    /// V: the visual tokens the LLM works with (FastV: those its layers ≥ K keep; the adaptive
    /// `prumerge-plus`: an upper bound, G² + 1, until the image is seen).
    pub visual_tokens: usize,
    /// `None`: the checkpoint's own tokens (all patches, or its trained compressor).
    pub method: Option<ReductionMethod>,
    /// FastV's layer K (used only by `fastv`).
    pub fastv_layer: usize,
    /// The V the request asked for, when it was not served.
    pub requested: Option<usize>,
    /// A remark for the response (`visual_tokens` not served as asked, a default applied).
    pub note: Option<String>,
}

impl VisualPlan {
    /// The checkpoint's own V.
    pub fn native(native: &NativeTokens) -> Self {
        Self {
            visual_tokens: native.visual_tokens,
            method: None,
            fastv_layer: DEFAULT_FASTV_LAYER,
            requested: None,
            note: None,
        }
    }

    /// `token_reduction` as the response reports it.
    pub fn label(&self, native: &NativeTokens) -> String {
        match self.method {
            Some(m) => m.name().to_string(),
            None => native.label(),
        }
    }

    /// Visual tokens entering the LLM's input (the context-window check): V, but every patch token
    /// for FastV, which prunes inside the LLM.
    pub fn entering_tokens(&self, native: &NativeTokens) -> usize {
        match self.method {
            Some(ReductionMethod::FastV) => native.grid * native.grid,
            _ => self.visual_tokens,
        }
    }

    /// The engine's [`TokenReduction`] (`None`: the checkpoint's own tokens).
    pub fn reduction(&self) -> Option<TokenReduction> {
        let m = self.method?;
        let v = (!m.adaptive()).then_some(self.visual_tokens);
        Some(TokenReduction { method: m, visual_tokens: v, fastv_layer: self.fastv_layer })
    }
}

/// Validates the request's `visual_tokens` / `token_reduction` against a model.
///
/// Errors (400): `invalid_visual_tokens` for V < 1 or V > 576, or a V the method cannot produce from
/// this checkpoint ([`TokenReduction::validate`]'s reason; for `avgpool`, the V it can); those of
/// [`parse_method`]; `token_reduction_not_applicable` for a training-free method on a checkpoint with
/// a trained compressor; `invalid_fastv_layer` for a FastV layer K outside 1 ..= (LLM layers − 1).
pub fn plan(
    native: &NativeTokens,
    visual_tokens: Option<i64>,
    method: Option<&str>,
    fastv_layer: Option<i64>,
) -> Result<VisualPlan, ApiError> {
    let method = match method {
        Some(m) => parse_method(m)?,
        None => None,
    };
    let fastv_layer = self::fastv_layer(native, fastv_layer)?;
    let v = match visual_tokens {
        Some(v) if !(1..=MAX_VISUAL_TOKENS).contains(&v) => {
            return Err(ApiError::invalid_param(
                "invalid_visual_tokens",
                "visual_tokens",
                format!("visual_tokens must be between 1 and {MAX_VISUAL_TOKENS}, got {v}"),
            ))
        }
        Some(v) => Some(v as usize),
        None => None,
    };
    if !native.reducible() {
        if let Some(m) = method {
            return Err(ApiError::invalid_param(
                "token_reduction_not_applicable",
                "token_reduction",
                format!(
                    "this checkpoint has a trained {} compressor producing V = {}; token_reduction `{}` applies only to plain checkpoints (all patch tokens)",
                    native.compressor,
                    native.visual_tokens,
                    m.name()
                ),
            ));
        }
        let mut p = VisualPlan::native(native);
        if let Some(v) = v.filter(|&v| v != native.visual_tokens) {
            p.requested = Some(v);
            p.note = Some(format!(
                "this checkpoint's trained {} compressor produces V = {}; it serves that V, not the {v} requested",
                native.compressor, native.visual_tokens
            ));
        }
        return Ok(p);
    }
    let (m, defaulted) = match (method, v) {
        // PruMerge+ chooses V itself.
        (Some(m), _) if m.adaptive() => (m, false),
        // A method without V means nothing to reduce to: the native tokens.
        (_, None) => return Ok(VisualPlan::native(native)),
        (None, Some(v)) if v == native.visual_tokens => return Ok(VisualPlan::native(native)),
        (Some(m), Some(_)) => (m, false),
        (None, Some(_)) => (DEFAULT_METHOD, true),
    };
    if m == ReductionMethod::FastV && !(1..native.llm_layers).contains(&fastv_layer) {
        return Err(fastv_layer_error(fastv_layer as i64, native.llm_layers));
    }
    let request = TokenReduction { method: m, visual_tokens: v, fastv_layer };
    if let Err(e) = request.validate(native.grid, native.llm_layers) {
        let reason = match e {
            models::Error::Invalid(s) => s,
            e => e.to_string(),
        };
        let g = native.grid;
        let options = match m {
            ReductionMethod::AvgPool => format!("; it can produce V ∈ {:?}", method_options(m, g)),
            _ => String::new(),
        };
        return Err(ApiError::invalid_param(
            "invalid_visual_tokens",
            "visual_tokens",
            format!(
                "`{}` cannot produce V = {} from this checkpoint's {g}×{g} patch grid: {reason}{options}",
                m.name(),
                v.map_or("(adaptive)".to_string(), |v| v.to_string())
            ),
        ));
    }
    if m == ReductionMethod::AvgPool && v == Some(native.visual_tokens) {
        // Pooling with window 1 is the identity: serve the native tokens.
        return Ok(VisualPlan::native(native));
    }
    Ok(VisualPlan {
        visual_tokens: v.unwrap_or(native.grid * native.grid + 1),
        method: Some(m),
        fastv_layer,
        requested: None,
        note: defaulted.then(|| format!("no token_reduction given: used `{}`", m.name())),
    })
}

/// The request's `fastv_layer` (default [`DEFAULT_FASTV_LAYER`]). Errors: 400 `invalid_fastv_layer`
/// for a given K outside 1 ..= (LLM layers − 1).
pub fn fastv_layer(native: &NativeTokens, fastv_layer: Option<i64>) -> Result<usize, ApiError> {
    match fastv_layer {
        None => Ok(DEFAULT_FASTV_LAYER),
        Some(k) if (1..native.llm_layers as i64).contains(&k) => Ok(k as usize),
        Some(k) => Err(fastv_layer_error(k, native.llm_layers)),
    }
}

fn fastv_layer_error(k: i64, layers: usize) -> ApiError {
    ApiError::invalid_param(
        "invalid_fastv_layer",
        "fastv_layer",
        format!(
            "fastv_layer K = {k} is out of range: the LLM has {layers} layers and K must be in 1..={}",
            layers.saturating_sub(1)
        ),
    )
}

/// The projected visual tokens (1, V, H) of `pixels` (1, 3, S, S) under `plan` (FastV: all G², pruned
/// in the LLM). Errors: the model's.
pub fn visual_embeddings(vlm: &Vlm, plan: &VisualPlan, pixels: &Tensor, question: &str) -> engine::Result<Tensor> {
    match plan.reduction() {
        None => vlm.visual_embeddings(pixels, question),
        Some(r) => Ok(vlm.reduced_visual_embeddings(pixels, &r)?.visual),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> NativeTokens {
        NativeTokens { visual_tokens: 64, grid: 8, compressor: "none", llm_layers: 4 }
    }
    fn quecc() -> NativeTokens {
        NativeTokens { visual_tokens: 4, grid: 8, compressor: "quecc", llm_layers: 4 }
    }

    #[test]
    fn plain_checkpoint_pools_to_square_divisors() {
        assert_eq!(plan(&plain(), None, None, None).unwrap(), VisualPlan::native(&plain()));
        let p = plan(&plain(), Some(16), None, None).unwrap();
        assert_eq!((p.visual_tokens, p.method), (16, Some(ReductionMethod::AvgPool)));
        assert!(p.note.is_some(), "the default method is reported");
        let p = plan(&plain(), Some(4), Some("avgpool"), None).unwrap();
        assert_eq!((p.visual_tokens, p.method, p.note), (4, Some(ReductionMethod::AvgPool), None));
        assert_eq!(plan(&plain(), Some(9), None, None).unwrap_err().code, "invalid_visual_tokens");
        assert_eq!(plan(&plain(), Some(144), None, None).unwrap_err().code, "invalid_visual_tokens");
        assert_eq!(plan(&plain(), Some(64), Some("avgpool"), None).unwrap().method, None);
        assert_eq!(plain().options(Some(ReductionMethod::AvgPool)), vec![1, 4, 16, 64]);
        assert_eq!(plain().options(None), vec![64]);
    }

    #[test]
    fn trained_checkpoint_serves_its_v_and_says_so() {
        let p = plan(&quecc(), Some(16), None, None).unwrap();
        assert_eq!((p.visual_tokens, p.requested), (4, Some(16)));
        assert!(p.note.unwrap().contains("quecc"));
        assert_eq!(plan(&quecc(), Some(4), None, None).unwrap().note, None);
        assert_eq!(plan(&quecc(), Some(4), Some("avgpool"), None).unwrap_err().code, "token_reduction_not_applicable");
        assert_eq!(quecc().options(Some(ReductionMethod::AvgPool)), vec![4]);
        assert_eq!(quecc().label(), "trained:quecc");
    }

    #[test]
    fn every_engine_method_is_served_under_its_engine_name() {
        for m in ReductionMethod::ALL {
            assert_eq!(parse_method(m.name()).unwrap(), Some(m));
        }
        for (m, v) in [("visionzip", 16), ("cls-topk", 9), ("prumerge-plus-fixed", 5), ("fastv", 16)] {
            let p = plan(&plain(), Some(v), Some(m), Some(1)).unwrap();
            assert_eq!((p.visual_tokens, p.method.map(|m| m.name()), p.note), (v as usize, Some(m), None));
        }
        assert_eq!(plan(&plain(), Some(16), Some("fastv"), None).unwrap().entering_tokens(&plain()), 64);
        let adaptive = plan(&plain(), None, Some("prumerge-plus"), None).unwrap();
        assert_eq!(
            (adaptive.method, adaptive.reduction().unwrap().visual_tokens),
            (Some(ReductionMethod::PruMergePlus), None)
        );
        assert_eq!(plan(&plain(), Some(16), Some("prumerge-plus"), None).unwrap_err().code, "invalid_visual_tokens");
        assert_eq!(plan(&plain(), Some(65), Some("visionzip"), None).unwrap_err().code, "invalid_visual_tokens");
        let shallow = NativeTokens { llm_layers: 2, ..plain() };
        assert_eq!(plan(&shallow, Some(16), Some("fastv"), None).unwrap_err().code, "invalid_fastv_layer");
        assert_eq!(plan(&shallow, Some(16), Some("fastv"), Some(1)).unwrap().reduction().unwrap().fastv_layer, 1);
        assert_eq!(plan(&plain(), Some(16), Some("fastv"), Some(0)).unwrap_err().code, "invalid_fastv_layer");
        assert_eq!(
            plan(&quecc(), Some(4), Some("visionzip"), None).unwrap_err().code,
            "token_reduction_not_applicable"
        );
    }

    #[test]
    fn bounds_and_names() {
        for v in [0, -1, 577, i64::MAX] {
            assert_eq!(plan(&plain(), Some(v), None, None).unwrap_err().code, "invalid_visual_tokens", "V = {v}");
        }
        assert_eq!(plan(&plain(), Some(16), Some("prumerge+"), None).unwrap_err().code, "invalid_token_reduction");
        assert_eq!(plan(&plain(), Some(16), Some("magic"), None).unwrap_err().code, "invalid_token_reduction");
        assert_eq!(plan(&plain(), None, Some("none"), None).unwrap(), VisualPlan::native(&plain()));
    }
}
