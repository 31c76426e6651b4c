//! Continuous refinement of a grid optimum with L-BFGS (argmin, More–Thuente line search).
//!
//! Two objectives:
//! - [`Objective::Squared`]: Σ (Ŷ − Y)², the paper's loss (so the refined loss is comparable with the
//!   grid's);
//! - [`Objective::HuberLog`]: Σ Huber_δ(ln Ŷ − ln Y), the robust objective of Hoffmann et al. 2022
//!   (Chinchilla, §3.3 approach 3; δ = 10⁻³ there).
//!
//! Bounds: argmin's L-BFGS is unconstrained, so the constrained fit optimises unconstrained variables u
//! with A = exp(u_A) (A > 0; also B for the additive law) and α, β, D (or E) = softplus(u) ≥ 0. With only
//! 28 cells the unconstrained least-squares problem is degenerate (D runs far negative while α, β shrink
//! towards 0 at a slightly lower loss); [`Constraint::None`] exists to show that.
use super::cells::Cells;
use crate::error::{Error, Result};
use crate::law::{Law, LawForm};
use argmin::core::{CostFunction, Executor, Gradient};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The refinement objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Objective {
    /// Sum of squared errors on Y.
    Squared,
    /// Sum of Huber losses (threshold `delta`) on ln Ŷ − ln Y.
    HuberLog {
        /// Huber threshold δ on the log residual.
        delta: f64,
    },
}

impl Objective {
    /// Hoffmann et al.'s choice, δ = 10⁻³.
    pub const HOFFMANN: Objective = Objective::HuberLog { delta: 1e-3 };

    /// Short name for reports (`squared`, `huber_log`).
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Squared => "squared",
            Objective::HuberLog { .. } => "huber_log",
        }
    }

    /// Value of the objective of `law` on `cells`. A non-positive prediction under the log objective
    /// gives +∞.
    pub fn value(&self, cells: &Cells, law: &Law) -> f64 {
        let mut total = 0.0;
        for i in 0..cells.len() {
            let p = law.predict(cells.n[i], cells.t[i]);
            total += match *self {
                Objective::Squared => (p - cells.y[i]).powi(2),
                Objective::HuberLog { delta } => {
                    if p <= 0.0 {
                        return f64::INFINITY;
                    }
                    huber((p / cells.y[i]).ln(), delta).0
                }
            };
        }
        total
    }
}

/// Whether the parameters are kept in their physical domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// A (and B) > 0 via exp; α, β, D (E) ≥ 0 via softplus.
    Bounded,
    /// No bounds (for showing the degenerate least-squares solution).
    None,
}

/// Huber loss and its derivative at r.
fn huber(r: f64, delta: f64) -> (f64, f64) {
    if r.abs() <= delta {
        (0.5 * r * r, r)
    } else {
        (delta * (r.abs() - 0.5 * delta), delta * r.signum())
    }
}

fn softplus(u: f64) -> f64 {
    if u > 30.0 {
        u
    } else {
        u.exp().ln_1p()
    }
}
fn sigmoid(u: f64) -> f64 {
    1.0 / (1.0 + (-u).exp())
}
/// Inverse of softplus, clamped so that 0 maps to a finite value (softplus(−36) ≈ 2e−16).
fn softplus_inv(x: f64) -> f64 {
    let x = x.max(1e-12);
    if x > 30.0 {
        x
    } else {
        x.exp_m1().ln()
    }
}

/// Which parameters are positive scales (exp) rather than non-negative (softplus).
fn is_scale(form: LawForm, i: usize) -> bool {
    match form {
        LawForm::Multiplicative => i == 0,
        LawForm::Additive => i == 0 || i == 2,
    }
}

struct Problem<'a> {
    cells: &'a Cells,
    form: LawForm,
    objective: Objective,
    constraint: Constraint,
}

