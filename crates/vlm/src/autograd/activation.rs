//! Element-wise activations with their backward pass: SwiGLU's `silu(gate) · up` (HF `Qwen2MLP`) and
//! the exact GELU `x · ½(1 + erf(x/√2))` (`torch.nn.GELU()`, candle's `gelu_erf`).
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use super::kernels::{needs_grad, operand, tensor, with_slice, Real};
use crate::{Error, Result};

struct SiluMulOp;
struct GeluErfOp;

fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

fn silu_mul_fwd<T: Real>(s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
    let (g, u) = (operand::<T>(s1, l1, "silu_mul")?, operand::<T>(s2, l2, "silu_mul")?);
    if l1.dims() != l2.dims() {
        candle_core::bail!("silu_mul: gate {:?} and up {:?} differ", l1.dims(), l2.dims());
    }
    let y: Vec<T> = g.iter().zip(u).map(|(&a, &b)| a * sigmoid(a) * b).collect();
    Ok((T::storage(y), l1.shape().clone()))
}

fn silu_mul_bwd<T: Real>(gate: &Tensor, up: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let (want_g, want_u) = (needs_grad(gate), needs_grad(up));
    let (dg, du) = with_slice::<T, _>(gate, |gs| {
        with_slice::<T, _>(up, |us| {
            with_slice::<T, _>(grad, |ds| {
                let n = gs.len();
                let (mut dg, mut du) = (Vec::with_capacity(if want_g { n } else { 0 }), Vec::with_capacity(if want_u { n } else { 0 }));
                for ((&a, &b), &d) in gs.iter().zip(us).zip(ds) {
                    let s = sigmoid(a);
                    if want_g {
                        dg.push(d * b * s * (T::ONE + a * (T::ONE - s)));
                    }
                    if want_u {
                        du.push(d * a * s);
                    }
                }
                (dg, du)
            })
        })
    })???;
    Ok((
        if want_g { Some(tensor(dg, gate.shape())?) } else { None },
        if want_u { Some(tensor(du, up.shape())?) } else { None },
    ))
}

impl CustomOp2 for SiluMulOp {
    fn name(&self) -> &'static str {
        "fused-silu-mul"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => silu_mul_fwd::<f32>(s1, l1, s2, l2),
            CpuStorage::F64(_) => silu_mul_fwd::<f64>(s1, l1, s2, l2),
            _ => candle_core::bail!("fused silu_mul: f32/f64 only"),
        }
    }
    fn bwd(&self, gate: &Tensor, up: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        match gate.dtype() {
            candle_core::DType::F32 => silu_mul_bwd::<f32>(gate, up, g),
            _ => silu_mul_bwd::<f64>(gate, up, g),
        }
    }
}

fn gelu_fwd<T: Real>(s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
    let x = operand::<T>(s, l, "gelu_erf")?;
    // Same expression as candle's `gelu_erf`: (erf(x/√2) + 1) · ½ · x.
    let y: Vec<T> = x.iter().map(|&v| ((T::from_f64(std::f64::consts::FRAC_1_SQRT_2) * v).erf() + T::ONE) * T::from_f64(0.5) * v).collect();
    Ok((T::storage(y), l.shape().clone()))
}

fn gelu_bwd<T: Real>(x: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let dx = with_slice::<T, _>(x, |xs| {
        with_slice::<T, _>(grad, |ds| {
            let (half, c) = (T::from_f64(0.5), T::from_f64(1.0 / (2.0 * std::f64::consts::PI).sqrt()));
            let r2 = T::from_f64(std::f64::consts::FRAC_1_SQRT_2);
            xs.iter()
                .zip(ds)
                .map(|(&v, &d)| d * (half * (T::ONE + (v * r2).erf()) + v * c * (-(v * v) * half).exp()))
                .collect::<Vec<T>>()
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

/// `silu(gate) · up` for `gate`, `up` of one shape, differentiable in both (HF `Qwen2MLP`'s
/// `act_fn(gate_proj(x)) * up_proj(x)`). Errors: [`Error::Invalid`] for other dtypes/devices; shapes differ.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if !super::supports(gate) || gate.dtype() != up.dtype() {
        return Err(Error::Invalid(format!("fused silu_mul needs f32/f64 CPU tensors, got {:?}", gate.dtype())));
    }
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMulOp)?)
}

/// Exact GELU `x · ½(1 + erf(x/√2))` (`torch.nn.GELU()`), with its backward pass.
/// Errors: [`Error::Invalid`] for other dtypes/devices.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !super::supports(x) {
        return Err(Error::Invalid(format!("fused gelu_erf needs an f32/f64 CPU tensor, got {:?}", x.dtype())));
    }
    Ok(x.contiguous()?.apply_op1(GeluErfOp)?)
}
