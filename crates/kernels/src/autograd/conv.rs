//! QueCC's depth-wise convolution (`nn.Conv2d(d, d, k, stride s, groups = d)` on the G×G token grid,
//! authors' `q_downsample`) as one differentiable op over token rows, and the broadcast addition of one
//! row per sequence (QueCC's projected query added to every patch token).
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::kernels::{needs_grad, operand, tensor, with_slice, Real};
use super::vmath::simd_fn;
use crate::{Error, Result};

/// Which input rows each output cell reads: output cell v, tap t reads grid token `taps[v·k² + t]`.
#[derive(Debug, Clone)]
pub struct ConvTaps {
    taps: Arc<[u32]>,
    grid_tokens: usize,
    kernel_area: usize,
}

impl ConvTaps {
    /// Taps of a k×k kernel with stride s on a G×G grid of row-major tokens: output cell (i, j) (h×h,
    /// h = (G − k)/s + 1), tap (a, b) reads token (i·s + a)·G + j·s + b.
    pub fn new(grid: usize, kernel: usize, stride: usize) -> Result<Self> {
        if kernel == 0 || stride == 0 || kernel > grid {
            return Err(Error::Invalid(format!(
                "depth-wise conv: kernel {kernel}, stride {stride} on a {grid}×{grid} grid"
            )));
        }
        let h = (grid - kernel) / stride + 1;
        let mut taps = Vec::with_capacity(h * h * kernel * kernel);
        for i in 0..h {
            for j in 0..h {
                for a in 0..kernel {
                    for b in 0..kernel {
                        taps.push(((i * stride + a) * grid + j * stride + b) as u32);
                    }
                }
            }
        }
        Ok(Self { taps: taps.into(), grid_tokens: grid * grid, kernel_area: kernel * kernel })
    }

    fn outputs(&self) -> usize {
        self.taps.len() / self.kernel_area
    }

    /// The flat tap indices, (h·h·k²) ordered (i, j, a, b) as documented on [`ConvTaps::new`].
    pub fn indices(&self) -> &[u32] {
        &self.taps
    }
}

struct DepthwiseOp {
    taps: ConvTaps,
}

simd_fn! {
    /// out (B, V, d) = bias + Σ_t x[tap] ∘ wt[t] with wt (k², d).
    fn conv_kernel<T: Real>(x: &[T], wt: &[T], bias: &[T], taps: &[u32], k2: usize, g2: usize, out: &mut [T]) {
        let d = bias.len();
        let v = taps.len() / k2;
        for (bi, ob) in out.chunks_exact_mut(v * d).enumerate() {
            let xb = &x[bi * g2 * d..(bi + 1) * g2 * d];
            for (vi, o) in ob.chunks_exact_mut(d).enumerate() {
                o.copy_from_slice(bias);
                for t in 0..k2 {
                    let row = taps[vi * k2 + t] as usize;
                    for ((o, &xv), &wv) in o.iter_mut().zip(&xb[row * d..(row + 1) * d]).zip(&wt[t * d..(t + 1) * d]) {
                        *o += xv * wv;
                    }
                }
            }
        }
    }
}

simd_fn! {
    /// dx (if non-empty, accumulated), dwt (k², d) and db (d), accumulated.
    #[allow(clippy::too_many_arguments)]
    fn conv_grad<T: Real>(x: &[T], wt: &[T], g: &[T], taps: &[u32], k2: usize, g2: usize, dx: &mut [T], dwt: &mut [T], db: &mut [T]) {
        let d = db.len();
        let v = taps.len() / k2;
        let want_x = !dx.is_empty();
        for (bi, gb) in g.chunks_exact(v * d).enumerate() {
            let xb = &x[bi * g2 * d..(bi + 1) * g2 * d];
            for (vi, go) in gb.chunks_exact(d).enumerate() {
                for (e, &gv) in db.iter_mut().zip(go) {
                    *e += gv;
                }
                for t in 0..k2 {
                    let row = taps[vi * k2 + t] as usize;
                    let xr = &xb[row * d..(row + 1) * d];
                    for ((e, &gv), &xv) in dwt[t * d..(t + 1) * d].iter_mut().zip(go).zip(xr) {
                        *e += gv * xv;
                    }
                    if want_x {
                        let dxr = &mut dx[(bi * g2 + row) * d..(bi * g2 + row + 1) * d];
                        for ((e, &gv), &wv) in dxr.iter_mut().zip(go).zip(&wt[t * d..(t + 1) * d]) {
                            *e += gv * wv;
                        }
                    }
                }
            }
        }
    }
}