impl Problem<'_> {
    /// Physical parameters and d(physical)/du for each coordinate.
    fn decode(&self, u: &[f64]) -> (Vec<f64>, Vec<f64>) {
        if self.constraint == Constraint::None {
            return (u.to_vec(), vec![1.0; u.len()]);
        }
        u.iter()
            .enumerate()
            .map(|(i, &x)| if is_scale(self.form, i) { (x.exp(), x.exp()) } else { (softplus(x), sigmoid(x)) })
            .unzip()
    }

    fn encode(&self, p: &[f64]) -> Vec<f64> {
        if self.constraint == Constraint::None {
            return p.to_vec();
        }
        p.iter()
            .enumerate()
            .map(|(i, &x)| if is_scale(self.form, i) { x.max(1e-12).ln() } else { softplus_inv(x) })
            .collect()
    }

    /// Objective and its gradient with respect to the physical parameters.
    fn eval(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let c = self.cells;
        let mut grad = vec![0.0; p.len()];
        let mut total = 0.0;
        for i in 0..c.len() {
            let (ln_n, ln_t) = (c.n[i].ln(), c.t[i].ln());
            // prediction and dŶ/dp
            let (pred, dp): (f64, Vec<f64>) = match self.form {
                LawForm::Multiplicative => {
                    let f = (-p[1] * ln_n - p[2] * ln_t).exp();
                    let af = p[0] * f;
                    (af + p[3], vec![f, -af * ln_n, -af * ln_t, 1.0])
                }
                LawForm::Additive => {
                    let g = (-p[1] * ln_n).exp();
                    let h = (-p[3] * ln_t).exp();
                    (p[0] * g + p[2] * h + p[4], vec![g, -p[0] * g * ln_n, h, -p[2] * h * ln_t, 1.0])
                }
            };
            let (loss, dloss_dpred) = match self.objective {
                Objective::Squared => {
                    let r = pred - c.y[i];
                    (r * r, 2.0 * r)
                }
                Objective::HuberLog { delta } => {
                    if pred <= 0.0 || !pred.is_finite() {
                        return (f64::INFINITY, vec![f64::NAN; p.len()]);
                    }
                    let (h, dh) = huber(pred.ln() - c.y[i].ln(), delta);
                    (h, dh / pred)
                }
            };
            total += loss;
            for (g, d) in grad.iter_mut().zip(&dp) {
                *g += dloss_dpred * d;
            }
        }
        (total, grad)
    }
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, u: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        let (p, _) = self.decode(u);
        Ok(self.eval(&p).0)
    }
}

impl Gradient for Problem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, u: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        let (p, dpdu) = self.decode(u);
        let (_, g) = self.eval(&p);
        Ok(g.iter().zip(&dpdu).map(|(g, d)| g * d).collect())
    }
}

/// Result of a refinement.
#[derive(Debug, Clone, Copy)]
pub struct Refined {
    /// Best law found.
    pub law: Law,
    /// Its objective value (SSE for [`Objective::Squared`]).
    pub objective: f64,
}

/// Runs L-BFGS from each of `starts` (in parallel) and returns the best law by `objective`, never worse
/// than the best start (starts that are infeasible under `constraint` are moved to the nearest feasible
/// point first).
///
/// Errors: [`Error::Invalid`] when `starts` is empty or a start has the wrong form;
/// [`Error::Optimiser`] if no start yields a finite objective.
pub fn refine(cells: &Cells, starts: &[Law], objective: Objective, constraint: Constraint) -> Result<Refined> {
    let form = starts.first().ok_or_else(|| Error::Invalid("refine: no starting point".into()))?.form();
    if starts.iter().any(|s| s.form() != form) {
        return Err(Error::Invalid("refine: starting points of mixed forms".into()));
    }
    let problem = Problem { cells, form, objective, constraint };
    let results: Vec<Refined> = starts
        .par_iter()
        .map(|start| {
            let u0 = problem.encode(&start.params());
            let (p0, _) = problem.decode(&u0);
            let start_law = Law::from_params(form, &p0);
            let start_val = objective.value(cells, &start_law);
            let mut best = Refined { law: start_law, objective: start_val };
            if let Some((law, val)) = run_lbfgs(&problem, u0) {
                if val < best.objective {
                    best = Refined { law, objective: val };
                }
            }
            best
        })
        .collect();
    results
        .into_iter()
        .filter(|r| r.objective.is_finite())
        .min_by(|a, b| a.objective.total_cmp(&b.objective))
        .ok_or_else(|| Error::Optimiser("no starting point gave a finite objective".into()))
}

fn run_lbfgs(problem: &Problem<'_>, u0: Vec<f64>) -> Option<(Law, f64)> {
    let solver =
        LBFGS::new(MoreThuenteLineSearch::new(), 8).with_tolerance_grad(1e-14).ok()?.with_tolerance_cost(1e-16).ok()?;
    let res = Executor::new(
        Problem {
            cells: problem.cells,
            form: problem.form,
            objective: problem.objective,
            constraint: problem.constraint,
        },
        solver,
    )
    .configure(|s| s.param(u0).max_iters(500))
    .run()
    .ok()?;
    let mut state = res.state;
    let cost = state.get_best_cost();
    let u = state.take_best_param()?;
    let (p, _) = problem.decode(&u);
    let law = Law::from_params(problem.form, &p);
    let val = problem.objective.value(problem.cells, &law);
    (val.is_finite() && cost.is_finite()).then_some((law, val))
}
