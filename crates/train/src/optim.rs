//! Optimisation: AdamW (Loshchilov & Hutter 2019, decoupled weight decay; the same update as
//! `candle_nn::AdamW` and `torch.optim.AdamW`), a linear warm-up + cosine learning-rate schedule (LLaVA's
//! `--lr_scheduler_type cosine --warmup_ratio 0.03`, HF `get_cosine_schedule_with_warmup`), and
//! global-norm gradient clipping (`torch.nn.utils.clip_grad_norm_`).
//!
//! AdamW is written out here instead of wrapping `candle_nn::AdamW` because the latter keeps its
//! moment estimates private, and resuming a run exactly needs them saved and restored. Its update is
//! three in-place passes (first moment, second moment, parameter) instead of a chain of tensor ops.
use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Storage, Tensor, Var};

use crate::Result;

/// Linear warm-up to `peak_lr` over `warmup_steps`, then cosine decay to `min_lr` at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Peak learning rate.
    pub peak_lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Warm-up steps.
    pub warmup_steps: usize,
    /// Total optimiser steps.
    pub total_steps: usize,
}

impl Schedule {
    /// Learning rate for optimiser step `step` (0-based): `peak·(step+1)/warmup` during warm-up, then
    /// `min + (peak − min)·½(1 + cos(π·progress))`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        self.min_lr + (self.peak_lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// AdamW over named variables (sorted by name so that state files are deterministic).
#[derive(Debug)]
pub struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken (for bias correction).
    pub step_t: usize,
    /// β₁ (0.9).
    pub beta1: f64,
    /// β₂ (0.999).
    pub beta2: f64,
    /// ε (1e-8).
    pub eps: f64,
    /// Decoupled weight decay λ (LLaVA: 0).
    pub weight_decay: f64,
}

impl AdamW {
    /// AdamW with torch's defaults (β = (0.9, 0.999), ε = 1e-8) over `vars` (name, variable).
    pub fn new(mut vars: Vec<(String, Var)>, weight_decay: f64) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        // Separate storages: the moments are updated in place.
        let zeros = || vars.iter().map(|(_, v)| v.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>();
        Ok(Self { m: zeros()?, v: zeros()?, vars, step_t: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay })
    }

    /// The variables, sorted by name.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// One update at learning rate `lr`: θ ← θ(1 − lr·λ) − lr·m̂/(√v̂ + ε). Variables without a gradient
    /// are left unchanged (as torch skips `p.grad is None`).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step_t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let scale_m = 1.0 / (1.0 - b1.powi(self.step_t as i32));
        let scale_v = 1.0 / (1.0 - b2.powi(self.step_t as i32));
        let update = Update { decay: 1.0 - lr * self.weight_decay, lr, scale_m, scale_v, eps: self.eps };
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let g = g.to_dtype(var.dtype())?.contiguous()?;
            let (m, v, theta) = (&self.m[i], &self.v[i], var.as_tensor());
            if fused(theta) && fused(m) && fused(v) && g.dims() == theta.dims() {
                m.inplace_op2(&g, &Moment { beta: b1, square: false })?;
                v.inplace_op2(&g, &Moment { beta: b2, square: true })?;
                theta.inplace_op3(m, v, &update)?;
            } else {
                let m = ((m * b1)? + (&g * (1.0 - b1))?)?;
                let v = ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
                let step = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + self.eps)?)?;
                var.set(&((theta * update.decay)? - (step * lr)?)?)?;
                self.m[i] = m;
                self.v[i] = v;
            }
        }
        Ok(())
    }

    /// The moment estimates as named tensors (`{name}.exp_avg`, `{name}.exp_avg_sq`, torch's names),
    /// copied (the optimiser updates its own in place). Errors: tensor copies.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("{name}.exp_avg"), self.m[i].copy()?);
            out.insert(format!("{name}.exp_avg_sq"), self.v[i].copy()?);
        }
        Ok(out)
    }

    /// Restores moments saved by [`Self::state_tensors`] and the step count.
    /// Errors: a missing or mis-shaped moment → [`crate::Error::Config`] naming it.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step_t: usize) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (slot, suffix) in [(0, "exp_avg"), (1, "exp_avg_sq")] {
                let key = format!("{name}.{suffix}");
                let t = state
                    .get(&key)
                    .ok_or_else(|| crate::Error::config("optimizer state", format!("missing `{key}`")))?;
                if t.dims() != var.dims() {
                    return Err(crate::Error::config(
                        "optimizer state",
                        format!("`{key}` has shape {:?}, the variable {:?}", t.dims(), var.dims()),
                    ));
                }
                let t = t.to_dtype(var.dtype())?.copy()?; // own storage: updated in place
                if slot == 0 {
                    self.m[i] = t;
                } else {
                    self.v[i] = t;
                }
            }
        }
        self.step_t = step_t;
        Ok(())
    }
}

