//! The compute-optimal frontier against closed forms and brute force.
use scaling::frontier::{closed_form_visual_tokens, CostModel, Domain, FrontierSpec, PaperCost};
use scaling::law::{Law, TokenAxis};

fn paper_law() -> Law {
    // The paper's reported exponents (A, D arbitrary: they do not move the optimum).
    Law::Multiplicative { a: 0.6, alpha: 0.077, beta: 0.015, d: 0.03 }
}

fn continuous(q: f64) -> FrontierSpec {
    FrontierSpec {
        law: paper_law(),
        axis: TokenAxis::Visual,
        text_tokens: q,
        sizes: Domain::Range { min: 0.01, max: 1e5 },
        tokens: Domain::Range { min: 1.0, max: 576.0 },
    }
}

#[test]
fn q50_optimum_matches_closed_form() {
    // V* = β·Q/(α − β) = 0.015·50/0.062 = 12.097 (derivation: set dY/dV = 0 under 2·N·(Q+V) = budget)
    let closed = closed_form_visual_tokens(0.077, 0.015, 50.0).unwrap();
    assert!((closed - 0.75 / 0.062).abs() < 1e-12);
    for budget in [1e11, 1e12, 1e14] {
        let o = continuous(50.0).optimum(&PaperCost, budget).unwrap().unwrap();
        assert!((o.visual_tokens - closed).abs() / closed < 0.01, "V* = {} vs {closed}", o.visual_tokens);
        assert!(o.cost <= budget * (1.0 + 1e-9));
        // N* fills the budget: N = C / (2·(Q+V)) (in billions)
        let n = budget / (2.0 * (50.0 + o.visual_tokens)) / 1e9;
        assert!((o.llm_params - n).abs() / n < 1e-3);
    }
}

#[test]
fn q0_optimum_is_one_token_and_the_largest_llm() {
    let o = continuous(0.0).optimum(&PaperCost, 1e12).unwrap().unwrap();
    assert!((o.visual_tokens - 1.0).abs() < 1e-6);
    assert!((o.llm_params - 500.0).abs() < 1e-3); // 1e12 / (2·1) FLOPs → 5e11 params = 500 B
                                                  // with the paper's sizes and token counts: the largest affordable N with V = 1
    let spec = FrontierSpec {
        sizes: Domain::Set(vec![0.5, 1.8, 4.0, 7.0]),
        tokens: Domain::Set(vec![1.0, 4.0, 16.0, 36.0, 64.0, 144.0, 576.0]),
        ..continuous(0.0)
    };
    let o = spec.optimum(&PaperCost, 2.0 * 7e9 * 1.0).unwrap().unwrap();
    assert_eq!((o.llm_params, o.visual_tokens), (7.0, 1.0));
}

#[test]
fn discrete_sets_match_brute_force() {
    let ns = vec![0.5, 1.8, 4.0, 7.0, 14.0];
    let vs = vec![1.0, 4.0, 16.0, 36.0, 64.0, 144.0, 576.0];
    let spec = FrontierSpec { sizes: Domain::Set(ns.clone()), tokens: Domain::Set(vs.clone()), ..continuous(50.0) };
    for budget in [5e10, 3e11, 1e12, 7e12, 2e13] {
        let mut best: Option<(f64, f64, f64)> = None;
        for &n in &ns {
            for &v in &vs {
                if PaperCost.cost(n, 50.0, v) <= budget {
                    let e = paper_law().predict(n, v);
                    if best.is_none_or(|b| e < b.0) {
                        best = Some((e, n, v));
                    }
                }
            }
        }
        let o = spec.optimum(&PaperCost, budget).unwrap();
        match (o, best) {
            (Some(o), Some((e, n, v))) => assert_eq!((o.predicted_error, o.llm_params, o.visual_tokens), (e, n, v)),
            (None, None) => {}
            (o, b) => panic!("budget {budget}: {o:?} vs {b:?}"),
        }
    }
    // smaller than the smallest configuration
    assert!(spec.optimum(&PaperCost, 1.0).unwrap().is_none());
}

#[test]
fn t_equals_q_plus_v_prefers_the_fewest_tokens() {
    // Y = A·N^-α·(Q+V)^-β with cost ∝ N(Q+V): Y ∝ (Q+V)^(α−β) on the budget curve, minimal at V = 1.
    let spec = FrontierSpec { axis: TokenAxis::TextPlusVisual, ..continuous(50.0) };
    let o = spec.optimum(&PaperCost, 1e13).unwrap().unwrap();
    assert!((o.visual_tokens - 1.0).abs() < 1e-6, "{o:?}");
}

#[test]
fn ocr_like_exponents_want_many_tokens() {
    let law = Law::Multiplicative { a: 0.6, alpha: 0.03, beta: 0.09, d: 0.0 };
    assert!(closed_form_visual_tokens(0.03, 0.09, 50.0).is_none());
    let spec = FrontierSpec { law, ..continuous(0.0) };
    let o = spec.optimum(&PaperCost, 1e13).unwrap().unwrap();
    assert!((o.visual_tokens - 576.0).abs() < 1e-6);
}

#[test]
fn bad_budget_and_domains_are_errors() {
    assert!(continuous(0.0).optimum(&PaperCost, -1.0).is_err());
    assert!(continuous(0.0).optimum(&PaperCost, f64::NAN).is_err());
    let spec = FrontierSpec { sizes: Domain::Set(vec![]), ..continuous(0.0) };
    assert!(spec.optimum(&PaperCost, 1e12).is_err());
    let spec = FrontierSpec { tokens: Domain::Range { min: 10.0, max: 1.0 }, ..continuous(0.0) };
    assert!(spec.optimum(&PaperCost, 1e12).is_err());
}
