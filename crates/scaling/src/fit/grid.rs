//! Exhaustive grid search, the authors' method (`scaling_law_code/objective.py`, `grid_search`): the
//! sum of squared errors on Y = 1 − score at every point of a Cartesian grid, best point kept.
//!
//! The authors shuffle the 5,000,000-point grid without a seed and stop after 20 % of it (so their result
//! is not reproducible); here every point is evaluated, in parallel. Loop order: the exponents (α, β) are
//! the outer loops, so N^−α and T^−β are computed once per (α, β) and each inner point costs one
//! multiply-add and one square per cell.
use super::cells::Cells;
use crate::law::{Law, LawForm};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// `numpy.linspace(start, stop, num)`: `num` evenly spaced values including both ends.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => vec![],
        1 => vec![start],
        _ => (0..num).map(|i| start + (stop - start) * i as f64 / (num - 1) as f64).collect(),
    }
}

/// The axes of a grid. Multiplicative law: `scale = [A]`, `offsets = D`; additive: `scale = [A, B]`,
/// `offsets = E`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridSpec {
    /// Values of A (multiplicative), or of A and B (additive: both use this axis).
    pub scale: Vec<f64>,
    /// Values of α.
    pub alpha: Vec<f64>,
    /// Values of β.
    pub beta: Vec<f64>,
    /// Values of D (multiplicative) or E (additive).
    pub offset: Vec<f64>,
}

impl GridSpec {
    /// The paper's grid (authors' `objective.py`): A ∈ linspace(0.2, 0.7, 50), α ∈ linspace(0, 0.2, 100),
    /// β ∈ linspace(0, 0.05, 100), D ∈ linspace(0, 0.3, 10): 5,000,000 points.
    pub fn paper() -> GridSpec {
        GridSpec {
            scale: linspace(0.2, 0.7, 50),
            alpha: linspace(0.0, 0.2, 100),
            beta: linspace(0.0, 0.05, 100),
            offset: linspace(0.0, 0.3, 10),
        }
    }

    /// A coarse grid for the additive law (only a set of starting points for L-BFGS, as in Hoffmann et
    /// al. 2022): A, B ∈ linspace(0, 1, 21), α, β ∈ linspace(0, 1, 41), E ∈ linspace(0, 0.9, 10).
    pub fn additive_default() -> GridSpec {
        GridSpec {
            scale: linspace(0.0, 1.0, 21),
            alpha: linspace(0.0, 1.0, 41),
            beta: linspace(0.0, 1.0, 41),
            offset: linspace(0.0, 0.9, 10),
        }
    }

    /// Number of grid points for `form` (the additive form uses the scale axis twice).
    pub fn points(&self, form: LawForm) -> u64 {
        let s = self.scale.len() as u64;
        let scale = if form == LawForm::Additive { s * s } else { s };
        scale * self.alpha.len() as u64 * self.beta.len() as u64 * self.offset.len() as u64
    }
}

/// Result of a grid search.
#[derive(Debug, Clone)]
pub struct GridResult {
    /// The best point.
    pub law: Law,
    /// Its sum of squared errors.
    pub loss: f64,
    /// Best point for each (α, β) pair, sorted by loss (ascending): starting points for refinement.
    pub ranked: Vec<(f64, Law)>,
    /// Number of grid points evaluated.
    pub points: u64,
}

