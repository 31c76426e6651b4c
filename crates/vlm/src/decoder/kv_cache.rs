//! The per-sequence KV cache owned by the decoder.
use candle_core::Tensor;

use crate::Result;

/// Keys and values of every layer for the tokens processed so far, each (B, kv_heads, len, head_dim)
/// after RoPE. One cache holds one batch of sequences; clear it (or swap it with
/// [`super::Decoder::take_kv_cache`] / [`super::Decoder::set_kv_cache`]) between sequences.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
        }
    }

    /// Number of cached positions (the next token's position).
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

    /// Appends `k`, `v` (B, kv_heads, L, head_dim) to layer `layer`; returns the full keys/values.
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match &self.layers[layer] {
            None => (k.clone(), v.clone()),
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2)?, Tensor::cat(&[pv, v], 2)?),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    pub(crate) fn num_layers(&self) -> usize {
        self.layers.len()
    }
}
