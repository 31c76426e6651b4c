//! `"budget": {"ttft_ms": …}` or `{"flops": …}`: the server picks (model, V) among what it serves
//! with the fitted law and the cost model — the frontier's own search
//! ([`scaling::frontier::FrontierSpec::optimum`], the code path of `vlmscale frontier` and
//! `frontier --latency-profile`) run per served model over that model's N and its servable V, then the
//! lowest predicted error across models (ties: the cheaper).
use scaling::cost::latency::LatencyProfile;
use scaling::frontier::{CostModel, Domain, FrontierSpec, PaperCost};
use scaling::law::{Law, TokenAxis};

use crate::api::BudgetRequest;
use crate::error::ApiError;
use crate::reduction::{NativeTokens, VisualPlan};
use models::reduction::ReductionMethod;

/// The law and cost models the server decides with.
#[derive(Debug, Clone)]
pub struct Planner {
    /// The fitted law (`--fit fit.json`, else the fit of the paper's scores).
    pub law: Law,
    /// What T is in the law.
    pub axis: TokenAxis,
    /// Where the law came from, for `/v1/models`.
    pub origin: String,
    /// The measured latency profile (`--latency-profile`); `ttft_ms` budgets need it.
    pub latency: Option<LatencyProfile>,
}

/// A validated budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Time to first token, ms.
    TtftMs(f64),
    /// FLOPs by 2·N·(Q + V).
    Flops(f64),
}

impl Budget {
    /// Validates the request's `budget`. Errors: 400 `invalid_budget` unless exactly one field is a
    /// positive finite number.
    pub fn parse(b: &BudgetRequest) -> Result<Budget, ApiError> {
        let bad = |msg: String| ApiError::invalid_param("invalid_budget", "budget", msg);
        let check = |name: &str, x: f64| {
            if x.is_finite() && x > 0.0 {
                Ok(x)
            } else {
                Err(bad(format!("budget.{name} must be a positive number, got {x}")))
            }
        };
        match (b.ttft_ms, b.flops) {
            (Some(t), None) => Ok(Budget::TtftMs(check("ttft_ms", t)?)),
            (None, Some(f)) => Ok(Budget::Flops(check("flops", f)?)),
            _ => Err(bad("budget takes exactly one of `ttft_ms` or `flops`".into())),
        }
    }

    /// `ttft_ms` or `flops`.
    pub fn kind(&self) -> &'static str {
        match self {
            Budget::TtftMs(_) => "ttft_ms",
            Budget::Flops(_) => "flops",
        }
    }

    /// The number the request gave.
    pub fn value(&self) -> f64 {
        match self {
            Budget::TtftMs(x) | Budget::Flops(x) => *x,
        }
    }
}

/// One served model as the planner sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// N, the LLM's parameters.
    pub llm_params: usize,
    /// Q, text tokens of this request's prompt with this model's tokenizer and template.
    pub text_tokens: usize,
    /// Its native V and grid.
    pub native: &'a NativeTokens,
}

/// The pick.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// Index into the candidates.
    pub model: usize,
    /// The visual plan for it.
    pub plan: VisualPlan,
    /// Cost in the budget's unit (ms or FLOPs).
    pub cost: f64,
    /// Predicted error.
    pub predicted_error: f64,
    /// (model, V) pairs weighed.
    pub weighed: usize,
}