/// Whether the in-place update handles `t` (contiguous f32/f64 on the CPU).
fn fused(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64) && t.is_contiguous()
}

/// `slot ← β·slot + (1 − β)·g` (or `g²` for the second moment), in place.
struct Moment {
    beta: f64,
    square: bool,
}

/// `θ ← θ·decay − lr·(m·scale_m) / (√(v·scale_v) + ε)`, in place.
struct Update {
    decay: f64,
    lr: f64,
    scale_m: f64,
    scale_v: f64,
    eps: f64,
}

/// The contiguous elements of an operand.
fn elems<'a, T>(s: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    let (a, b) =
        l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("adamw: operand not contiguous".into()))?;
    Ok(&s[a..b])
}

fn elems_mut<'a, T>(s: &'a mut [T], l: &Layout) -> candle_core::Result<&'a mut [T]> {
    let (a, b) =
        l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("adamw: operand not contiguous".into()))?;
    Ok(&mut s[a..b])
}

macro_rules! moment {
    ($t:ty, $op:expr, $dst:expr, $src:expr) => {{
        let (b, c) = ($op.beta as $t, (1.0 - $op.beta) as $t);
        if $dst.len() != $src.len() {
            candle_core::bail!("adamw: moment and gradient sizes differ");
        }
        if $op.square {
            $dst.iter_mut().zip($src).for_each(|(m, &g)| *m = b * *m + c * (g * g));
        } else {
            $dst.iter_mut().zip($src).for_each(|(m, &g)| *m = b * *m + c * g);
        }
    }};
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }
    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        match (s1, s2) {
            (CpuStorage::F32(d), CpuStorage::F32(g)) => moment!(f32, self, elems_mut(d, l1)?, elems(g, l2)?),
            (CpuStorage::F64(d), CpuStorage::F64(g)) => moment!(f64, self, elems_mut(d, l1)?, elems(g, l2)?),
            _ => candle_core::bail!("adamw: f32/f64 operands of one dtype only"),
        }
        Ok(())
    }
}

macro_rules! update {
    ($t:ty, $op:expr, $theta:expr, $m:expr, $v:expr) => {{
        let (decay, lr, sm, sv, eps) =
            ($op.decay as $t, $op.lr as $t, $op.scale_m as $t, $op.scale_v as $t, $op.eps as $t);
        if $theta.len() != $m.len() || $theta.len() != $v.len() {
            candle_core::bail!("adamw: parameter and moment sizes differ");
        }
        for ((p, &m), &v) in $theta.iter_mut().zip($m).zip($v) {
            *p = *p * decay - lr * ((m * sm) / ((v * sv).sqrt() + eps));
        }
    }};
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "adamw-update"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        match (s1, s2, s3) {
            (CpuStorage::F32(p), CpuStorage::F32(m), CpuStorage::F32(v)) => {
                update!(f32, self, elems_mut(p, l1)?, elems(m, l2)?, elems(v, l3)?)
            }
            (CpuStorage::F64(p), CpuStorage::F64(m), CpuStorage::F64(v)) => {
                update!(f64, self, elems_mut(p, l1)?, elems(m, l2)?, elems(v, l3)?)
            }
            _ => candle_core::bail!("adamw: f32/f64 operands of one dtype only"),
        }
        Ok(())
    }
}

/// Sum of squares of `t`'s elements, accumulated in f64.
fn sum_squares(t: &Tensor) -> Result<f64> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let s = match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => elems(v, layout)?.iter().map(|&x| (x as f64) * (x as f64)).sum(),
        Storage::Cpu(CpuStorage::F64(v)) => elems(v, layout)?.iter().map(|&x| x * x).sum(),
        _ => {
            drop(storage);
            t.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?
        }
    };
    Ok(s)
}

/// Global L2 norm of the gradients of `vars`; if above `max_norm`, scales every gradient by
/// `max_norm / (norm + 1e-6)` in place (torch `clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[(String, Var)], max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for (_, v) in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += sum_squares(g)?;
        }
    }
    let norm = sq.sqrt();
    if norm.is_finite() && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for (_, v) in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}
