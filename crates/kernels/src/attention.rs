//! The inference attention core over the KV cache, as one op: for every (sequence, query head, block
//! of query rows) in parallel, scores = scale · q Kᵀ over the keys that block can see (causal for the
//! decoder, [`cached_attention`]; all keys for a ViT, [`full_attention`]), softmax (f32, as HF's
//! `softmax(…, dtype=torch.float32)`), times V, written straight into the (B, L, heads · head_dim)
//! layout `o_proj` reads.
//!
//! Same mathematics as HF `Qwen2Attention` / `LlamaAttention` (eager: `repeat_kv`, `q·kᵀ/√d + causal
//! mask`, softmax, `·v`), but no (B, heads, L, L') score or mask tensor is materialised, no key/value
//! is copied for GQA or out of the cache's over-allocated buffers, and a causal prefill skips the
//! masked upper triangle block by block (≈ half the products at long L). Decode (L = 1) reads each
//! cached key and value once, in parallel over heads.
//!
//! Inference only (no backward; training uses [`crate::autograd::attention`]). f32 only.
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::autograd::kernels::{matmul, serial, Real, View};
use crate::autograd::softmax_rows;
use crate::autograd::vmath::{dot, simd_fn};
use crate::{Error, Result};

/// Query rows per parallel task in a prefill (a block's score buffer is `ROW_BLOCK × L'` floats).
const ROW_BLOCK: usize = 64;

/// Blocks of at most this many query rows (decode) take [`by_rows`] instead of the product kernel.
const FEW_ROWS: usize = 4;

simd_fn! {
    /// Attention of `rows` query rows (view `qv`) over `keys` key/value rows (views `kv`, `vv`), one key
    /// at a time: dot products, softmax (row r sees `first + r + 1` keys when `causal`), then Σ_j p_j·v_j into `o`
    /// (rows × d, zeroed by the caller). For decode, where packing operands for a product kernel costs
    /// more than the products.
    #[allow(clippy::too_many_arguments)]
    fn by_rows<T: Real>(rows: usize, keys: usize, d: usize, q: &[T], qv: View, k: &[T], kv: View, v: &[T], vv: View, scale: T, causal: bool, first: usize, p: &mut [T], o: &mut [T]) {
        for r in 0..rows {
            let qr = &q[qv.offset + r * qv.rs..][..d];
            for (j, pj) in p[r * keys..(r + 1) * keys].iter_mut().enumerate() {
                *pj = scale * dot(qr, &k[kv.offset + j * kv.rs..][..d]);
            }
        }
        softmax_rows(p, keys, causal, first);
        for (pr, or) in p.chunks_exact(keys).zip(o.chunks_exact_mut(d)) {
            for (j, &pj) in pr.iter().enumerate() {
                if pj != T::ZERO {
                    for (a, &b) in or.iter_mut().zip(&v[vv.offset + j * vv.rs..][..d]) {
                        *a += pj * b;
                    }
                }
            }
        }
    }
}

/// One query row with head_dim = 16·W on AVX-512: q and the output row stay in registers while every
/// visible key and value row is read once (scores, softmax, Σ p_j·v_j).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use crate::autograd::vmath::exp_f32;
    use std::arch::x86_64::*;

    /// `o[..16W] = softmax(scale · q·K[..keys]ᵀ) · V[..keys]`, K row j at `k + j·ks`, V row j at `v + j·vs`;
    /// `p` (≥ keys) is scratch.
    ///
    /// # Safety
    /// AVX-512F must be available; `q`, `o` hold 16·W floats and `k`, `v` `keys` rows of 16·W.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn one_row<const W: usize>(
        q: &[f32],
        k: &[f32],
        ks: usize,
        v: &[f32],
        vs: usize,
        keys: usize,
        scale: f32,
        p: &mut [f32],
        o: &mut [f32],
    ) {
        assert!(q.len() >= 16 * W && o.len() >= 16 * W && p.len() >= keys);
        assert!(keys == 0 || (k.len() >= (keys - 1) * ks + 16 * W && v.len() >= (keys - 1) * vs + 16 * W));
        let mut qv = [_mm512_setzero_ps(); W];
        for (w, r) in qv.iter_mut().enumerate() {
            *r = _mm512_mul_ps(_mm512_loadu_ps(q.as_ptr().add(16 * w)), _mm512_set1_ps(scale));
        }
        let mut max = f32::NEG_INFINITY;
        for (j, pj) in p[..keys].iter_mut().enumerate() {
            let kr = k.as_ptr().add(j * ks);
            let mut acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kr));
            for (w, &qw) in qv.iter().enumerate().skip(1) {
                acc = _mm512_fmadd_ps(qw, _mm512_loadu_ps(kr.add(16 * w)), acc);
            }
            *pj = _mm512_reduce_add_ps(acc);
            max = max.max(*pj);
        }
        let mut sum = 0f32;
        for pj in p[..keys].iter_mut() {
            *pj = exp_f32(*pj - max);
            sum += *pj;
        }
        let inv = 1.0 / sum;
        let mut acc = [_mm512_setzero_ps(); W];
        for (j, &pj) in p[..keys].iter().enumerate() {
            let (vr, pj) = (v.as_ptr().add(j * vs), _mm512_set1_ps(pj * inv));
            for (w, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vr.add(16 * w)), *a);
            }
        }
        for (w, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(o.as_mut_ptr().add(16 * w), *a);
        }
    }
}

