//! The one seam where a request's visual-token count V and reduction method are decided
//! ([`plan`]) and applied ([`visual_embeddings`]).
//!
//! A checkpoint with a trained compressor (QueCC, TokenPacker, trained 2-D pooling) produces exactly
//! its trained V; a request for another V is served at the trained V and the response says so. A plain
//! LLaVA checkpoint (all G² patch tokens) can be reduced training-free by the methods in
//! [`Reduction`]; today that is 2-D average pooling of the patch grid (Matryoshka-style, the models
//! crate's `AvgPool`, V = (G/r)²). The training-free methods of the token-reduction literature
//! (VisionZip, CLS-attention top-k, PruMerge, FastV) are recognised by name and answered with a
//! clear 400 until the engine provides them: adding one is one arm in [`Reduction::parse`],
//! [`Reduction::options`] and [`visual_embeddings`].
use candle_core::Tensor;
use engine::model::Vlm;
use models::compress::{allowed_visual_tokens, AvgPool, Compressor, CompressorSpec};
use models::vision::VisionFeatures;

use crate::error::ApiError;

/// The largest V the API accepts (ViT-L/14-336's 24 × 24 grid).
pub const MAX_VISUAL_TOKENS: i64 = 576;

/// Method names of training-free reductions the server knows of but the engine does not run yet.
pub const PENDING_METHODS: [&str; 6] = ["visionzip", "fastervlm", "cls-attention", "prumerge", "prumerge+", "fastv"];

/// A training-free reduction of a plain checkpoint's G² patch tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// 2-D average pooling of the G × G patch grid with window r: V = (G/r)².
    AvgPool,
}

impl Reduction {
    /// The method used when a request gives `visual_tokens` below a plain checkpoint's G² and no
    /// `token_reduction`.
    pub const DEFAULT: Reduction = Reduction::AvgPool;

    /// Every method the server runs.
    pub const ALL: [Reduction; 1] = [Reduction::AvgPool];

    /// The request's name of the method.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::AvgPool => "avgpool",
        }
    }

    /// Parses `token_reduction`. `None` for `"none"` (the checkpoint's own tokens).
    ///
    /// Errors: 400 `token_reduction_unavailable` for a known method the engine does not run yet,
    /// 400 `invalid_token_reduction` for an unknown name.
    pub fn parse(name: &str) -> Result<Option<Reduction>, ApiError> {
        let n = name.trim().to_ascii_lowercase();
        match n.as_str() {
            "none" | "" => Ok(None),
            "avgpool" | "avg-pool" | "pool" => Ok(Some(Reduction::AvgPool)),
            m if PENDING_METHODS.contains(&m) => Err(ApiError::invalid_param(
                "token_reduction_unavailable",
                "token_reduction",
                format!("token_reduction `{m}` is not available in this build; available: {}", available_names()),
            )),
            _ => Err(ApiError::invalid_param(
                "invalid_token_reduction",
                "token_reduction",
                format!("unknown token_reduction `{name}`; available: {}", available_names()),
            )),
        }
    }

    /// The V this method can produce from a G × G grid, ascending.
    pub fn options(self, grid: usize) -> Vec<usize> {
        match self {
            Reduction::AvgPool => allowed_visual_tokens(grid),
        }
    }
}

