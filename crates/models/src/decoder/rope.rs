//! Rotary position embedding, HF "default" type with the `rotate_half` (non-interleaved) layout
//! (HF `modeling_qwen2.py` / `modeling_llama.py`: `apply_rotary_pos_emb`).
use candle_core::{CpuStorage, DType, Device, Storage, Tensor, D};

use crate::Mode;
use crate::Result;

/// Cos/sin tables, each (positions computed so far, head_dim / 2). They cover the positions used so far,
/// grown on demand (doubling, from [`INITIAL_POSITIONS`]) up to the context window: a checkpoint whose
/// `max_position_embeddings` is far larger than its prompts (Qwen-1.5: 32 768) costs no memory for the
/// positions it never reaches.
#[derive(Debug)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
    max_positions: usize,
    dtype: DType,
    device: Device,
    tables: std::sync::RwLock<(Tensor, Tensor)>,
}

/// Positions computed when the tables are first made (or fewer, with a smaller context window).
pub const INITIAL_POSITIONS: usize = 512;

impl Clone for RotaryEmbedding {
    fn clone(&self) -> Self {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner()).clone();
        Self {
            inv_freq: self.inv_freq.clone(),
            max_positions: self.max_positions,
            dtype: self.dtype,
            device: self.device.clone(),
            tables: std::sync::RwLock::new(tables),
        }
    }
}