struct CachedAttention {
    scale: f32,
    causal: bool,
}

/// Geometry of one operand: (B, heads, len, head_dim) with arbitrary strides on the first three
/// dimensions and a contiguous last one.
struct Operand<'a> {
    data: &'a [f32],
    offset: usize,
    strides: [usize; 3],
}

impl<'a> Operand<'a> {
    fn new(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<(Self, [usize; 4])> {
        let CpuStorage::F32(data) = s else {
            candle_core::bail!("cached attention: {what} must be f32");
        };
        let dims: [usize; 4] = l.dims().try_into().map_err(|_| {
            candle_core::Error::Msg(format!("cached attention: {what} must be 4-D, got {:?}", l.dims()))
        })?;
        let st = l.stride();
        if dims[3] > 1 && st[3] != 1 {
            candle_core::bail!("cached attention: {what} rows must be contiguous");
        }
        Ok((Self { data, offset: l.start_offset(), strides: [st[0], st[1], st[2]] }, dims))
    }

    /// The (len × head_dim) matrix of sequence `b`, head `h`.
    fn view(&self, b: usize, h: usize) -> View {
        View::rows(self.offset + b * self.strides[0] + h * self.strides[1], self.strides[2])
    }
}

impl CustomOp3 for CachedAttention {
    fn name(&self) -> &'static str {
        "cached-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, [nb, nh, l, d]) = Operand::new(sq, lq, "q")?;
        let (k, kd) = Operand::new(sk, lk, "k")?;
        let (v, vd) = Operand::new(sv, lv, "v")?;
        let (nkv, len) = (kd[1], kd[2]);
        if kd != vd || kd[0] != nb || kd[3] != d || nkv == 0 || nh % nkv != 0 || (self.causal && len < l) {
            candle_core::bail!("cached attention: q {:?}, k {:?}, v {:?} do not fit together", lq.dims(), kd, vd);
        }
        let n_rep = nh / nkv;
        // Causal: query row i sits at position past + i and sees keys 0..=past + i.
        let (causal, past) = (self.causal, len.saturating_sub(l));
        // Causal: blocks of ROW_BLOCK rows (each sees only its horizon). Unmasked: whole heads when there
        // are enough of them to keep every thread busy (the keys are then packed once per head).
        let block = if !causal && nb * nh >= 2 * crate::threads::num_threads() { l.max(1) } else { ROW_BLOCK };
        let tasks: Vec<(usize, usize, usize, usize)> = (0..nb)
            .flat_map(|b| {
                (0..nh).flat_map(move |h| (0..l).step_by(block).map(move |i0| (b, h, i0, (i0 + block).min(l))))
            })
            .collect();
        let blocks: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(b, h, i0, i1)| {
                let (rows, g) = (i1 - i0, h / n_rep);
                // Causal: the block's last row's horizon (earlier rows are masked in the softmax).
                let keys = if causal { (past + i1).min(len) } else { len };
                let mut p = vec![0f32; rows * keys];
                let mut o = vec![0f32; rows * d];
                let qv = q.view(b, h);
                let qv = View::rows(qv.offset + i0 * qv.rs, qv.rs);
                #[cfg(target_arch = "x86_64")]
                // One row sees `keys` keys in both modes (causal: past + i0 + 1 = its horizon).
                if rows == 1 && (d == 64 || d == 128) && std::arch::is_x86_feature_detected!("avx512f") {
                    let (kv, vv) = (k.view(b, g), v.view(b, g));
                    let (ks, vs) = (&k.data[kv.offset..], &v.data[vv.offset..]);
                    let q_row = &q.data[qv.offset..qv.offset + d];
                    // SAFETY: AVX-512F detected; `one_row` asserts the slice lengths it reads.
                    unsafe {
                        if d == 64 {
                            avx512::one_row::<4>(q_row, ks, kv.rs, vs, vv.rs, keys, self.scale, &mut p, &mut o);
                        } else {
                            avx512::one_row::<8>(q_row, ks, kv.rs, vs, vv.rs, keys, self.scale, &mut p, &mut o);
                        }
                    }
                    return o;
                }
                if rows <= FEW_ROWS {
                    by_rows(
                        rows,
                        keys,
                        d,
                        q.data,
                        qv,
                        k.data,
                        k.view(b, g),
                        v.data,
                        v.view(b, g),
                        self.scale,
                        causal,
                        past + i0,
                        &mut p,
                        &mut o,
                    );
                } else {
                    serial(|| {
                        matmul(
                            rows,
                            keys,
                            d,
                            &mut p,
                            View::rows(0, keys),
                            q.data,
                            qv,
                            k.data,
                            k.view(b, g).t(),
                            self.scale,
                            false,
                        );
                        softmax_rows(&mut p, keys, causal, past + i0);
                        matmul(
                            rows,
                            d,
                            keys,
                            &mut o,
                            View::rows(0, d),
                            &p,
                            View::rows(0, keys),
                            v.data,
                            v.view(b, g),
                            1.0,
                            false,
                        );
                    });
                }
                o
            })
            .collect();
        let width = nh * d;
        let mut out = vec![0f32; nb * l * width];
        for (&(b, h, i0, _), o) in tasks.iter().zip(&blocks) {
            for (r, row) in o.chunks_exact(d).enumerate() {
                let at = (b * l + i0 + r) * width + h * d;
                out[at..at + d].copy_from_slice(row);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((nb, l, width))))
    }
}

