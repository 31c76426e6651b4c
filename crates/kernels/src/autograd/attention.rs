//! The attention core as one differentiable op: optional RoPE on queries and keys (HF
//! `apply_rotary_pos_emb`, `rotate_half` layout), scaled scores, optional causal mask, softmax, the
//! probability-weighted values, grouped-query heads (HF `repeat_kv`: query head h reads key/value head
//! h / (num_heads / num_kv_heads)). Inputs and output stay in the projections' row layout
//! (…, heads · head_dim), so no transposes or copies are needed around it. The softmax probabilities
//! and rotated queries/keys are kept for the backward pass.
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::kernels::{matmul, needs_grad, operand, tensor, with_slice, Real, View};
use super::vmath::{dot, simd_fn, sum};
use crate::{Error, Result};

/// Shapes and options of [`attention`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    /// Independent sequences (B; for windowed attention, B · windows).
    pub batch: usize,
    /// Query positions per sequence.
    pub q_len: usize,
    /// Key/value positions per sequence (≥ `q_len` when `causal`).
    pub kv_len: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (divides `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Query i sees keys 0 ..= i + (kv_len − q_len) only.
    pub causal: bool,
    /// Score scale (1/√head_dim).
    pub scale: f64,
}

/// RoPE tables for positions `0..kv_len` (queries use the last `q_len`): cos and sin, each
/// (kv_len, head_dim / 2), as the models crate's `RotaryEmbedding` stores them.
#[derive(Debug, Clone)]
pub struct Rope {
    /// cos (positions, head_dim / 2).
    pub cos: Tensor,
    /// sin (positions, head_dim / 2).
    pub sin: Tensor,
}

struct Saved {
    q: CpuStorage,
    k: CpuStorage,
    p: CpuStorage,
}

struct AttentionOp {
    spec: AttentionSpec,
    rope: Option<Rope>,
    saved: Mutex<Option<Saved>>,
}

simd_fn! {
    /// Rotates (`inverse` = false) or un-rotates each head of the rows of `x` (rows of `width`; row r
    /// is position `first + r % len`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rotate<T: Real>(x: &mut [T], width: usize, hd: usize, len: usize, first: usize, cos: &[T], sin: &[T], inverse: bool) {
        let half = hd / 2;
        for (r, row) in x.chunks_exact_mut(width).enumerate() {
            let pos = first + r % len;
            let (c, s) = (&cos[pos * half..(pos + 1) * half], &sin[pos * half..(pos + 1) * half]);
            for head in row.chunks_exact_mut(hd) {
                let (x1, x2) = head.split_at_mut(half);
                if inverse {
                    for (((a, b), &cj), &sj) in x1.iter_mut().zip(x2.iter_mut()).zip(c).zip(s) {
                        let (u, v) = (*a, *b);
                        *a = u * cj + v * sj;
                        *b = v * cj - u * sj;
                    }
                } else {
                    for (((a, b), &cj), &sj) in x1.iter_mut().zip(x2.iter_mut()).zip(c).zip(s) {
                        let (u, v) = (*a, *b);
                        *a = u * cj - v * sj;
                        *b = v * cj + u * sj;
                    }
                }
            }
        }
    }
}

simd_fn! {
    /// Row-wise softmax of the (rows × lk) scores in place; row i keeps its first `lim(i)` entries
    /// (`causal`: i + 1 + offset) and zeroes the rest.
    pub(crate) fn softmax_rows<T: Real>(p: &mut [T], lk: usize, causal: bool, offset: usize) {
        for (i, row) in p.chunks_exact_mut(lk).enumerate() {
            let lim = if causal { (i + 1 + offset).min(lk) } else { lk };
            let (live, dead) = row.split_at_mut(lim);
            let mut max = T::neg_infinity();
            for &x in live.iter() {
                max = if x > max { x } else { max };
            }
            for x in live.iter_mut() {
                *x = (*x - max).fast_exp();
            }
            let inv = T::ONE / sum(live);
            for x in live.iter_mut() {
                *x *= inv;
            }
            for x in dead.iter_mut() {
                *x = T::ZERO;
            }
        }
    }
}

simd_fn! {
    /// dS = P ∘ (dP − Σ_t dP·P), row-wise, in place in `ds` (rows × lk).
    fn softmax_grad_rows<T: Real>(ds: &mut [T], p: &[T], lk: usize) {
        for (drow, prow) in ds.chunks_exact_mut(lk).zip(p.chunks_exact(lk)) {
            let d = dot(drow, prow);
            for (a, &b) in drow.iter_mut().zip(prow) {
                *a = b * (*a - d);
            }
        }
    }
}

impl AttentionOp {
    fn widths(&self) -> (usize, usize) {
        let s = &self.spec;
        (s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim)
    }

    fn q_view(&self, n: usize, h: usize) -> View {
        let (qw, _) = self.widths();
        View::rows(n * self.spec.q_len * qw + h * self.spec.head_dim, qw)
    }

    fn kv_view(&self, n: usize, g: usize) -> View {
        let (_, kw) = self.widths();
        View::rows(n * self.spec.kv_len * kw + g * self.spec.head_dim, kw)
    }

    /// Applies RoPE (or its inverse) to query rows (`is_query`) or key rows in place.
    fn apply_rope<T: Real>(&self, x: &mut [T], is_query: bool, inverse: bool) -> candle_core::Result<()> {
        let Some(rope) = &self.rope else { return Ok(()) };
        let s = &self.spec;
        let (qw, kw) = self.widths();
        let (width, len, first) = if is_query { (qw, s.q_len, s.kv_len - s.q_len) } else { (kw, s.kv_len, 0) };
        with_slice::<T, _>(&rope.cos, |cos| {
            with_slice::<T, _>(&rope.sin, |sin| rotate(x, width, s.head_dim, len, first, cos, sin, inverse))
        })?
    }

    fn fwd<T: Real>(&self, q: &[T], k: &[T], v: &[T]) -> candle_core::Result<Vec<T>> {
        let s = self.spec;
        let (nb, lq, lk, nh, hd) = (s.batch, s.q_len, s.kv_len, s.num_heads, s.head_dim);
        let n_rep = nh / s.num_kv_heads;
        let scale = T::from_f64(s.scale);
        let mut qr = q.to_vec();
        let mut kr = k.to_vec();
        self.apply_rope(&mut qr, true, false)?;
        self.apply_rope(&mut kr, false, false)?;
        let mut p = vec![T::ZERO; nb * nh * lq * lk];
        let mut out = vec![T::ZERO; q.len()];
        for n in 0..nb {
            for h in 0..nh {
                let g = h / n_rep;
                let pb = &mut p[(n * nh + h) * lq * lk..(n * nh + h + 1) * lq * lk];
                matmul(
                    lq,
                    lk,
                    hd,
                    pb,
                    View::rows(0, lk),
                    &qr,
                    self.q_view(n, h),
                    &kr,
                    self.kv_view(n, g).t(),
                    scale,
                    false,
                );
                softmax_rows(pb, lk, s.causal, lk - lq);
                matmul(
                    lq,
                    hd,
                    lk,
                    &mut out,
                    self.q_view(n, h),
                    pb,
                    View::rows(0, lk),
                    v,
                    self.kv_view(n, g),
                    T::ONE,
                    false,
                );
            }
        }
        *self.saved.lock().map_err(|_| candle_core::Error::Msg("attention: poisoned state".into()))? =
            Some(Saved { q: T::storage(qr), k: T::storage(kr), p: T::storage(p) });
        Ok(out)
    }

    /// (dq, dk, dv) from the upstream gradient `go` (rows of the output).
    fn bwd<T: Real>(&self, v: &[T], go: &[T]) -> candle_core::Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let s = self.spec;
        let (nb, lq, lk, nh, hd) = (s.batch, s.q_len, s.kv_len, s.num_heads, s.head_dim);
        let n_rep = nh / s.num_kv_heads;
        let scale = T::from_f64(s.scale);
        let guard = self.saved.lock().map_err(|_| candle_core::Error::Msg("attention: poisoned state".into()))?;
        let saved =
            guard.as_ref().ok_or_else(|| candle_core::Error::Msg("attention: backward before forward".into()))?;
        let missing = || candle_core::Error::Msg("attention: saved state has the wrong dtype".into());
        let (qr, kr, p) = (
            T::slice(&saved.q).ok_or_else(missing)?,
            T::slice(&saved.k).ok_or_else(missing)?,
            T::slice(&saved.p).ok_or_else(missing)?,
        );
        let (mut dq, mut dk, mut dv) = (vec![T::ZERO; qr.len()], vec![T::ZERO; kr.len()], vec![T::ZERO; v.len()]);
        let mut ds = vec![T::ZERO; lq * lk];
        for n in 0..nb {
            for h in 0..nh {
                let g = h / n_rep;
                let pv = View::rows((n * nh + h) * lq * lk, lk);
                // dP = dO · Vᵀ
                matmul(
                    lq,
                    lk,
                    hd,
                    &mut ds,
                    View::rows(0, lk),
                    go,
                    self.q_view(n, h),
                    v,
                    self.kv_view(n, g).t(),
                    T::ONE,
                    false,
                );
                // dV += Pᵀ · dO
                matmul(lk, hd, lq, &mut dv, self.kv_view(n, g), p, pv.t(), go, self.q_view(n, h), T::ONE, true);
                // dS = P ∘ (dP − Σ_t dP·P)
                softmax_grad_rows(&mut ds, &p[pv.offset..pv.offset + lq * lk], lk);
                // dQ = scale · dS · K, dK += scale · dSᵀ · Q
                matmul(
                    lq,
                    hd,
                    lk,
                    &mut dq,
                    self.q_view(n, h),
                    &ds,
                    View::rows(0, lk),
                    kr,
                    self.kv_view(n, g),
                    scale,
                    false,
                );
                matmul(
                    lk,
                    hd,
                    lq,
                    &mut dk,
                    self.kv_view(n, g),
                    &ds,
                    View::rows(0, lk).t(),
                    qr,
                    self.q_view(n, h),
                    scale,
                    true,
                );
            }
        }
        drop(guard);
        self.apply_rope(&mut dq, true, true)?;
        self.apply_rope(&mut dk, false, true)?;
        Ok((dq, dk, dv))
    }

    fn check(&self, lq: &Layout, lk: &Layout, lv: &Layout) -> candle_core::Result<()> {
        let s = &self.spec;
        let (qw, kw) = self.widths();
        let ok = lq.shape().elem_count() == s.batch * s.q_len * qw
            && lk.shape().elem_count() == s.batch * s.kv_len * kw
            && lv.shape().elem_count() == s.batch * s.kv_len * kw
            && lq.dims().last() == Some(&qw)
            && lk.dims().last() == Some(&kw)
            && lv.dims().last() == Some(&kw);
        if !ok {
            candle_core::bail!("attention: q {:?}, k {:?}, v {:?} do not match {s:?}", lq.dims(), lk.dims(), lv.dims());
        }
        Ok(())
    }
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "fused-attention"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.check(l1, l2, l3)?;
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(self.fwd::<f32>(
                operand(s1, l1, "attention")?,
                operand(s2, l2, "attention")?,
                operand(s3, l3, "attention")?,
            )?),
            CpuStorage::F64(_) => CpuStorage::F64(self.fwd::<f64>(
                operand(s1, l1, "attention")?,
                operand(s2, l2, "attention")?,
                operand(s3, l3, "attention")?,
            )?),
            _ => candle_core::bail!("fused attention: f32/f64 only"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        fn typed<T: Real>(
            op: &AttentionOp,
            q: &Tensor,
            k: &Tensor,
            v: &Tensor,
            g: &Tensor,
        ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
            let (dq, dk, dv) = with_slice::<T, _>(v, |vs| with_slice::<T, _>(g, |gs| op.bwd::<T>(vs, gs)))???;
            Ok((
                if needs_grad(q) { Some(tensor(dq, q.shape())?) } else { None },
                if needs_grad(k) { Some(tensor(dk, k.shape())?) } else { None },
                if needs_grad(v) { Some(tensor(dv, v.shape())?) } else { None },
            ))
        }
        match q.dtype() {
            candle_core::DType::F32 => typed::<f32>(self, q, k, v, g),
            _ => typed::<f64>(self, q, k, v, g),
        }
    }
}

/// Multi-head attention core. `q` (…, num_heads · head_dim) holding `batch · q_len` rows, `k`, `v`
/// (…, num_kv_heads · head_dim) holding `batch · kv_len` rows, each sequence's rows consecutive and
/// each row the heads side by side (the q/k/v projections' output). Returns softmax(scale · q kᵀ
/// [+ causal mask]) v in `q`'s shape, with RoPE applied to q and k first when `rope` is given
/// (positions 0..kv_len). Differentiable in q, k and v.
/// Errors: [`Error::Invalid`] for inconsistent sizes, heads not dividing, dtypes other than f32/f64,
/// RoPE tables too short, non-CPU tensors.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, rope: Option<&Rope>, spec: AttentionSpec) -> Result<Tensor> {
    if !super::supports(q) || q.dtype() != k.dtype() || q.dtype() != v.dtype() {
        return Err(Error::Invalid(format!(
            "fused attention needs f32/f64 CPU tensors of one dtype, got {:?}",
            q.dtype()
        )));
    }
    let op = attention_op(q, rope, spec)?;
    Ok(q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

fn attention_op(q: &Tensor, rope: Option<&Rope>, spec: AttentionSpec) -> Result<AttentionOp> {
    let s = &spec;
    if s.num_kv_heads == 0
        || !s.num_heads.is_multiple_of(s.num_kv_heads)
        || s.head_dim == 0
        || (s.causal && s.kv_len < s.q_len)
    {
        return Err(Error::Invalid(format!("fused attention: unsupported shape {spec:?}")));
    }
    let rope = match rope {
        Some(r) => {
            let half = s.head_dim / 2;
            if !s.head_dim.is_multiple_of(2) || r.cos.dims() != [s.kv_len, half] || r.sin.dims() != [s.kv_len, half] {
                return Err(Error::Invalid(format!(
                    "fused attention: RoPE tables {:?}/{:?} do not match {} positions × {half}",
                    r.cos.dims(),
                    r.sin.dims(),
                    s.kv_len
                )));
            }
            Some(Rope { cos: r.cos.to_dtype(q.dtype())?.contiguous()?, sin: r.sin.to_dtype(q.dtype())?.contiguous()? })
        }
        None => None,
    };
    Ok(AttentionOp { spec, rope, saved: Mutex::new(None) })
}
