//! Element-wise activations with their backward pass: SwiGLU's `silu(gate) · up` (HF `Qwen2MLP`), the
//! exact GELU `x · ½(1 + erf(x/√2))` (`torch.nn.GELU()`, candle's `gelu_erf`) and OpenAI CLIP's
//! `quick_gelu` `x · σ(1.702 x)` (HF `QuickGELUActivation`).
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use super::kernels::{needs_grad, operand, tensor, with_slice, Real};
use super::vmath::simd_fn;
use crate::{Error, Result};

struct SiluMulOp;
struct GeluErfOp;
struct QuickGeluOp;

/// The slope inside quick_gelu's sigmoid (HF `QuickGELUActivation`).
const QUICK_GELU_SLOPE: f64 = 1.702;

/// Elements per parallel chunk of the element-wise forward kernels.
const CHUNK: usize = 1 << 14;

#[inline(always)]
fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).fast_exp())
}

simd_fn! {
    fn silu_mul_kernel<T: Real>(g: &[T], u: &[T], y: &mut [T]) {
        for ((y, &a), &b) in y.iter_mut().zip(g).zip(u) {
            *y = a * sigmoid(a) * b;
        }
    }
}

simd_fn! {
    /// (d gate, d up) of `silu(gate) · up`.
    fn silu_mul_grad<T: Real>(g: &[T], u: &[T], d: &[T], dg: &mut [T], du: &mut [T]) {
        for ((((a, b), dy), dga), dub) in g.iter().zip(u).zip(d).zip(dg.iter_mut()).zip(du.iter_mut()) {
            let s = sigmoid(*a);
            *dga = *dy * *b * s * (T::ONE + *a * (T::ONE - s));
            *dub = *dy * *a * s;
        }
    }
}

fn silu_mul_fwd<T: Real>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (g, u) = (operand::<T>(s1, l1, "silu_mul")?, operand::<T>(s2, l2, "silu_mul")?);
    if l1.dims() != l2.dims() {
        candle_core::bail!("silu_mul: gate {:?} and up {:?} differ", l1.dims(), l2.dims());
    }
    let mut y = vec![T::ZERO; g.len()];
    silu_mul_kernel(g, u, &mut y);
    Ok((T::storage(y), l1.shape().clone()))
}

fn silu_mul_bwd<T: Real>(
    gate: &Tensor,
    up: &Tensor,
    grad: &Tensor,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let (dg, du) = with_slice::<T, _>(gate, |gs| {
        with_slice::<T, _>(up, |us| {
            with_slice::<T, _>(grad, |ds| {
                let (mut dg, mut du) = (vec![T::ZERO; gs.len()], vec![T::ZERO; gs.len()]);
                silu_mul_grad(gs, us, ds, &mut dg, &mut du);
                (dg, du)
            })
        })
    })???;
    Ok((
        if needs_grad(gate) { Some(tensor(dg, gate.shape())?) } else { None },
        if needs_grad(up) { Some(tensor(du, up.shape())?) } else { None },
    ))
}

impl CustomOp2 for SiluMulOp {
    fn name(&self) -> &'static str {
        "fused-silu-mul"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => silu_mul_fwd::<f32>(s1, l1, s2, l2),
            CpuStorage::F64(_) => silu_mul_fwd::<f64>(s1, l1, s2, l2),
            _ => candle_core::bail!("fused silu_mul: f32/f64 only"),
        }
    }
    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        match gate.dtype() {
            candle_core::DType::F32 => silu_mul_bwd::<f32>(gate, up, g),
            _ => silu_mul_bwd::<f64>(gate, up, g),
        }
    }
}

simd_fn! {
    /// `(erf(x/√2) + 1) · ½ · x`, candle's `gelu_erf` expression.
    fn gelu_kernel<T: Real>(x: &[T], y: &mut [T]) {
        let (r2, half) = (T::from_f64(std::f64::consts::FRAC_1_SQRT_2), T::from_f64(0.5));
        for (y, &v) in y.iter_mut().zip(x) {
            *y = ((r2 * v).fast_erf() + T::ONE) * half * v;
        }
    }
}

