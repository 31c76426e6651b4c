//! `torch.nn.Linear` as one differentiable op: `y = x Wᵀ + b` or `y = x Wᵀ + residual` (the
//! residual connection of a pre-norm block folded into its output projection).
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::kernels::{matmul, needs_grad, operand, tensor, with_slice, Real, View};
use super::vmath::simd_fn;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    None,
    Bias,
    Residual,
}

struct LinearOp {
    extra: Extra,
}

/// Rows, in, out of `x` (…, in) · `w` (out, in)ᵀ.
fn dims(x: &Layout, w: &Layout) -> candle_core::Result<(usize, usize, usize, Shape)> {
    let (xd, wd) = (x.dims(), w.dims());
    if xd.is_empty() || wd.len() != 2 || xd[xd.len() - 1] != wd[1] {
        candle_core::bail!("fused linear: input {xd:?} does not match weight {wd:?}");
    }
    let k = wd[1];
    let rows = x.shape().elem_count() / k.max(1);
    let mut out = xd.to_vec();
    *out.last_mut().expect("rank ≥ 1") = wd[0];
    Ok((rows, k, wd[0], Shape::from(out)))
}

fn forward<T: Real>(
    op: &LinearOp,
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    third: Option<(&CpuStorage, &Layout)>,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (rows, k, n, shape) = dims(x.1, w.1)?;
    let xs = operand::<T>(x.0, x.1, "linear")?;
    let ws = operand::<T>(w.0, w.1, "linear")?;
    let mut y = match (op.extra, third) {
        (Extra::Bias, Some((s, l))) => {
            let b = operand::<T>(s, l, "linear bias")?;
            if b.len() != n {
                candle_core::bail!("fused linear: bias of {} for {n} outputs", b.len());
            }
            let mut y = Vec::with_capacity(rows * n);
            for _ in 0..rows {
                y.extend_from_slice(b);
            }
            y
        }
        (Extra::Residual, Some((s, l))) => {
            let r = operand::<T>(s, l, "linear residual")?;
            if r.len() != rows * n {
                candle_core::bail!("fused linear: residual of {} values for output {shape:?}", r.len());
            }
            r.to_vec()
        }
        _ => vec![T::ZERO; rows * n],
    };
    let accumulate = op.extra != Extra::None;
    matmul(rows, n, k, &mut y, View::rows(0, n), xs, View::rows(0, k), ws, View::rows(0, k).t(), T::ONE, accumulate);
    Ok((T::storage(y), shape))
}

fn dispatch(
    op: &LinearOp,
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    third: Option<(&CpuStorage, &Layout)>,
) -> candle_core::Result<(CpuStorage, Shape)> {
    match x.0 {
        CpuStorage::F32(_) => forward::<f32>(op, x, w, third),
        CpuStorage::F64(_) => forward::<f64>(op, x, w, third),
        _ => candle_core::bail!("fused linear: f32/f64 only"),
    }
}

simd_fn! {
    /// `out[j] += Σ_rows g[row, j]` for g (rows × out.len()).
    fn column_sums<T: Real>(g: &[T], out: &mut [T]) {
        for row in g.chunks_exact(out.len()) {
            for (d, &v) in out.iter_mut().zip(row) {
                *d += v;
            }
        }
    }
}

/// (dx, dW, d third) for the upstream gradient `g` (…, out).
fn backward<T: Real>(
    op: &LinearOp,
    x: &Tensor,
    w: &Tensor,
    third: Option<&Tensor>,
    g: &Tensor,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (n, k) = w.dims2()?;
    let rows = x.elem_count() / k.max(1);
    with_slice::<T, _>(g, |gs| -> candle_core::Result<_> {
        let dx = if needs_grad(x) {
            Some(with_slice::<T, _>(w, |ws| {
                let mut dx = vec![T::ZERO; rows * k];
                matmul(
                    rows,
                    k,
                    n,
                    &mut dx,
                    View::rows(0, k),
                    gs,
                    View::rows(0, n),
                    ws,
                    View::rows(0, k),
                    T::ONE,
                    false,
                );
                tensor(dx, x.shape())
            })??)
        } else {
            None
        };
        let dw = if needs_grad(w) {
            Some(with_slice::<T, _>(x, |xs| {
                let mut dw = vec![T::ZERO; n * k];
                matmul(
                    n,
                    k,
                    rows,
                    &mut dw,
                    View::rows(0, k),
                    gs,
                    View::rows(0, n).t(),
                    xs,
                    View::rows(0, k),
                    T::ONE,
                    false,
                );
                tensor(dw, (n, k))
            })??)
        } else {
            None
        };
        let d3 = match (op.extra, third) {
            (Extra::Bias, Some(b)) if needs_grad(b) => {
                let mut db = vec![T::ZERO; n];
                column_sums(gs, &mut db);
                Some(tensor(db, n)?)
            }
            (Extra::Residual, Some(r)) if needs_grad(r) => Some(g.clone()),
            _ => None,
        };
        Ok((dx, dw, d3))
    })?
}

fn dispatch_bwd(
    op: &LinearOp,
    x: &Tensor,
    w: &Tensor,
    third: Option<&Tensor>,
    g: &Tensor,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    match x.dtype() {
        candle_core::DType::F32 => backward::<f32>(op, x, w, third, g),
        candle_core::DType::F64 => backward::<f64>(op, x, w, third, g),
        dt => candle_core::bail!("fused linear: {dt:?} unsupported"),
    }
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch(self, (s1, l1), (s2, l2), None)
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = dispatch_bwd(self, x, w, None, g)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        match self.extra {
            Extra::Residual => "fused-linear-residual",
            _ => "fused-linear-bias",
        }
    }
    #[allow(clippy::too_many_arguments)]
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch(self, (s1, l1), (s2, l2), Some((s3, l3)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        t3: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        dispatch_bwd(self, x, w, Some(t3), g)
    }
}

fn check(x: &Tensor, w: &Tensor) -> Result<()> {
    if !super::supports(x) || x.dtype() != w.dtype() || !super::supports(w) {
        return Err(Error::Invalid(format!(
            "fused linear needs f32/f64 CPU tensors of one dtype, got {:?} and {:?}",
            x.dtype(),
            w.dtype()
        )));
    }
    Ok(())
}

/// `x` (…, in) · `weight` (out, in)ᵀ + `bias` (out) → (…, out), differentiable in all three (only the
/// inputs autograd tracks get a gradient: frozen features cost no input gradient).
/// Errors: [`Error::Invalid`] for dtypes other than f32/f64 or non-CPU tensors; shape mismatch.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    check(x, weight)?;
    let (x, w) = (x.contiguous()?, weight.contiguous()?);
    Ok(match bias {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, LinearOp { extra: Extra::Bias })?,
        None => x.apply_op2(&w, LinearOp { extra: Extra::None })?,
    })
}

/// `x` (…, in) · `weight` (out, in)ᵀ + `residual` (…, out): a bias-free output projection followed
/// by a residual connection, as one op. Errors: as [`linear`]; `residual` of the wrong size.
pub fn linear_residual(x: &Tensor, weight: &Tensor, residual: &Tensor) -> Result<Tensor> {
    check(x, weight)?;
    let (x, w, r) = (x.contiguous()?, weight.contiguous()?, residual.contiguous()?);
    Ok(x.apply_op3(&w, &r, LinearOp { extra: Extra::Residual })?)
}
