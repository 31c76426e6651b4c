//! The select layer as the training-free token-reduction methods read it: its hidden state with CLS,
//! the attention maps of the block that produces it, and PruMerge's single-head score of the next
//! block — each computed only when requested ([`MapsRequest`]), so plain feature extraction
//! ([`super::extract_features`]) pays nothing for them.
use super::clip::{drop_cls, AttentionMaps, ClipVisionTower};
use super::features::{FeatureLayers, VisionFeatures};
use crate::{Error, Result};
use candle_core::Tensor;

/// Which select-layer maps to compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapsRequest {
    /// The select block's CLS attention per head and keys (VisionZip, FasterVLM's CLS top-k).
    pub attention: bool,
    /// PruMerge's full-width single-head CLS attention and keys of the next block.
    pub single_head: bool,
}

/// PruMerge's score at the block after the select layer ([`ClipVisionTower::single_head_cls_attention`]).
#[derive(Debug, Clone)]
pub struct SingleHeadAttention {
    /// CLS row of `softmax(q kᵀ · d^-½)` over all T = grid² + 1 tokens, (B, T).
    pub cls_attention: Tensor,
    /// Full-width keys `k_proj(layer_norm1(x))`, (B, T, d).
    pub keys: Tensor,
}

/// Features plus the select layer's maps.
#[derive(Debug, Clone)]
pub struct SelectLayerOutputs {
    /// What [`super::extract_features`] returns (patch tokens of the select layer, CLS dropped).
    pub features: VisionFeatures,
    /// The select hidden state with CLS at position 0, (B, grid² + 1, d).
    pub hidden: Tensor,
    /// The select block's attention maps, if requested.
    pub attention: Option<AttentionMaps>,
    /// PruMerge's single-head score of the next block, if requested.
    pub single_head: Option<SingleHeadAttention>,
}

/// Runs `tower` as deep as `layers` needs and returns the features with the requested maps of the
/// select layer (HF `hidden_states[select_layer]`; its block is HF `attentions[select_layer]` for a
/// negative index, e.g. LLaVA's −2).
/// Errors: those of [`super::extract_features`]; maps of hidden state 0 (no attention), or a single-head
/// score past the loaded blocks ([`Error::Invalid`]).
pub fn extract_with_maps(
    tower: &ClipVisionTower,
    pixels: &Tensor,
    layers: &FeatureLayers,
    request: MapsRequest,
) -> Result<SelectLayerOutputs> {
    let n = tower.config().num_hidden_layers;
    let depth = layers.depth(n)?;
    let select = FeatureLayers::resolve(layers.select_layer, n)?;
    if request.attention && select == 0 {
        return Err(Error::Invalid(
            "the select layer is the embeddings (hidden state 0), which have no attention map".into(),
        ));
    }
    let (hs, attention) = tower.hidden_states_with_maps(pixels, depth, request.attention.then_some(select))?;
    let hidden = hs[select].clone();
    let single_head = if request.single_head {
        let (cls_attention, keys) = tower.single_head_cls_attention(&hidden, select)?;
        Some(SingleHeadAttention { cls_attention, keys })
    } else {
        None
    };
    let multi = if layers.multi.is_empty() {
        None
    } else {
        let parts =
            layers.multi.iter().map(|&m| Ok(hs[FeatureLayers::resolve(m, n)?].clone())).collect::<Result<Vec<_>>>()?;
        Some(drop_cls(&Tensor::cat(&parts, 2)?)?)
    };
    let features = VisionFeatures { single: drop_cls(&hidden)?, multi, grid: tower.config().grid() };
    Ok(SelectLayerOutputs { features, hidden, attention, single_head })
}