impl Planner {
    /// Picks (model, V) for `budget`. `method`: the training-free reduction the request allows
    /// (its `token_reduction`); without it each model is weighed at its native V only.
    ///
    /// Errors: 400 `latency_profile_missing` for a `ttft_ms` budget on a server started without
    /// --latency-profile; 400 `budget_too_small` when no (model, V) fits, naming the cheapest.
    pub fn pick(
        &self,
        budget: Budget,
        candidates: &[Candidate],
        method: Option<ReductionMethod>,
    ) -> Result<Pick, ApiError> {
        // Costs in the cost model's own unit (seconds for the profile).
        let (cost_model, limit, to_request_unit): (&dyn CostModel, f64, f64) = match budget {
            Budget::Flops(f) => (&PaperCost as &dyn CostModel, f, 1.0),
            Budget::TtftMs(ms) => match &self.latency {
                Some(p) => (p as &dyn CostModel, ms / 1e3, 1e3),
                None => {
                    return Err(ApiError::invalid_param(
                        "latency_profile_missing",
                        "budget.ttft_ms",
                        "this server was started without --latency-profile: use a `flops` budget, or restart it with a profile from `vlmscale bench infer --profile`",
                    ))
                }
            },
        };
        let mut best: Option<Pick> = None;
        let mut weighed = 0;
        let mut cheapest = f64::INFINITY;
        for (i, c) in candidates.iter().enumerate() {
            let n_b = c.llm_params as f64 / 1e9;
            let vs = c.native.options(method);
            weighed += vs.len();
            let q = c.text_tokens as f64;
            for &v in &vs {
                cheapest = cheapest.min(cost_model.cost(n_b, q, v as f64));
            }
            let spec = FrontierSpec {
                law: self.law,
                axis: self.axis,
                text_tokens: q,
                sizes: Domain::Set(vec![n_b]),
                tokens: Domain::Set(vs.iter().map(|&v| v as f64).collect()),
            };
            let opt = spec.optimum(cost_model, limit).map_err(|e| ApiError::internal(format!("frontier: {e}")))?;
            let Some(o) = opt else { continue };
            let v = o.visual_tokens.round() as usize;
            let better = match &best {
                None => true,
                Some(b) => {
                    o.predicted_error < b.predicted_error
                        || (o.predicted_error == b.predicted_error && o.cost * to_request_unit < b.cost)
                }
            };
            if better {
                let plan = if v == c.native.visual_tokens {
                    VisualPlan::native(c.native)
                } else {
                    VisualPlan { visual_tokens: v, method, ..VisualPlan::native(c.native) }
                };
                best = Some(Pick {
                    model: i,
                    plan,
                    cost: o.cost * to_request_unit,
                    predicted_error: o.predicted_error,
                    weighed: 0,
                });
            }
        }
        match best {
            Some(mut b) => {
                b.weighed = weighed;
                Ok(b)
            }
            None => Err(ApiError::invalid_param(
                "budget_too_small",
                format!("budget.{}", budget.kind()),
                format!(
                    "no served (model, V) fits budget.{} = {}; the cheapest costs {:.6e}",
                    budget.kind(),
                    budget.value(),
                    cheapest * to_request_unit
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner(latency: Option<LatencyProfile>) -> Planner {
        // An illustrative law with α > β > 0 (error falls with both N and V, faster with N).
        Planner {
            law: Law::Multiplicative { a: 0.3, alpha: 0.08, beta: 0.01, d: 0.2 },
            axis: TokenAxis::Visual,
            origin: "test".into(),
            latency,
        }
    }

    #[test]
    fn flops_budget_picks_the_most_tokens_and_parameters_it_affords() {
        let small = NativeTokens { visual_tokens: 64, grid: 8, compressor: "none", llm_layers: 4 };
        let big = NativeTokens { visual_tokens: 4, grid: 8, compressor: "quecc", llm_layers: 4 };
        let cands = [
            Candidate { llm_params: 1_000_000, text_tokens: 10, native: &small },
            Candidate { llm_params: 4_000_000, text_tokens: 10, native: &big },
        ];
        let p = planner(None);
        // 2·N·(Q+V): small at V=64 costs 2e6·74 = 1.48e8; big at V=4 costs 8e6·14 = 1.12e8.
        let pick = p.pick(Budget::Flops(1.2e8), &cands, Some(ReductionMethod::AvgPool)).unwrap();
        assert_eq!(pick.model, 1, "the bigger model with V = 4 fits and the law prefers N");
        assert_eq!(pick.plan.visual_tokens, 4);
        assert!((pick.cost - 1.12e8).abs() < 1.0);
        assert_eq!(pick.weighed, 5, "small: 1, 4, 16, 64; big: 4");
        // Too small for the big model: the small one, pooled to what fits (V = 16: 2e6·26 = 5.2e7).
        let pick = p.pick(Budget::Flops(6e7), &cands, Some(ReductionMethod::AvgPool)).unwrap();
        assert_eq!((pick.model, pick.plan.visual_tokens, pick.plan.method), (0, 16, Some(ReductionMethod::AvgPool)));
        // Without a reduction method the small model has only V = 64, which does not fit.
        assert_eq!(p.pick(Budget::Flops(6e7), &cands, None).unwrap_err().code, "budget_too_small");
    }

    #[test]
    fn ttft_budget_needs_a_profile_and_charges_the_vision_tower() {
        let plain = NativeTokens { visual_tokens: 64, grid: 8, compressor: "none", llm_layers: 4 };
        let cands = [Candidate { llm_params: 1_000_000_000, text_tokens: 10, native: &plain }];
        assert_eq!(
            planner(None).pick(Budget::TtftMs(100.0), &cands, None).unwrap_err().code,
            "latency_profile_missing"
        );
        let prof = LatencyProfile {
            machine: String::new(),
            vision_ms: 50.0,
            compressor_ms: 0.0,
            prefill_ms_per_token_per_billion: 1.0,
            decode_ms_per_token_per_billion: 10.0,
            quecc_query_pass: false,
            formats: vec![],
        };
        let p = planner(Some(prof));
        // TTFT = 50 + 1·(10 + V) ms: V = 16 → 76 ms, V = 64 → 124 ms.
        let pick = p.pick(Budget::TtftMs(100.0), &cands, Some(ReductionMethod::AvgPool)).unwrap();
        assert_eq!(pick.plan.visual_tokens, 16);
        assert!((pick.cost - 76.0).abs() < 1e-9, "cost in ms: {}", pick.cost);
        let err = p.pick(Budget::TtftMs(55.0), &cands, Some(ReductionMethod::AvgPool)).unwrap_err();
        assert_eq!(err.code, "budget_too_small");
        assert!(err.message.contains("6.100000e1"), "{}", err.message);
    }

    #[test]
    fn budget_parsing() {
        let b = |t, f| BudgetRequest { ttft_ms: t, flops: f };
        assert_eq!(Budget::parse(&b(Some(5.0), None)).unwrap(), Budget::TtftMs(5.0));
        assert_eq!(Budget::parse(&b(None, Some(1e9))).unwrap(), Budget::Flops(1e9));
        for bad in [b(None, None), b(Some(1.0), Some(1.0)), b(Some(-1.0), None), b(None, Some(0.0))] {
            assert_eq!(Budget::parse(&bad).unwrap_err().code, "invalid_budget");
        }
    }
}