/// (d, k²) → (k², d).
fn transpose<T: Real>(w: &[T], d: usize, k2: usize) -> Vec<T> {
    let mut wt = vec![T::ZERO; d * k2];
    for c in 0..d {
        for t in 0..k2 {
            wt[t * d + c] = w[c * k2 + t];
        }
    }
    wt
}

impl DepthwiseOp {
    fn dims(&self, x: &Layout) -> candle_core::Result<(usize, usize)> {
        match x.dims() {
            [b, g2, d] if *g2 == self.taps.grid_tokens => Ok((*b, *d)),
            dims => candle_core::bail!("depth-wise conv: input {dims:?} is not (B, {}, d)", self.taps.grid_tokens),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fwd<T: Real>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, d) = self.dims(l1)?;
        let k2 = self.taps.kernel_area;
        let (x, w, bias) =
            (operand::<T>(s1, l1, "conv")?, operand::<T>(s2, l2, "conv")?, operand::<T>(s3, l3, "conv")?);
        if w.len() != d * k2 || bias.len() != d {
            candle_core::bail!(
                "depth-wise conv: weight {:?} / bias {:?} do not fit width {d}, kernel area {k2}",
                l2.dims(),
                l3.dims()
            );
        }
        let v = self.taps.outputs();
        let mut out = vec![T::ZERO; b * v * d];
        conv_kernel(x, &transpose(w, d, k2), bias, &self.taps.taps, k2, self.taps.grid_tokens, &mut out);
        Ok((T::storage(out), Shape::from((b, v, d))))
    }

    fn bwd_typed<T: Real>(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, _, d) = x.dims3()?;
        let k2 = self.taps.kernel_area;
        let want_x = needs_grad(x);
        let (dx, dwt, db) = with_slice::<T, _>(x, |xs| {
            with_slice::<T, _>(w, |ws| {
                with_slice::<T, _>(g, |gs| {
                    let mut dx = vec![T::ZERO; if want_x { xs.len() } else { 0 }];
                    let (mut dwt, mut db) = (vec![T::ZERO; k2 * d], vec![T::ZERO; d]);
                    conv_grad(
                        xs,
                        &transpose(ws, d, k2),
                        gs,
                        &self.taps.taps,
                        k2,
                        self.taps.grid_tokens,
                        &mut dx,
                        &mut dwt,
                        &mut db,
                    );
                    (dx, dwt, db)
                })
            })
        })???;
        let dw = transpose(&dwt, k2, d);
        Ok((
            if want_x { Some(tensor(dx, x.shape())?) } else { None },
            if needs_grad(w) { Some(tensor(dw, w.shape())?) } else { None },
            if needs_grad(bias) { Some(tensor(db, bias.shape())?) } else { None },
        ))
    }
}

impl CustomOp3 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "fused-depthwise-conv"
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
            CpuStorage::F32(_) => self.fwd::<f32>(s1, l1, s2, l2, s3, l3),
            CpuStorage::F64(_) => self.fwd::<f64>(s1, l1, s2, l2, s3, l3),
            _ => candle_core::bail!("fused conv: f32/f64 only"),
        }
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        match x.dtype() {
            candle_core::DType::F32 => self.bwd_typed::<f32>(x, w, b, g),
            _ => self.bwd_typed::<f64>(x, w, b, g),
        }
    }
}