fn available_names() -> String {
    let mut v = vec!["none"];
    v.extend(Reduction::ALL.iter().map(|r| r.name()));
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
        Self { visual_tokens: vlm.visual_tokens(), grid: vlm.vision_config().grid(), compressor }
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
    pub fn options(&self, method: Option<Reduction>) -> Vec<usize> {
        let mut v = match method {
            Some(m) if self.reducible() => m.options(self.grid),
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
    /// V.
    pub visual_tokens: usize,
    /// `None`: the checkpoint's own tokens (all patches, or its trained compressor).
    pub method: Option<Reduction>,
    /// The V the request asked for, when it was not served.
    pub requested: Option<usize>,
    /// A remark for the response (`visual_tokens` not served as asked, a default applied).
    pub note: Option<String>,
}

impl VisualPlan {
    /// The checkpoint's own V.
    pub fn native(native: &NativeTokens) -> Self {
        Self { visual_tokens: native.visual_tokens, method: None, requested: None, note: None }
    }

    /// `token_reduction` as the response reports it.
    pub fn label(&self, native: &NativeTokens) -> String {
        match self.method {
            Some(m) => m.name().to_string(),
            None => native.label(),
        }
    }
}

/// Validates the request's `visual_tokens` / `token_reduction` against a model.
///
/// Errors (400): `invalid_visual_tokens` for V < 1 or V > 576, or a V the method cannot produce from
/// this checkpoint (listing the V it can); those of [`Reduction::parse`]; `token_reduction_not_applicable`
/// for a training-free method on a checkpoint with a trained compressor.
pub fn plan(native: &NativeTokens, visual_tokens: Option<i64>, method: Option<&str>) -> Result<VisualPlan, ApiError> {
    let method = match method {
        Some(m) => Reduction::parse(m)?,
        None => None,
    };
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
    let Some(v) = v else {
        // A method without V means nothing to reduce to: the native tokens.
        return Ok(VisualPlan::native(native));
    };
    if v == native.visual_tokens && method.is_none() {
        return Ok(VisualPlan::native(native));
    }
    let (m, defaulted) = match method {
        Some(m) => (m, false),
        None => (Reduction::DEFAULT, true),
    };
    let options = m.options(native.grid);
    if !options.contains(&v) {
        return Err(ApiError::invalid_param(
            "invalid_visual_tokens",
            "visual_tokens",
            format!(
                "`{}` cannot produce V = {v} from this checkpoint's {g}×{g} patch grid; it can produce V ∈ {options:?}",
                m.name(),
                g = native.grid
            ),
        ));
    }
    if v == native.visual_tokens {
        // Pooling with window 1 is the identity: serve the native tokens.
        return Ok(VisualPlan::native(native));
    }
    Ok(VisualPlan {
        visual_tokens: v,
        method: Some(m),
        requested: None,
        note: defaulted.then(|| format!("no token_reduction given: used `{}`", m.name())),
    })
}

/// The projected visual tokens (1, V, H) of `pixels` (1, 3, S, S) under `plan`.
pub fn visual_embeddings(vlm: &Vlm, plan: &VisualPlan, pixels: &Tensor, question: &str) -> engine::Result<Tensor> {
    match plan.method {
        None => vlm.visual_embeddings(pixels, question),
        Some(Reduction::AvgPool) => {
            // A plain checkpoint's compressor is the identity: its output is the (1, G², d) patch grid.
            let patches = vlm.compress(pixels, None)?;
            let (_, _, d) = patches.dims3()?;
            let grid = vlm.vision_config().grid();
            let pool = AvgPool::new(plan.visual_tokens, grid, d)?;
            let pooled = pool.compress(&VisionFeatures { single: patches, multi: None, grid }, None)?;
            vlm.project(&pooled)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> NativeTokens {
        NativeTokens { visual_tokens: 64, grid: 8, compressor: "none" }
    }
    fn quecc() -> NativeTokens {
        NativeTokens { visual_tokens: 4, grid: 8, compressor: "quecc" }
    }

    #[test]
    fn plain_checkpoint_pools_to_square_divisors() {
        assert_eq!(plan(&plain(), None, None).unwrap(), VisualPlan::native(&plain()));
        let p = plan(&plain(), Some(16), None).unwrap();
        assert_eq!((p.visual_tokens, p.method), (16, Some(Reduction::AvgPool)));
        assert!(p.note.is_some(), "the default method is reported");
        let p = plan(&plain(), Some(4), Some("avgpool")).unwrap();
        assert_eq!((p.visual_tokens, p.method, p.note), (4, Some(Reduction::AvgPool), None));
        assert_eq!(plan(&plain(), Some(9), None).unwrap_err().code, "invalid_visual_tokens");
        assert_eq!(plan(&plain(), Some(144), None).unwrap_err().code, "invalid_visual_tokens");
        assert_eq!(plan(&plain(), Some(64), Some("avgpool")).unwrap().method, None);
        assert_eq!(plain().options(Some(Reduction::AvgPool)), vec![1, 4, 16, 64]);
        assert_eq!(plain().options(None), vec![64]);
    }

    #[test]
    fn trained_checkpoint_serves_its_v_and_says_so() {
        let p = plan(&quecc(), Some(16), None).unwrap();
        assert_eq!((p.visual_tokens, p.requested), (4, Some(16)));
        assert!(p.note.unwrap().contains("quecc"));
        assert_eq!(plan(&quecc(), Some(4), None).unwrap().note, None);
        assert_eq!(plan(&quecc(), Some(4), Some("avgpool")).unwrap_err().code, "token_reduction_not_applicable");
        assert_eq!(quecc().options(Some(Reduction::AvgPool)), vec![4]);
        assert_eq!(quecc().label(), "trained:quecc");
    }

    #[test]
    fn bounds_and_names() {
        for v in [0, -1, 577, i64::MAX] {
            assert_eq!(plan(&plain(), Some(v), None).unwrap_err().code, "invalid_visual_tokens", "V = {v}");
        }
        assert_eq!(plan(&plain(), Some(16), Some("visionzip")).unwrap_err().code, "token_reduction_unavailable");
        assert_eq!(plan(&plain(), Some(16), Some("magic")).unwrap_err().code, "invalid_token_reduction");
        assert_eq!(plan(&plain(), None, Some("none")).unwrap(), VisualPlan::native(&plain()));
    }
}
