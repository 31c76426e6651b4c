//! RMSNorm (HF `Qwen2RMSNorm`: `w · x / sqrt(mean(x²) + eps)`) and LayerNorm (`torch.nn.LayerNorm`:
//! `w · (x − μ) / sqrt(var + eps) + b`, biased variance) over the last dimension, each one op with
//! its backward pass. Row statistics are recomputed in the backward pass (one pass over a row).
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::kernels::{needs_grad, operand, tensor, with_slice, Real};
use super::vmath::{dot, simd_fn, sum};
use crate::{Error, Result};

struct RmsNormOp {
    eps: f64,
}

struct LayerNormOp {
    eps: f64,
}

/// 1 / sqrt(mean(x²) + eps).
#[inline(always)]
fn inv_rms<T: Real>(row: &[T], eps: T) -> T {
    T::ONE / (dot(row, row) / T::from_f64(row.len() as f64) + eps).sqrt()
}

/// (μ, 1 / sqrt(var + eps)) with the biased variance.
#[inline(always)]
fn moments<T: Real>(row: &[T], eps: T) -> (T, T) {
    let n = T::from_f64(row.len() as f64);
    let mu = sum(row) / n;
    let mut q = T::ZERO;
    for &v in row {
        let c = v - mu;
        q += c * c;
    }
    (mu, T::ONE / (q / n + eps).sqrt())
}

fn last_dim(l: &Layout, w: usize, op: &str) -> candle_core::Result<usize> {
    match l.dims().last() {
        Some(&d) if d == w && d > 0 => Ok(d),
        _ => candle_core::bail!("{op}: input {:?} does not end in the weight's size {w}", l.dims()),
    }
}

simd_fn! {
    fn rms_kernel<T: Real>(x: &[T], w: &[T], eps: T, y: &mut [T]) {
        let h = w.len();
        for (row, out) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)) {
            let r = inv_rms(row, eps);
            for ((o, &v), &wv) in out.iter_mut().zip(row).zip(w) {
                *o = wv * (v * r);
            }
        }
    }
}

simd_fn! {
    /// dx (if `dx` is non-empty) and dw (accumulated) of RMSNorm.
    fn rms_grad<T: Real>(x: &[T], w: &[T], g: &[T], eps: T, dx: &mut [T], dw: &mut [T]) {
        let h = w.len();
        let inv_h = T::ONE / T::from_f64(h as f64);
        let want_x = !dx.is_empty();
        let mut gw = vec![T::ZERO; h];
        for (i, (row, grow)) in x.chunks_exact(h).zip(g.chunks_exact(h)).enumerate() {
            let r = inv_rms(row, eps);
            for ((d, &v), &gv) in dw.iter_mut().zip(row).zip(grow) {
                *d += gv * v * r;
            }
            if want_x {
                for ((o, &gv), &wv) in gw.iter_mut().zip(grow).zip(w) {
                    *o = gv * wv;
                }
                let c = r * r * r * dot(&gw, row) * inv_h;
                for ((o, &v), &gwv) in dx[i * h..(i + 1) * h].iter_mut().zip(row).zip(&gw) {
                    *o = r * gwv - c * v;
                }
            }
        }
    }
}

fn rms_fwd<T: Real>(
    eps: f64,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, w) = (operand::<T>(s1, l1, "rms_norm")?, operand::<T>(s2, l2, "rms_norm")?);
    last_dim(l1, w.len(), "rms_norm")?;
    let mut y = vec![T::ZERO; x.len()];
    rms_kernel(x, w, T::from_f64(eps), &mut y);
    Ok((T::storage(y), l1.shape().clone()))
}

fn rms_bwd<T: Real>(
    eps: f64,
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let h = w.elem_count();
    let (want_x, want_w) = (needs_grad(x), needs_grad(w));
    let (dx, dw) = with_slice::<T, _>(x, |xs| {
        with_slice::<T, _>(w, |ws| {
            with_slice::<T, _>(g, |gs| {
                let mut dx = vec![T::ZERO; if want_x { xs.len() } else { 0 }];
                let mut dw = vec![T::ZERO; h];
                rms_grad(xs, ws, gs, T::from_f64(eps), &mut dx, &mut dw);
                (dx, dw)
            })
        })
    })???;
    let dx = if want_x { Some(tensor(dx, x.shape())?) } else { None };
    let dw = if want_w { Some(tensor(dw, h)?) } else { None };
    Ok((dx, dw))
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => rms_fwd::<f32>(self.eps, s1, l1, s2, l2),
            CpuStorage::F64(_) => rms_fwd::<f64>(self.eps, s1, l1, s2, l2),
            _ => candle_core::bail!("fused rms_norm: f32/f64 only"),
        }
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        match x.dtype() {
            candle_core::DType::F32 => rms_bwd::<f32>(self.eps, x, w, g),
            _ => rms_bwd::<f64>(self.eps, x, w, g),
        }
    }
}

simd_fn! {
    fn ln_kernel<T: Real>(x: &[T], w: &[T], b: &[T], eps: T, y: &mut [T]) {
        let h = w.len();
        for (row, out) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)) {
            let (mu, r) = moments(row, eps);
            for (((o, &v), &wv), &bv) in out.iter_mut().zip(row).zip(w).zip(b) {
                *o = (v - mu) * r * wv + bv;
            }
        }
    }
}