/// Depth-wise convolution of token rows `x` (B, G², d) with `weight` (d, 1, k, k) (PyTorch layout)
/// and `bias` (d) at the cells of `taps` → (B, V, d); differentiable in all three.
/// Errors: [`Error::Invalid`] for dtypes other than f32/f64 or shapes that do not fit `taps`.
pub fn depthwise_conv(x: &Tensor, weight: &Tensor, bias: &Tensor, taps: &ConvTaps) -> Result<Tensor> {
    if !super::supports(x) || x.dtype() != weight.dtype() || x.dtype() != bias.dtype() {
        return Err(Error::Invalid(format!(
            "fused depth-wise conv needs f32/f64 CPU tensors of one dtype, got {:?}",
            x.dtype()
        )));
    }
    let op = DepthwiseOp { taps: taps.clone() };
    Ok(x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?)
}

struct AddRowOp;

simd_fn! {
    /// y[b, n, :] = x[b, n, :] + r[b, :].
    fn add_row_kernel<T: Real>(x: &[T], r: &[T], d: usize, n: usize, y: &mut [T]) {
        for ((yb, xb), rb) in y.chunks_exact_mut(n * d).zip(x.chunks_exact(n * d)).zip(r.chunks_exact(d)) {
            for (yr, xr) in yb.chunks_exact_mut(d).zip(xb.chunks_exact(d)) {
                for ((o, &a), &c) in yr.iter_mut().zip(xr).zip(rb) {
                    *o = a + c;
                }
            }
        }
    }
}

simd_fn! {
    /// dr[b, :] = Σ_n g[b, n, :].
    fn add_row_grad<T: Real>(g: &[T], d: usize, n: usize, dr: &mut [T]) {
        for (gb, rb) in g.chunks_exact(n * d).zip(dr.chunks_exact_mut(d)) {
            for gr in gb.chunks_exact(d) {
                for (o, &v) in rb.iter_mut().zip(gr) {
                    *o += v;
                }
            }
        }
    }
}

fn add_row_fwd<T: Real>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (b, n, d) = match (l1.dims(), l2.dims()) {
        ([b, n, d], [b2, 1, d2]) if b == b2 && d == d2 => (*b, *n, *d),
        (a, c) => candle_core::bail!("add_row: x {a:?} and row {c:?} are not (B, N, d) and (B, 1, d)"),
    };
    let (x, r) = (operand::<T>(s1, l1, "add_row")?, operand::<T>(s2, l2, "add_row")?);
    let mut y = vec![T::ZERO; b * n * d];
    add_row_kernel(x, r, d, n, &mut y);
    Ok((T::storage(y), l1.shape().clone()))
}

fn add_row_bwd<T: Real>(x: &Tensor, r: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let (b, n, d) = x.dims3()?;
    let dr = if needs_grad(r) {
        let dr = with_slice::<T, _>(g, |gs| {
            let mut dr = vec![T::ZERO; b * d];
            add_row_grad(gs, d, n, &mut dr);
            dr
        })?;
        Some(tensor(dr, r.shape())?)
    } else {
        None
    };
    Ok((if needs_grad(x) { Some(g.clone()) } else { None }, dr))
}

impl CustomOp2 for AddRowOp {
    fn name(&self) -> &'static str {
        "fused-add-row"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => add_row_fwd::<f32>(s1, l1, s2, l2),
            CpuStorage::F64(_) => add_row_fwd::<f64>(s1, l1, s2, l2),
            _ => candle_core::bail!("fused add_row: f32/f64 only"),
        }
    }
    fn bwd(
        &self,
        x: &Tensor,
        r: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        match x.dtype() {
            candle_core::DType::F32 => add_row_bwd::<f32>(x, r, g),
            _ => add_row_bwd::<f64>(x, r, g),
        }
    }
}

/// `x` (B, N, d) + `row` (B, 1, d) broadcast over N, differentiable in both (no gradient is formed
/// for an `x` outside autograd, e.g. frozen features). Errors: [`Error::Invalid`] for other dtypes or shapes.
pub fn add_row(x: &Tensor, row: &Tensor) -> Result<Tensor> {
    if !super::supports(x) || x.dtype() != row.dtype() {
        return Err(Error::Invalid(format!(
            "fused add_row needs f32/f64 CPU tensors of one dtype, got {:?}",
            x.dtype()
        )));
    }
    Ok(x.contiguous()?.apply_op2(&row.contiguous()?, AddRowOp)?)
}
