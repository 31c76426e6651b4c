//! The compute-optimal frontier: for an inference budget, the (N, V) that minimises the law's predicted
//! error among the configurations the budget affords (paper §3, Figure 1's dotted line).
//!
//! Cost model: the paper's 2 · N · (Q + V) FLOPs by default ([`PaperCost`]), or any [`CostModel`]
//! (e.g. a measured latency profile). Sizes and token counts are either a given set or a continuous
//! range. Because predicted error falls and cost rises with both N and V, for each candidate of one
//! variable the best value of the other is the largest one the budget affords; the search is exact on
//! sets and a dense log-spaced scan refined by golden-section search on ranges.
use crate::error::{Error, Result};
use crate::law::{Law, TokenAxis};
use serde::{Deserialize, Serialize};

/// A set of values or a continuous range [min, max].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// These values only.
    Set(Vec<f64>),
    /// Any value in [min, max].
    Range {
        /// Lower end (inclusive).
        min: f64,
        /// Upper end (inclusive).
        max: f64,
    },
}

impl Domain {
    fn check(&self, what: &str) -> Result<()> {
        let ok = match self {
            Domain::Set(v) => !v.is_empty() && v.iter().all(|x| x.is_finite() && *x > 0.0),
            Domain::Range { min, max } => min.is_finite() && max.is_finite() && *min > 0.0 && min <= max,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "{what}: need a non-empty set of positive values or a range 0 < min ≤ max, got {self:?}"
            )))
        }
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Domain::Set(v) => write!(f, "{{{}}}", v.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(", ")),
            Domain::Range { min, max } => write!(f, "continuous [{min}, {max}]"),
        }
    }
}

/// An inference cost of one query as a function of N (billions), Q and V; must increase with N and V.
pub trait CostModel: Sync {
    /// Cost of one query (unit: [`CostModel::unit`]).
    fn cost(&self, llm_params_b: f64, text_tokens: f64, visual_tokens: f64) -> f64;
    /// Unit of the cost, e.g. `FLOPs` or `s`.
    fn unit(&self) -> &'static str;
}

/// The paper's cost: 2 · N · (Q + V) FLOPs with N in raw parameters (= billions × 10⁹).
#[derive(Debug, Clone, Copy, Default)]
pub struct PaperCost;

impl CostModel for PaperCost {
    fn cost(&self, n_b: f64, q: f64, v: f64) -> f64 {
        crate::cost::paper_flops(n_b * 1e9, q, v)
    }
    fn unit(&self) -> &'static str {
        "FLOPs"
    }
}

/// What to optimise over.
#[derive(Debug, Clone)]
pub struct FrontierSpec {
    /// The fitted law.
    pub law: Law,
    /// What T is in the law.
    pub axis: TokenAxis,
    /// Q, text tokens per query (0 when text is cached).
    pub text_tokens: f64,
    /// Candidate N, billions.
    pub sizes: Domain,
    /// Candidate V.
    pub tokens: Domain,
}

/// The optimum for one budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Optimum {
    /// The budget (cost-model unit).
    pub budget: f64,
    /// N*, billions.
    pub llm_params: f64,
    /// V*.
    pub visual_tokens: f64,
    /// Predicted error at (N*, V*).
    pub predicted_error: f64,
    /// Cost of (N*, V*) (≤ budget).
    pub cost: f64,
}

impl FrontierSpec {
    fn error(&self, n: f64, v: f64) -> f64 {
        self.law.predict(n, self.axis.tokens(self.text_tokens, v))
    }

    /// Validates the domains. Errors: [`Error::Invalid`].
    pub fn check(&self) -> Result<()> {
        self.sizes.check("LLM sizes")?;
        self.tokens.check("visual tokens")?;
        if self.text_tokens.is_nan() || self.text_tokens < 0.0 {
            return Err(Error::Invalid(format!("text tokens must be ≥ 0, got {}", self.text_tokens)));
        }
        Ok(())
    }

