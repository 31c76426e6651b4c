//! Training-free visual-token reduction for fixed-grid LLaVA checkpoints: V chosen per query, no
//! weights of its own. The vision-side methods read the select layer's hidden state and attention
//! ([`crate::vision::extract_with_maps`]) and return V tokens (B, V, d) for the projector; FastV prunes
//! inside the LLM instead ([`crate::decoder::FastV`]).
//!
//! | method | file | keeps | reference |
//! |---|---|---|---|
//! | VisionZip | [`visionzip`] | CLS + top patches by CLS attention summed over heads, plus contextual tokens merged by key similarity | dvlab-research/VisionZip `visionzip/clip_encoder.py` |
//! | CLS top-k | [`cls_topk`] | the V patches with the highest mean-over-heads CLS attention, original order | Theia-4869/FasterVLM `llava/model/llava_arch.py` |
//! | PruMerge+ | [`prumerge`] | IQR outliers of the next block's single-head CLS attention + spatial samples, each merged with its 32 nearest keys, + one token for the rest | 42Shawn/LLaVA-PruMerge `clip_encoder.py` |
//! | PruMerge+ fixed V | [`prumerge`] | the top V − 1 by the same score, merged the same way, + one token for the rest | (this crate: the fixed-V variant) |
//! | avgpool | [`pool`] | 2-D average pooling of the grid to √V × √V | Matryoshka-style `F.avg_pool2d` |
//! | FastV | `decoder::fastv` | the top V image tokens by the last prompt token's attention at LLM layer K − 1, for layers ≥ K | pkunlp-icler/FastV `modeling_llama.py` |
use crate::vision::{MapsRequest, SelectLayerOutputs};
use crate::{Error, Result};
use candle_core::Tensor;

pub mod cls_topk;
pub mod pool;
pub mod prumerge;
pub mod visionzip;

/// FastV's default pruning layer K (the paper's K = 2).
pub const DEFAULT_FASTV_LAYER: usize = 2;

/// A training-free token-reduction method: defined with the cost model that counts it
/// (`scaling::cost::arch`), re-exported here.
pub use scaling::cost::arch::{ReductionMethod, UnknownReduction};

/// One query's token reduction: the method, V and FastV's layer K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenReduction {
    /// The method.
    pub method: ReductionMethod,
    /// V, visual tokens kept; `None` only for the adaptive PruMerge+.
    pub visual_tokens: Option<usize>,
    /// FastV's layer K: layers 0..K see every token, layers ≥ K the kept ones (ignored by the others).
    pub fastv_layer: usize,
}

/// The result of a vision-side reduction.
#[derive(Debug, Clone)]
pub struct Reduced {
    /// The kept / merged tokens, (B, V, d), in the order the method emits them.
    pub tokens: Tensor,
    /// Per sequence, the indices the method kept, in the method's numbering and order (see each
    /// method; empty for average pooling).
    pub kept: Vec<Vec<usize>>,
}

impl TokenReduction {
    /// `method` at V = `visual_tokens` (give `None` for the adaptive PruMerge+), FastV at
    /// [`DEFAULT_FASTV_LAYER`].
    pub fn new(method: ReductionMethod, visual_tokens: Option<usize>) -> Self {
        Self { method, visual_tokens, fastv_layer: DEFAULT_FASTV_LAYER }
    }

    /// Checks the request against a G×G grid and an LLM of `llm_layers` layers: V given (except for the
    /// adaptive PruMerge+, which takes none), 1 ≤ V ≤ G², a square whose side divides G for average
    /// pooling, 1 ≤ K < `llm_layers` for FastV. Errors: [`Error::Invalid`] saying which.
    pub fn validate(&self, grid: usize, llm_layers: usize) -> Result<()> {
        let n = grid * grid;
        match (self.method.adaptive(), self.visual_tokens) {
            (true, Some(v)) => {
                return Err(Error::Invalid(format!(
                    "{} chooses V itself (IQR outliers); use prumerge-plus-fixed for V = {v}",
                    self.method
                )))
            }
            (false, None) => {
                return Err(Error::Invalid(format!("token reduction {} needs V (visual tokens)", self.method)))
            }
            (false, Some(0)) => return Err(Error::Invalid("V = 0: keep at least one visual token".into())),
            (false, Some(v)) if v > n => {
                return Err(Error::Invalid(format!(
                    "V = {v} is larger than the {grid}×{grid} grid of {n} patch tokens"
                )))
            }
            _ => {}
        }
        if self.method == ReductionMethod::AvgPool {
            crate::compress::output_grid_for(self.visual_tokens.unwrap_or(0), grid)?;
        }
        if self.method == ReductionMethod::FastV && !(1..llm_layers).contains(&self.fastv_layer) {
            return Err(Error::Invalid(format!(
                "FastV layer K = {} is out of range: the LLM has {llm_layers} layers and K must be in 1..={}",
                self.fastv_layer,
                llm_layers.saturating_sub(1)
            )));
        }
        Ok(())
    }

    /// The select-layer maps the method reads.
    pub fn maps_request(&self) -> MapsRequest {
        match self.method {
            ReductionMethod::VisionZip | ReductionMethod::ClsTopK => {
                MapsRequest { attention: true, single_head: false }
            }
            ReductionMethod::PruMergePlus | ReductionMethod::PruMergePlusFixed => {
                MapsRequest { attention: false, single_head: true }
            }
            ReductionMethod::AvgPool | ReductionMethod::FastV => MapsRequest::default(),
        }
    }