/// Causal attention of `L` new query rows against the cached keys/values (which end with those rows'
/// own keys/values).
///
/// `q`: (B, num_heads, L, head_dim) f32 after RoPE; `k`, `v`: (B, num_kv_heads, L', head_dim) f32 with
/// L' ≥ L, any strides with contiguous rows (e.g. [`super::KvCache`] views). Query row i is position
/// L' − L + i and attends to keys 0..=L' − L + i; query head h reads key/value head
/// h / (num_heads / num_kv_heads) (HF `repeat_kv`). Returns softmax(`scale` · q Kᵀ) V as (B, L,
/// num_heads · head_dim), the row layout of the heads side by side that `o_proj` takes.
///
/// Errors: [`Error::Invalid`] for non-f32 or non-CPU tensors; candle errors for inconsistent shapes.
pub fn cached_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    attention_op(q, k, v, scale, true)
}

/// Unmasked multi-head attention (a ViT's self-attention, HF `CLIPAttention`): every query row sees
/// every key. `q` (B, num_heads, L, head_dim), `k`, `v` (B, num_kv_heads, L', head_dim), f32, rows
/// contiguous → (B, L, num_heads · head_dim). Errors as [`cached_attention`].
pub fn full_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    attention_op(q, k, v, scale, false)
}

fn attention_op(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, causal: bool) -> Result<Tensor> {
    for t in [q, k, v] {
        if t.dtype() != candle_core::DType::F32 || !t.device().is_cpu() {
            return Err(Error::Invalid(format!("attention op needs f32 CPU tensors, got {:?}", t.dtype())));
        }
    }
    Ok(q.apply_op3_no_bwd(k, v, &CachedAttention { scale: scale as f32, causal })?)
}