    /// The best (N, V) with cost ≤ `budget`, or `None` if even the smallest configuration exceeds it.
    ///
    /// Errors: [`Error::Invalid`] for a budget that is not a positive finite number or invalid domains.
    pub fn optimum(&self, cost: &dyn CostModel, budget: f64) -> Result<Option<Optimum>> {
        self.check()?;
        if !(budget.is_finite() && budget > 0.0) {
            return Err(Error::Invalid(format!("budget must be a positive number, got {budget}")));
        }
        let q = self.text_tokens;
        // Largest affordable x in `dom` given the cost as a function of x (increasing).
        let largest = |dom: &Domain, f: &dyn Fn(f64) -> f64| -> Option<f64> {
            match dom {
                Domain::Set(v) => v
                    .iter()
                    .cloned()
                    .filter(|&x| f(x) <= budget)
                    .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))),
                Domain::Range { min, max } => {
                    if f(*min) > budget {
                        None
                    } else if f(*max) <= budget {
                        Some(*max)
                    } else {
                        let (mut lo, mut hi) = (min.ln(), max.ln());
                        for _ in 0..200 {
                            let mid = 0.5 * (lo + hi);
                            if f(mid.exp()) <= budget {
                                lo = mid
                            } else {
                                hi = mid
                            }
                        }
                        Some(lo.exp())
                    }
                }
            }
        };
        let best_for_v = |v: f64| largest(&self.sizes, &|n| cost.cost(n, q, v)).map(|n| (self.error(n, v), n, v));
        let candidates: Vec<(f64, f64, f64)> = match (&self.sizes, &self.tokens) {
            (_, Domain::Set(vs)) => vs.iter().filter_map(|&v| best_for_v(v)).collect(),
            (Domain::Set(ns), Domain::Range { .. }) => ns
                .iter()
                .filter_map(|&n| largest(&self.tokens, &|v| cost.cost(n, q, v)).map(|v| (self.error(n, v), n, v)))
                .collect(),
            (Domain::Range { .. }, Domain::Range { min, max }) => {
                // scan V on a log grid, then golden-section around the best scan point
                let k = 2000;
                let (a, b) = (min.ln(), max.ln());
                let at = |i: usize| if k == 1 { a } else { a + (b - a) * i as f64 / (k - 1) as f64 };
                let scan: Vec<(usize, (f64, f64, f64))> =
                    (0..k).filter_map(|i| best_for_v(at(i).exp()).map(|c| (i, c))).collect();
                let Some(&(i0, c0)) = scan.iter().min_by(|x, y| x.1 .0.total_cmp(&y.1 .0)) else { return Ok(None) };
                let (mut lo, mut hi) = (at(i0.saturating_sub(1)), at((i0 + 1).min(k - 1)));
                let obj = |lv: f64| best_for_v(lv.exp()).map_or(f64::INFINITY, |c| c.0);
                let g = 0.5 * (5f64.sqrt() - 1.0);
                for _ in 0..100 {
                    let (x1, x2) = (hi - g * (hi - lo), lo + g * (hi - lo));
                    if obj(x1) <= obj(x2) {
                        hi = x2
                    } else {
                        lo = x1
                    }
                }
                let mut out = vec![c0];
                out.extend(best_for_v((0.5 * (lo + hi)).exp()));
                out
            }
        };
        Ok(candidates.into_iter().min_by(|x, y| x.0.total_cmp(&y.0).then(y.1.total_cmp(&x.1))).map(|(e, n, v)| {
            Optimum { budget, llm_params: n, visual_tokens: v, predicted_error: e, cost: cost.cost(n, q, v) }
        }))
    }
}

/// The continuous optimum V* of the paper's law Y = A·N^−α·V^−β + D under a cost ∝ N·(Q + V) with
/// unbounded N and V ≥ 0 (T = V): V* = β·Q / (α − β) when α > β (derivation: minimise
/// −α·ln(C/(Q+V)) − β·ln V over V). `None` when α ≤ β (then more tokens always pay).
pub fn closed_form_visual_tokens(alpha: f64, beta: f64, text_tokens: f64) -> Option<f64> {
    (alpha > beta).then(|| beta * text_tokens / (alpha - beta))
}

/// `num` log-spaced values from `lo` to `hi` inclusive (budget tables).
pub fn logspace(lo: f64, hi: f64, num: usize) -> Vec<f64> {
    crate::fit::grid::linspace(lo.ln(), hi.ln(), num).into_iter().map(f64::exp).collect()
}