    /// FastV's (K, V) if this is FastV.
    pub fn fastv(&self) -> Option<(usize, usize)> {
        (self.method == ReductionMethod::FastV).then(|| (self.fastv_layer, self.visual_tokens.unwrap_or(0)))
    }

    /// Reduces the select layer's patch tokens (vision-side methods) to (B, V, d); FastV returns every
    /// patch token (it prunes in the LLM). `out` must carry the maps of [`Self::maps_request`].
    /// Errors: a missing map, shapes that do not fit ([`Error::Invalid`]); those of [`Self::validate`]
    /// for the grid (the LLM depth is not checked here).
    pub fn reduce(&self, out: &SelectLayerOutputs) -> Result<Reduced> {
        let grid = out.features.grid;
        self.validate(grid, usize::MAX)?;
        let v = self.visual_tokens.unwrap_or(0);
        let missing = |what: &str| Error::Invalid(format!("{} needs {what} of the select layer", self.method));
        match self.method {
            ReductionMethod::VisionZip => {
                let maps = out.attention.as_ref().ok_or_else(|| missing("the attention maps"))?;
                visionzip::reduce(&out.hidden, maps, visionzip::Split::for_visual_tokens(v))
            }
            ReductionMethod::ClsTopK => {
                let maps = out.attention.as_ref().ok_or_else(|| missing("the attention maps"))?;
                cls_topk::reduce(&out.hidden, maps, v)
            }
            ReductionMethod::PruMergePlus | ReductionMethod::PruMergePlusFixed => {
                let sh = out.single_head.as_ref().ok_or_else(|| missing("PruMerge's single-head attention"))?;
                let keep = if self.method.adaptive() { prumerge::Keep::Adaptive } else { prumerge::Keep::Fixed(v) };
                prumerge::reduce(&out.hidden, sh, keep)
            }
            ReductionMethod::AvgPool => pool::reduce(&out.features, v),
            ReductionMethod::FastV => {
                let b = out.features.single.dim(0)?;
                Ok(Reduced { tokens: out.features.single.clone(), kept: vec![(0..grid * grid).collect(); b] })
            }
        }
    }
}

/// (B, T, d) f32 → (B, T, d, row-major values).
pub(crate) fn values3(t: &Tensor) -> Result<(usize, usize, usize, Vec<f32>)> {
    let (b, n, d) = t.dims3()?;
    let v = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok((b, n, d, v))
}

/// Indices of the k largest `scores`, largest first; ties go to the lower index.
pub(crate) fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Stacks per-sequence token lists (each V × d values) into (B, V, d).
pub(crate) fn stack(rows: Vec<Vec<f32>>, d: usize, like: &Tensor) -> Result<Tensor> {
    let b = rows.len();
    let v = rows.first().map_or(0, |r| r.len() / d.max(1));
    if rows.iter().any(|r| r.len() != v * d) {
        return Err(Error::Invalid("token reduction kept different V for the sequences of one batch".into()));
    }
    Ok(Tensor::from_vec(rows.concat(), (b, v, d), like.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VisionZip's published splits (54 + 10 at 64, 108 + 20 at 128, 162 + 30 at 192; `main.py` /
    /// README), and CLS alone at V = 1.
    #[test]
    fn visionzip_split_follows_the_reference_settings() {
        for (v, d, c) in [(64, 54, 10), (128, 108, 20), (192, 162, 30), (16, 14, 2), (1, 1, 0)] {
            assert_eq!(visionzip::Split::for_visual_tokens(v), visionzip::Split { dominant: d, contextual: c });
        }
    }

    /// Ties go to the lower index; order is largest first.
    #[test]
    fn top_k_is_largest_first_with_low_index_ties() {
        assert_eq!(top_k(&[0.1, 0.5, 0.5, 0.9, 0.2], 3), vec![3, 1, 2]);
        assert_eq!(top_k(&[1.0], 0), Vec::<usize>::new());
    }

    #[test]
    fn validate_names_the_problem() {
        let ok = |m, v| TokenReduction::new(m, v).validate(24, 24);
        assert!(ok(ReductionMethod::ClsTopK, Some(576)).is_ok());
        assert!(ok(ReductionMethod::VisionZip, Some(1)).is_ok());
        assert!(ok(ReductionMethod::PruMergePlus, None).is_ok());
        assert!(ok(ReductionMethod::AvgPool, Some(144)).is_ok());
        for (m, v) in [
            (ReductionMethod::ClsTopK, Some(0)),
            (ReductionMethod::ClsTopK, Some(577)),
            (ReductionMethod::ClsTopK, None),
            (ReductionMethod::PruMergePlus, Some(64)),
            (ReductionMethod::AvgPool, Some(100)),
        ] {
            assert!(matches!(ok(m, v), Err(Error::Invalid(_))), "{m} {v:?}");
        }
        let fastv = |k| TokenReduction { fastv_layer: k, ..TokenReduction::new(ReductionMethod::FastV, Some(64)) };
        assert!(fastv(2).validate(24, 24).is_ok());
        assert!(fastv(23).validate(24, 24).is_ok());
        assert!(fastv(24).validate(24, 24).is_err());
        assert!(fastv(0).validate(24, 24).is_err());
        for m in ReductionMethod::ALL {
            assert_eq!(m.name().parse::<ReductionMethod>().unwrap(), m);
        }
    }
}
