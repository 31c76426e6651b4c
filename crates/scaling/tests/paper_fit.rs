//! The fit on the paper's own published scores must recover the paper's reported exponents
//! (α = 0.077, β = 0.015: paper abstract and Figure 1) — expectations from the paper, not our output.
use scaling::fit::{fit, FitOptions};
use scaling::law::Law;
use scaling::paper;

fn reasoning() -> scaling::data::Dataset {
    paper::dataset().unwrap().select(Some("reasoning"), None).unwrap()
}

#[test]
fn grid_recovers_the_papers_exponents() {
    let rep =
        fit(&reasoning(), "reasoning", &FitOptions { bootstrap: 0, holdout: false, ..Default::default() }).unwrap();
    assert_eq!(rep.cells, 28);
    assert_eq!(rep.grid_points, 5_000_000);
    let g = rep.grid.law;
    assert!((g.alpha() - 0.077).abs() <= 0.005, "grid α = {}", g.alpha());
    assert!((g.beta() - 0.015).abs() <= 0.003, "grid β = {}", g.beta());
    // α/β ≈ 5: "error moves ~5x faster with N than with V"
    assert!((3.5..6.5).contains(&rep.grid.alpha_over_beta), "α/β = {}", rep.grid.alpha_over_beta);
}

#[test]
fn refined_is_no_worse_than_grid_and_respects_bounds() {
    let rep =
        fit(&reasoning(), "reasoning", &FitOptions { bootstrap: 0, holdout: false, ..Default::default() }).unwrap();
    assert!(rep.refined.loss <= rep.grid.loss, "refined {} > grid {}", rep.refined.loss, rep.grid.loss);
    match rep.refined.law {
        Law::Multiplicative { a, alpha, beta, d } => assert!(a > 0.0 && alpha >= 0.0 && beta >= 0.0 && d >= 0.0),
        _ => panic!("wrong form"),
    }
    // The bounded refinement stays near the paper's values.
    assert!((rep.refined.law.alpha() - 0.077).abs() < 0.01);
    assert!((rep.refined.law.beta() - 0.015).abs() < 0.003);
    assert!(rep.refined.r2 > 0.98);
}

#[test]
fn unbounded_least_squares_degenerates_as_the_reference_says() {
    // without D ≥ 0 the fit drives D far negative and α, β towards 0 at a lower loss.
    let rep =
        fit(&reasoning(), "reasoning", &FitOptions { bootstrap: 0, holdout: false, ..Default::default() }).unwrap();
    match rep.unconstrained.law {
        Law::Multiplicative { d, alpha, beta, .. } => {
            assert!(d < -1.0, "D = {d}");
            assert!(alpha < 0.02 && beta < 0.01, "α = {alpha}, β = {beta}");
        }
        _ => panic!("wrong form"),
    }
    assert!(rep.unconstrained.loss < rep.refined.loss);
}

#[test]
fn bootstrap_intervals_cover_the_point_estimate_and_holdout_is_small() {
    let rep = fit(&reasoning(), "reasoning", &FitOptions { bootstrap: 100, ..Default::default() }).unwrap();
    let b = rep.bootstrap.as_ref().unwrap();
    assert!(b.samples >= 95);
    for (name, x) in [("alpha", rep.refined.law.alpha()), ("beta", rep.refined.law.beta())] {
        let [lo, hi] = b.intervals[name];
        assert!(lo <= x && x <= hi && lo < hi, "{name}: {x} not in [{lo}, {hi}]");
    }
    let h = rep.leave_one_n_out.as_ref().unwrap();
    assert_eq!(h.held_out_llm_params, 7.0);
    assert_eq!(h.cells.len(), 7);
    // The paper: a law fitted on smaller LLMs predicts the next size "with an error margin of less than 2 %".
    assert!(h.mean_rel_error < 0.02, "hold-out relative error {}", h.mean_rel_error);
}

#[test]
fn ocr_tasks_want_relatively_more_tokens() {
    // Paper: for OCR-like tasks visual tokens matter more than N, i.e. β relative to α is much larger.
    let ocr = paper::dataset().unwrap().select(Some("ocr"), None).unwrap();
    let o = fit(&ocr, "ocr", &FitOptions { bootstrap: 0, holdout: false, ..Default::default() }).unwrap();
    let r = fit(&reasoning(), "reasoning", &FitOptions { bootstrap: 0, holdout: false, ..Default::default() }).unwrap();
    assert!(o.refined.alpha_over_beta < 1.0, "OCR α/β = {}", o.refined.alpha_over_beta);
    assert!(o.refined.alpha_over_beta < r.refined.alpha_over_beta);
}