impl RotaryEmbedding {
    /// Tables for positions `0..max_positions` (computed as they are needed); frequencies
    /// `θ^(-2i/head_dim)` computed in f32 as HF does.
    pub fn new(theta: f64, head_dim: usize, max_positions: usize, dtype: DType, dev: &Device) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
        let tables = Self::compute(&inv_freq, INITIAL_POSITIONS.min(max_positions), dtype, dev)?;
        Ok(Self { inv_freq, max_positions, dtype, device: dev.clone(), tables: std::sync::RwLock::new(tables) })
    }

    /// The (cos, sin) tables of positions `0..n`.
    fn compute(inv_freq: &[f32], n: usize, dtype: DType, dev: &Device) -> Result<(Tensor, Tensor)> {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in 0..n {
            for f in inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (n, half), dev)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (n, half), dev)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }

    /// The cos and sin rows (len, head_dim / 2) of positions `start..start + len`, growing the tables if
    /// needed. Errors: [`crate::Error::ContextWindow`] for positions beyond the context window.
    fn rows(&self, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.max_positions)
            .ok_or(crate::Error::ContextWindow { len: start.saturating_add(len), max: self.max_positions })?;
        {
            let t = self.tables.read().unwrap_or_else(|p| p.into_inner());
            if t.0.dim(0)? >= end {
                return Ok((t.0.narrow(0, start, len)?, t.1.narrow(0, start, len)?));
            }
        }
        let mut t = self.tables.write().unwrap_or_else(|p| p.into_inner());
        if t.0.dim(0)? < end {
            let n = end.next_power_of_two().max(INITIAL_POSITIONS).min(self.max_positions);
            *t = Self::compute(&self.inv_freq, n, self.dtype, &self.device)?;
        }
        Ok((t.0.narrow(0, start, len)?, t.1.narrow(0, start, len)?))
    }

    /// The cos and sin tables (len, head_dim / 2) of positions `start..start + len`, for the fused
    /// training attention ([`kernels::autograd::attention`]). Errors: positions beyond the table.
    pub fn tables(&self, start: usize, len: usize) -> Result<kernels::autograd::Rope> {
        let (cos, sin) = self.rows(start, len)?;
        Ok(kernels::autograd::Rope { cos, sin })
    }

    /// Rotates `xs` (B, heads, L, head_dim) holding positions `start..start + L`.
    pub fn apply(&self, xs: &Tensor, start: usize, mode: Mode) -> Result<Tensor> {
        let (_b, _h, l, d) = xs.dims4()?;
        let (cos, sin) = self.rows(start, l)?;
        match mode {
            Mode::Inference => Ok(candle_nn::rotary_emb::rope(&xs.contiguous()?, &cos, &sin)?),
            Mode::Differentiable => {
                // x·cos + rotate_half(x)·sin with cos/sin repeated to the full head width.
                let cos = Tensor::cat(&[&cos, &cos], D::Minus1)?;
                let sin = Tensor::cat(&[&sin, &sin], D::Minus1)?;
                let x1 = xs.narrow(D::Minus1, 0, d / 2)?;
                let x2 = xs.narrow(D::Minus1, d / 2, d / 2)?;
                let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
                Ok((xs.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
            }
        }
    }

    /// Rotates `xs` (B, heads, L, head_dim) whose row t holds position `positions[t]` (any positions,
    /// e.g. the original ones of the tokens FastV keeps). Inference only. Errors: `positions` not of
    /// length L, positions beyond the context window.
    pub fn apply_positions(&self, xs: &Tensor, positions: &[usize]) -> Result<Tensor> {
        let (_b, _h, l, _d) = xs.dims4()?;
        if positions.len() != l {
            return Err(crate::Error::Invalid(format!("{} positions for {l} rows", positions.len())));
        }
        let end = positions.iter().max().map_or(0, |&p| p + 1);
        let (cos, sin) = self.rows(0, end)?;
        let ids = Tensor::from_vec(positions.iter().map(|&p| p as u32).collect::<Vec<_>>(), l, &self.device)?;
        let (cos, sin) = (cos.index_select(&ids, 0)?, sin.index_select(&ids, 0)?);
        Ok(candle_nn::rotary_emb::rope(&xs.contiguous()?, &cos.contiguous()?, &sin.contiguous()?)?)
    }

    /// Whether the tables are f32 (what [`Self::split_qkv_rotated`] needs).
    pub fn is_f32(&self) -> bool {
        self.dtype == DType::F32
    }

    /// Inference: splits the stacked q|k|v projection `y` (B, L, (nh + 2·nkv)·d) f32 into
    /// q (B, nh, L, d) and k (B, nkv, L, d), both rotated for positions `start..start + L`, and
    /// v (B, nkv, L, d): one pass over `y` (parallel over output heads) instead of reshape, transpose,
    /// copy and [`Self::apply`] per tensor. Same rotation as `apply` (HF `apply_rotary_pos_emb`,
    /// `rotate_half` layout): out[i] = x[i]·cos − x[i + d/2]·sin, out[i + d/2] = x[i + d/2]·cos + x[i]·sin.
    /// Errors: [`crate::Error::Invalid`] unless `y` is an f32 CPU tensor of that width and the tables are
    /// f32; positions beyond the table (candle's narrow error).
    pub fn split_qkv_rotated(
        &self,
        y: &Tensor,
        heads: (usize, usize),
        d: usize,
        start: usize,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        use rayon::prelude::*;
        let (nh, nkv) = heads;
        let (b, l, width) = y.dims3()?;
        if width != (nh + 2 * nkv) * d || !d.is_multiple_of(2) || y.dtype() != DType::F32 || self.dtype != DType::F32 {
            return Err(crate::Error::Invalid(format!(
                "split_qkv_rotated: f32 (B, L, {}) input and f32 tables expected, got {:?} {:?}",
                (nh + 2 * nkv) * d,
                y.dtype(),
                y.dims()
            )));
        }
        let (cos, sin) = self.rows(start, l)?;
        let cos = cos.flatten_all()?.to_vec1::<f32>()?;
        let sin = sin.flatten_all()?.to_vec1::<f32>()?;
        let y = y.contiguous()?;
        let (storage, layout) = y.storage_and_layout();
        let ys = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((o0, o1))) => &v[o0..o1],
            _ => return Err(crate::Error::Invalid("split_qkv_rotated: contiguous f32 CPU input expected".into())),
        };
        // Output head `h` of `count` heads starting at column head `first` of `y`: its L rows copied,
        // then rotated in place by the training attention's kernel (row t is position start + t).
        let fill = |out: &mut [f32], count: usize, first: usize, rotate: bool| {
            out.par_chunks_mut(l * d).enumerate().for_each(|(bh, dst)| {
                let (bi, h) = (bh / count, bh % count);
                for (t, row) in dst.chunks_exact_mut(d).enumerate() {
                    row.copy_from_slice(&ys[(bi * l + t) * width + (first + h) * d..][..d]);
                }
                if rotate {
                    kernels::autograd::rotate_f32(dst, d, d, l, 0, &cos, &sin, false);
                }
            });
        };
        let (mut q, mut k, mut v) =
            (vec![0f32; b * nh * l * d], vec![0f32; b * nkv * l * d], vec![0f32; b * nkv * l * d]);
        if l * d > 0 {
            fill(&mut q, nh, 0, true);
            fill(&mut k, nkv, nh, true);
            fill(&mut v, nkv, nh + nkv, false);
        }
        let dev = y.device();
        Ok((
            Tensor::from_vec(q, (b, nh, l, d), dev)?,
            Tensor::from_vec(k, (b, nkv, l, d), dev)?,
            Tensor::from_vec(v, (b, nkv, l, d), dev)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against reshape + transpose + candle's `rope` kernel ([`RotaryEmbedding::apply`]), with GQA
    /// (nh ≠ nkv), a batch of two and an offset start position.
    #[test]
    fn split_qkv_rotated_matches_apply() {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let dev = Device::Cpu;
        let (b, l, nh, nkv, d, start) = (2, 7, 4, 2, 8, 5);
        let rope = RotaryEmbedding::new(10_000.0, d, 32, DType::F32, &dev).unwrap();
        let y = kernels::random::randn(&mut rng, 1.0, (b, l, (nh + 2 * nkv) * d), DType::F32, &dev).unwrap();
        let (q, k, v) = rope.split_qkv_rotated(&y, (nh, nkv), d, start).unwrap();
        let part = |from: usize, heads: usize| {
            y.narrow(2, from * d, heads * d).unwrap().reshape((b, l, heads, d)).unwrap().transpose(1, 2).unwrap()
        };
        let want_q = rope.apply(&part(0, nh), start, Mode::Inference).unwrap();
        let want_k = rope.apply(&part(nh, nkv), start, Mode::Inference).unwrap();
        let want_v = part(nh + nkv, nkv).contiguous().unwrap();
        for (got, want) in [(q, want_q), (k, want_k), (v, want_v)] {
            assert_eq!(got.dims(), want.dims());
            let err =
                (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(err < 1e-6, "max abs error {err}");
        }
        assert!(rope.split_qkv_rotated(&y, (nh, nkv + 1), d, start).is_err(), "wrong width must be an error");
        assert!(rope.split_qkv_rotated(&y, (nh, nkv), d, 30).is_err(), "positions beyond the table must be an error");
    }
}
