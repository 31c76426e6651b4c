//! The per-sequence KV cache owned by the decoder.
//!
//! Keys/values live in preallocated buffers (B, kv_heads, capacity, head_dim) that new positions are
//! written into (`Tensor::slice_set`); when full, the capacity grows by 1/8 (at least [`MIN_GROWTH`]
//! positions), so a decode step copies only its own key/value instead of the whole history
//! (`Tensor::cat` did) and a prefill does not keep twice its length resident.
use candle_core::{Tensor, D};

use crate::Result;

/// Keys and values of every layer for the tokens processed so far, each (B, kv_heads, len, head_dim)
/// after RoPE. One cache holds one batch of sequences; clear it (or swap it with
/// [`super::Decoder::take_kv_cache`] / [`super::Decoder::set_kv_cache`]) between sequences.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// Per layer: key buffer, value buffer (B, kv_heads, capacity, head_dim) and the filled length.
    layers: Vec<Option<(Tensor, Tensor, usize)>>,
    len: usize,
}

/// Smallest growth of the buffers (positions).
const MIN_GROWTH: usize = 64;

/// A zeroed buffer like `x` (B, kv_heads, L, head_dim) with `capacity` positions, holding `old`'s first
/// `filled` positions.
fn grow(x: &Tensor, old: Option<&Tensor>, filled: usize, capacity: usize) -> Result<Tensor> {
    let (b, h, _, d) = x.dims4()?;
    let buf = Tensor::zeros((b, h, capacity, d), x.dtype(), x.device())?;
    if let Some(old) = old {
        if filled > 0 {
            buf.slice_set(&old.narrow(D::Minus2, 0, filled)?.contiguous()?, D::Minus2, 0)?;
        }
    }
    Ok(buf)
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![None; num_layers], len: 0 }
    }

    /// Number of positions processed (the next token's position). FastV's pruned layers cache fewer
    /// ([`Self::layer_len`]); positions keep their original numbering.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every cached key/value.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    /// Appends `k`, `v` (B, kv_heads, L, head_dim) to layer `layer`; returns the full keys/values
    /// (views into the buffers, (B, kv_heads, len, head_dim)).
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let l = k.dim(D::Minus2)?;
        let (kb, vb, filled) = match self.layers[layer].take() {
            Some((kb, vb, filled)) if filled + l <= kb.dim(D::Minus2)? => (kb, vb, filled),
            prev => {
                let filled = prev.as_ref().map_or(0, |p| p.2);
                // 1/8 headroom (at least MIN_GROWTH), rounded up to 64 positions: a prefill of n
                // tokens keeps ≈ 1.125·n positions resident rather than 2·n, and a growth during
                // decode copies the cache once per ≈ n/8 steps.
                let need = filled + l;
                let capacity = (need + (need / 8).max(MIN_GROWTH)).div_ceil(64) * 64;
                let kb = grow(k, prev.as_ref().map(|p| &p.0), filled, capacity)?;
                let vb = grow(v, prev.as_ref().map(|p| &p.1), filled, capacity)?;
                (kb, vb, filled)
            }
        };
        kb.slice_set(&k.contiguous()?, D::Minus2, filled)?;
        vb.slice_set(&v.contiguous()?, D::Minus2, filled)?;
        let out = (kb.narrow(D::Minus2, 0, filled + l)?, vb.narrow(D::Minus2, 0, filled + l)?);
        self.layers[layer] = Some((kb, vb, filled + l));
        Ok(out)
    }

    /// Layer `layer`'s cached keys (B, kv_heads, filled, head_dim), if any. With FastV the layers hold
    /// different lengths: layers ≥ K only the kept tokens.
    pub fn keys(&self, layer: usize) -> Option<Tensor> {
        let (kb, _, filled) = self.layers.get(layer)?.as_ref()?;
        kb.narrow(D::Minus2, 0, *filled).ok()
    }

    /// Positions layer `layer` holds (≤ [`Self::len`]; less for FastV's pruned layers).
    pub fn layer_len(&self, layer: usize) -> usize {
        self.layers.get(layer).and_then(|l| l.as_ref()).map_or(0, |l| l.2)
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    pub(crate) fn num_layers(&self) -> usize {
        self.layers.len()
    }
}