simd_fn! {
    /// dx (if `dx` is non-empty), dw and db (accumulated) of LayerNorm.
    #[allow(clippy::too_many_arguments)]
    fn ln_grad<T: Real>(x: &[T], w: &[T], g: &[T], eps: T, dx: &mut [T], dw: &mut [T], db: &mut [T]) {
        let h = w.len();
        let inv_h = T::ONE / T::from_f64(h as f64);
        let want_x = !dx.is_empty();
        let (mut xh, mut gw) = (vec![T::ZERO; h], vec![T::ZERO; h]);
        for (i, (row, grow)) in x.chunks_exact(h).zip(g.chunks_exact(h)).enumerate() {
            let (mu, r) = moments(row, eps);
            for (o, &v) in xh.iter_mut().zip(row) {
                *o = (v - mu) * r;
            }
            for (((d, e), &gv), &xv) in dw.iter_mut().zip(db.iter_mut()).zip(grow).zip(&xh) {
                *d += gv * xv;
                *e += gv;
            }
            if want_x {
                for ((o, &gv), &wv) in gw.iter_mut().zip(grow).zip(w) {
                    *o = gv * wv;
                }
                let (m1, m2) = (sum(&gw) * inv_h, dot(&gw, &xh) * inv_h);
                for ((o, &gwv), &xv) in dx[i * h..(i + 1) * h].iter_mut().zip(&gw).zip(&xh) {
                    *o = r * (gwv - m1 - xv * m2);
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn ln_fwd<T: Real>(
    eps: f64,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    s3: &CpuStorage,
    l3: &Layout,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, w, b) =
        (operand::<T>(s1, l1, "layer_norm")?, operand::<T>(s2, l2, "layer_norm")?, operand::<T>(s3, l3, "layer_norm")?);
    let h = last_dim(l1, w.len(), "layer_norm")?;
    if b.len() != h {
        candle_core::bail!("layer_norm: bias of {} for width {h}", b.len());
    }
    let mut y = vec![T::ZERO; x.len()];
    ln_kernel(x, w, b, T::from_f64(eps), &mut y);
    Ok((T::storage(y), l1.shape().clone()))
}

type Grads3 = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

fn ln_bwd<T: Real>(eps: f64, x: &Tensor, w: &Tensor, b: &Tensor, g: &Tensor) -> candle_core::Result<Grads3> {
    let h = w.elem_count();
    let (want_x, want_w, want_b) = (needs_grad(x), needs_grad(w), needs_grad(b));
    let (dx, dw, db) = with_slice::<T, _>(x, |xs| {
        with_slice::<T, _>(w, |ws| {
            with_slice::<T, _>(g, |gs| {
                let mut dx = vec![T::ZERO; if want_x { xs.len() } else { 0 }];
                let (mut dw, mut db) = (vec![T::ZERO; h], vec![T::ZERO; h]);
                ln_grad(xs, ws, gs, T::from_f64(eps), &mut dx, &mut dw, &mut db);
                (dx, dw, db)
            })
        })
    })???;
    Ok((
        if want_x { Some(tensor(dx, x.shape())?) } else { None },
        if want_w { Some(tensor(dw, h)?) } else { None },
        if want_b { Some(tensor(db, h)?) } else { None },
    ))
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
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
        match s1 {
            CpuStorage::F32(_) => ln_fwd::<f32>(self.eps, s1, l1, s2, l2, s3, l3),
            CpuStorage::F64(_) => ln_fwd::<f64>(self.eps, s1, l1, s2, l2, s3, l3),
            _ => candle_core::bail!("fused layer_norm: f32/f64 only"),
        }
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, b: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<Grads3> {
        match x.dtype() {
            candle_core::DType::F32 => ln_bwd::<f32>(self.eps, x, w, b, g),
            _ => ln_bwd::<f64>(self.eps, x, w, b, g),
        }
    }
}

fn check(x: &Tensor, w: &Tensor, op: &str) -> Result<()> {
    if !super::supports(x) || x.dtype() != w.dtype() {
        return Err(Error::Invalid(format!(
            "fused {op} needs f32/f64 CPU tensors of one dtype, got {:?} and {:?}",
            x.dtype(),
            w.dtype()
        )));
    }
    Ok(())
}

/// RMSNorm of `x` (…, H) with `weight` (H): `weight · x / sqrt(mean(x²) + eps)` (HF `Qwen2RMSNorm`),
/// differentiable in both. Errors: [`Error::Invalid`] for other dtypes/devices; shape mismatch.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    check(x, weight, "rms_norm")?;
    Ok(x.contiguous()?.apply_op2(&weight.contiguous()?, RmsNormOp { eps })?)
}

/// LayerNorm of `x` (…, H) with `weight`, `bias` (H), biased variance (`torch.nn.LayerNorm`),
/// differentiable in all three. Errors: as [`rms_norm`].
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    check(x, weight, "layer_norm")?;
    Ok(x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, LayerNormOp { eps })?)
}