simd_fn! {
    /// d/dx GELU = ½(1 + erf(x/√2)) + x·φ(x), φ the standard normal density.
    fn gelu_grad<T: Real>(x: &[T], d: &[T], dx: &mut [T]) {
        let (half, c) = (T::from_f64(0.5), T::from_f64(1.0 / (2.0 * std::f64::consts::PI).sqrt()));
        let r2 = T::from_f64(std::f64::consts::FRAC_1_SQRT_2);
        for ((dx, &v), &dy) in dx.iter_mut().zip(x).zip(d) {
            *dx = dy * (half * (T::ONE + (v * r2).fast_erf()) + v * c * (-(v * v) * half).fast_exp());
        }
    }
}

fn gelu_fwd<T: Real>(s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
    let x = operand::<T>(s, l, "gelu_erf")?;
    let mut y = vec![T::ZERO; x.len()];
    gelu_kernel(x, &mut y);
    Ok((T::storage(y), l.shape().clone()))
}

fn gelu_bwd<T: Real>(x: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let dx = with_slice::<T, _>(x, |xs| {
        with_slice::<T, _>(grad, |ds| {
            let mut dx = vec![T::ZERO; xs.len()];
            gelu_grad(xs, ds, &mut dx);
            dx
        })
    })??;
    Ok(Some(tensor(dx, x.shape())?))
}

impl CustomOp1 for GeluErfOp {
    fn name(&self) -> &'static str {
        "fused-gelu-erf"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        match s {
            CpuStorage::F32(_) => gelu_fwd::<f32>(s, l),
            CpuStorage::F64(_) => gelu_fwd::<f64>(s, l),
            _ => candle_core::bail!("fused gelu_erf: f32/f64 only"),
        }
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match x.dtype() {
            candle_core::DType::F32 => gelu_bwd::<f32>(x, g),
            _ => gelu_bwd::<f64>(x, g),
        }
    }
}

simd_fn! {
    fn quick_gelu_kernel<T: Real>(x: &[T], y: &mut [T]) {
        let a = T::from_f64(QUICK_GELU_SLOPE);
        for (y, &v) in y.iter_mut().zip(x) {
            *y = v * sigmoid(a * v);
        }
    }
}

simd_fn! {
    /// d/dx x·σ(ax) = σ(ax)·(1 + a·x·(1 − σ(ax))).
    fn quick_gelu_grad<T: Real>(x: &[T], d: &[T], dx: &mut [T]) {
        let a = T::from_f64(QUICK_GELU_SLOPE);
        for ((dx, &v), &dy) in dx.iter_mut().zip(x).zip(d) {
            let s = sigmoid(a * v);
            *dx = dy * s * (T::ONE + a * v * (T::ONE - s));
        }
    }
}

fn quick_gelu_fwd<T: Real>(s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
    use rayon::prelude::*;
    let x = operand::<T>(s, l, "quick_gelu")?;
    let mut y = vec![T::ZERO; x.len()];
    // Parallel over chunks (a CLIP-L MLP activation is 577 × 4096 values); one chunk runs inline.
    if super::kernels::threads() > 1 && x.len() > CHUNK {
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| quick_gelu_kernel(x, y));
    } else {
        quick_gelu_kernel(x, &mut y);
    }
    Ok((T::storage(y), l.shape().clone()))
}

fn quick_gelu_bwd<T: Real>(x: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let dx = with_slice::<T, _>(x, |xs| {
        with_slice::<T, _>(grad, |ds| {
            let mut dx = vec![T::ZERO; xs.len()];
            quick_gelu_grad(xs, ds, &mut dx);
            dx
        })
    })??;
    Ok(Some(tensor(dx, x.shape())?))
}

impl CustomOp1 for QuickGeluOp {
    fn name(&self) -> &'static str {
        "fused-quick-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        match s {
            CpuStorage::F32(_) => quick_gelu_fwd::<f32>(s, l),
            CpuStorage::F64(_) => quick_gelu_fwd::<f64>(s, l),
            _ => candle_core::bail!("fused quick_gelu: f32/f64 only"),
        }
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match x.dtype() {
            candle_core::DType::F32 => quick_gelu_bwd::<f32>(x, g),
            _ => quick_gelu_bwd::<f64>(x, g),
        }
    }
}

