//! Optimisation: AdamW (Loshchilov & Hutter 2019, decoupled weight decay; the same update as
//! `candle_nn::AdamW` and `torch.optim.AdamW`), a linear warm-up + cosine learning-rate schedule (LLaVA's
//! `--lr_scheduler_type cosine --warmup_ratio 0.03`, HF `get_cosine_schedule_with_warmup`), and
//! global-norm gradient clipping (`torch.nn.utils.clip_grad_norm_`).
//!
//! AdamW is written out here instead of wrapping `candle_nn::AdamW` because the latter keeps its
//! moment estimates private, and resuming a run exactly needs them saved and restored.
use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

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
        let zeros = vars.iter().map(|(_, v)| v.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { m: zeros.clone(), v: zeros, vars, step_t: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay })
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
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let m = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + self.eps)?)?;
            let theta = ((var.as_tensor() * (1.0 - lr * self.weight_decay))? - (update * lr)?)?;
            var.set(&theta)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The moment estimates as named tensors (`{name}.exp_avg`, `{name}.exp_avg_sq`, torch's names).
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("{name}.exp_avg"), self.m[i].clone());
            out.insert(format!("{name}.exp_avg_sq"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`Self::state_tensors`] and the step count.
    /// Errors: a missing or mis-shaped moment → [`crate::Error::Config`] naming it.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step_t: usize) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (slot, suffix) in [(0, "exp_avg"), (1, "exp_avg_sq")] {
                let key = format!("{name}.{suffix}");
                let t = state.get(&key).ok_or_else(|| crate::Error::config("optimizer state", format!("missing `{key}`")))?;
                if t.dims() != var.dims() {
                    return Err(crate::Error::config(
                        "optimizer state",
                        format!("`{key}` has shape {:?}, the variable {:?}", t.dims(), var.dims()),
                    ));
                }
                let t = t.to_dtype(var.dtype())?;
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

/// Global L2 norm of the gradients of `vars`; if above `max_norm`, scales every gradient by
/// `max_norm / (norm + 1e-6)` in place (torch `clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[(String, Var)], max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for (_, v) in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
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