/// Evaluates the SSE at every point of `spec` for `form` and returns the best.
///
/// Ties keep the first point in (α, β, A, [B,] D) order. Returns `None` when a grid axis is empty or
/// there are no cells.
pub fn grid_search(cells: &Cells, form: LawForm, spec: &GridSpec) -> Option<GridResult> {
    if cells.is_empty() || [&spec.scale, &spec.alpha, &spec.beta, &spec.offset].iter().any(|v| v.is_empty()) {
        return None;
    }
    let ln_n: Vec<f64> = cells.n.iter().map(|n| n.ln()).collect();
    let ln_t: Vec<f64> = cells.t.iter().map(|t| t.ln()).collect();
    let pairs: Vec<(f64, f64)> = spec.alpha.iter().flat_map(|&a| spec.beta.iter().map(move |&b| (a, b))).collect();
    let mut ranked: Vec<(f64, Law)> = pairs
        .par_iter()
        .map(|&(alpha, beta)| {
            let g: Vec<f64> = ln_n.iter().map(|l| (-alpha * l).exp()).collect();
            let h: Vec<f64> = ln_t.iter().map(|l| (-beta * l).exp()).collect();
            match form {
                LawForm::Multiplicative => best_multiplicative(cells, spec, alpha, beta, &g, &h),
                LawForm::Additive => best_additive(cells, spec, alpha, beta, &g, &h),
            }
        })
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (loss, law) = ranked[0];
    Some(GridResult { law, loss, ranked, points: spec.points(form) })
}

fn best_multiplicative(cells: &Cells, spec: &GridSpec, alpha: f64, beta: f64, g: &[f64], h: &[f64]) -> (f64, Law) {
    let f: Vec<f64> = g.iter().zip(h).map(|(g, h)| g * h).collect();
    let n = cells.len() as f64;
    let mut best = (f64::INFINITY, 0.0, 0.0);
    for &a in &spec.scale {
        // With r_c = A·f_c − Y_c, the SSE at (A, D) is Σ (r_c + D)² = Σ r_c² + D·(2·Σ r_c + n·D):
        // one pass over the cells per A, then each D point costs three operations. Same value as
        // summing the squared residuals point by point (checked against that in the tests).
        let (mut s1, mut s2) = (0.0, 0.0);
        for (fc, yc) in f.iter().zip(&cells.y) {
            let r = a * fc - yc;
            s1 += r;
            s2 += r * r;
        }
        for &d in &spec.offset {
            let sse = s2 + d * (2.0 * s1 + n * d);
            if sse < best.0 {
                best = (sse, a, d);
            }
        }
    }
    (best.0, Law::Multiplicative { a: best.1, alpha, beta, d: best.2 })
}

fn best_additive(cells: &Cells, spec: &GridSpec, alpha: f64, beta: f64, g: &[f64], h: &[f64]) -> (f64, Law) {
    let mut best = (f64::INFINITY, 0.0, 0.0, 0.0);
    for &a in &spec.scale {
        for &b in &spec.scale {
            for &e in &spec.offset {
                let mut s = 0.0;
                for ((gc, hc), yc) in g.iter().zip(h).zip(&cells.y) {
                    let r = a * gc + b * hc + e - yc;
                    s += r * r;
                }
                if s < best.0 {
                    best = (s, a, b, e);
                }
            }
        }
    }
    (best.0, Law::Additive { a: best.1, alpha, b: best.2, beta, e: best.3 })
}

/// Names of the parameters whose best value lies on an edge of its grid axis (the true optimum may lie
/// outside the grid; refinement is then essential).
pub fn on_boundary(law: &Law, spec: &GridSpec) -> Vec<String> {
    let edge = |x: f64, axis: &[f64]| axis.len() > 1 && (x == axis[0] || x == axis[axis.len() - 1]);
    let mut out = Vec::new();
    match *law {
        Law::Multiplicative { a, alpha, beta, d } => {
            for (name, x, axis) in [
                ("A", a, &spec.scale),
                ("alpha", alpha, &spec.alpha),
                ("beta", beta, &spec.beta),
                ("D", d, &spec.offset),
            ] {
                if edge(x, axis) {
                    out.push(name.to_string());
                }
            }
        }
        Law::Additive { a, alpha, b, beta, e } => {
            for (name, x, axis) in [
                ("A", a, &spec.scale),
                ("alpha", alpha, &spec.alpha),
                ("B", b, &spec.scale),
                ("beta", beta, &spec.beta),
                ("E", e, &spec.offset),
            ] {
                if edge(x, axis) {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}