/// OpenAI CLIP's `quick_gelu` `x · σ(1.702 x)` (HF `QuickGELUActivation`) in one pass, with its backward
/// pass; f32 uses the vectorised `exp` of [`super::vmath::exp_f32`] (relative error < f32 ε), parallel
/// over chunks. Errors: [`Error::Invalid`] for other dtypes/devices.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    if !super::supports(x) {
        return Err(Error::Invalid(format!("fused quick_gelu needs an f32/f64 CPU tensor, got {:?}", x.dtype())));
    }
    Ok(x.contiguous()?.apply_op1(QuickGeluOp)?)
}

/// `silu(gate) · up` for `gate`, `up` of one shape, differentiable in both (HF `Qwen2MLP`'s
/// `act_fn(gate_proj(x)) * up_proj(x)`). Errors: [`Error::Invalid`] for other dtypes/devices; shapes differ.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if !super::supports(gate) || gate.dtype() != up.dtype() {
        return Err(Error::Invalid(format!("fused silu_mul needs f32/f64 CPU tensors, got {:?}", gate.dtype())));
    }
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMulOp)?)
}

/// `silu(y[…, :I]) · y[…, I:]` for `y` (…, 2I), the stacked gate|up output of an inference MLP
/// (f32/f64 CPU) → (…, I), in one pass over `y` with no copies of its halves; rows in parallel.
/// Inference only: no backward pass (use [`silu_mul`] on the halves when training).
/// Errors: [`Error::Invalid`] for other dtypes/devices, an odd last dimension, or a tracked input.
pub fn silu_mul_halves(y: &Tensor) -> Result<Tensor> {
    let dims = y.dims().to_vec();
    let width = dims.last().copied().unwrap_or(0);
    if !super::supports(y) || y.track_op() || width % 2 != 0 {
        return Err(Error::Invalid(format!(
            "silu_mul_halves needs an untracked f32/f64 CPU tensor with an even last dimension, got {:?} {dims:?}",
            y.dtype()
        )));
    }
    fn run<T: Real>(y: &Tensor, half: usize) -> candle_core::Result<Vec<T>> {
        use rayon::prelude::*;
        with_slice::<T, _>(y, |ys| {
            let mut out = vec![T::ZERO; ys.len() / 2];
            out.par_chunks_mut(half).zip(ys.par_chunks(2 * half)).for_each(|(o, row)| {
                let (g, u) = row.split_at(half);
                silu_mul_kernel(g, u, o);
            });
            out
        })
    }
    let half = width / 2;
    let mut shape = dims;
    *shape.last_mut().expect("rank ≥ 1: width checked") = half;
    if half == 0 {
        return Ok(Tensor::zeros(shape, y.dtype(), y.device())?);
    }
    Ok(match y.dtype() {
        candle_core::DType::F32 => tensor(run::<f32>(y, half)?, shape)?,
        _ => tensor(run::<f64>(y, half)?, shape)?,
    })
}

/// Exact GELU `x · ½(1 + erf(x/√2))` (`torch.nn.GELU()`), with its backward pass; f32 uses a
/// vectorised `erf` within 5e-7 ([`super::vmath::erf_f32`]).
/// Errors: [`Error::Invalid`] for other dtypes/devices.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !super::supports(x) {
        return Err(Error::Invalid(format!("fused gelu_erf needs an f32/f64 CPU tensor, got {:?}", x.dtype())));
    }
    Ok(x.contiguous()?.apply_op1(GeluErfOp)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Against `silu(a)·b = a·b / (1 + e^(−a))` written out in f64 on the two halves of each row.
    #[test]
    fn silu_mul_halves_matches_the_closed_form() {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let (rows, half) = (5, 37);
        let y = crate::random::randn(&mut rng, 3.0, (1, rows, 2 * half), DType::F32, &Device::Cpu).unwrap();
        let got = silu_mul_halves(&y).unwrap();
        assert_eq!(got.dims(), &[1, rows, half]);
        let (yv, gv) = (y.to_dtype(DType::F64).unwrap().to_vec3::<f64>().unwrap(), got.to_vec3::<f32>().unwrap());
        for r in 0..rows {
            for i in 0..half {
                let (a, b) = (yv[0][r][i], yv[0][r][half + i]);
                let want = a * b / (1.0 + (-a).exp());
                assert!(
                    (gv[0][r][i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "row {r} col {i}: {} vs {want}",
                    gv[0][r][i]
                );
            }
        }
        assert!(
            silu_mul_halves(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()).is_err(),
            "odd width must be an error"
        );
    }
}
