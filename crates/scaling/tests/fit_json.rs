//! A saved fit report reads back (what `vlmscale frontier --fit` / `plot --fit` do) even when it holds
//! non-finite values, which serde_json writes as `null`: α/β of a β = 0 fit is +∞ (α / 0), a bootstrap
//! interval with no finite resample is NaN, a relative gap on an observed error of 0 is +∞.
use scaling::fit::bootstrap::Bootstrap;
use scaling::fit::holdout::Holdout;
use scaling::fit::{FitEntry, FitReport};
use scaling::law::{Law, TokenAxis};
use std::collections::BTreeMap;

fn entry(law: Law) -> FitEntry {
    FitEntry {
        law,
        loss: 1e-4,
        r2: 0.9,
        alpha_over_beta: law.alpha() / law.beta(),
        objective: "squared".into(),
        objective_value: 1e-4,
    }
}

#[test]
fn fit_report_with_beta_zero_round_trips() {
    let law = Law::Multiplicative { a: 0.6, alpha: 0.077, beta: 0.0, d: 0.03 };
    let intervals =
        BTreeMap::from([("alpha".to_string(), [0.05, 0.1]), ("alpha_over_beta".to_string(), [f64::NAN, f64::NAN])]);
    let rep = FitReport {
        source: "test".into(),
        task: "reasoning".into(),
        token_axis: TokenAxis::Visual,
        cells: 12,
        grid: entry(law),
        grid_points: 1,
        grid_seconds: 0.0,
        grid_boundary: vec!["beta".into()],
        refined: entry(law),
        refined_huber: Some(entry(law)),
        unconstrained: entry(law),
        used: "refined".into(),
        constraints: String::new(),
        bootstrap: Some(Bootstrap { samples: 10, level: 0.95, seed: 0, intervals, laws: vec![] }),
        leave_one_n_out: Some(Holdout {
            held_out_llm_params: 7.0,
            law,
            cells: vec![],
            mean_abs_error: 0.01,
            max_abs_error: 0.02,
            mean_rel_error: f64::INFINITY,
        }),
    };
    let text = serde_json::to_string(&rep).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["refined"]["alpha_over_beta"].is_null(), "{text}");
    assert!(v["bootstrap"]["alpha_over_beta"][0].is_null(), "{text}");
    assert!(v["leave_one_n_out"]["mean_rel_error"].is_null(), "{text}");

    let back: FitReport = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(back.law(), law);
    assert_eq!(back.token_axis, TokenAxis::Visual);
    for e in [&back.grid, &back.refined, back.refined_huber.as_ref().unwrap(), &back.unconstrained] {
        assert_eq!(e.alpha_over_beta, f64::INFINITY);
    }
    let b = back.bootstrap.unwrap();
    assert_eq!(b.intervals["alpha"], [0.05, 0.1]);
    assert!(b.intervals["alpha_over_beta"].iter().all(|x| x.is_nan()));
    assert_eq!(b.samples, 10);
    assert_eq!(back.leave_one_n_out.unwrap().mean_rel_error, f64::INFINITY);
}

#[test]
fn finite_alpha_over_beta_still_reads_as_a_number_and_garbage_is_an_error() {
    let law = Law::Multiplicative { a: 0.6, alpha: 0.5, beta: 0.125, d: 0.03 };
    let text = serde_json::to_string(&entry(law)).unwrap();
    let back: FitEntry = serde_json::from_str(&text).unwrap();
    assert_eq!(back.alpha_over_beta, 4.0);
    let bad = text.replace("\"alpha_over_beta\":4.0", "\"alpha_over_beta\":\"x\"");
    assert_ne!(bad, text);
    assert!(serde_json::from_str::<FitEntry>(&bad).is_err());
}

#[test]
fn a_perfect_score_fits_without_the_log_objective() {
    // Scores in [0, 1] are valid; 1.0 is an error of 0, which the Huber-on-log comparison fit cannot
    // take. The law (squared loss) is still fitted, and the Huber entry says it was not computed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scores.csv");
    let mut s = String::from("llm_params,visual_tokens,text_tokens,score,task\n");
    for n in [0.5, 1.8, 4.0] {
        for v in [1.0f64, 4.0, 16.0, 64.0] {
            let err = 0.3 * f64::powf(n, -0.1) * v.powf(-0.02);
            s += &format!("{n},{v},0,{},r\n", 1.0 - err);
        }
    }
    s += "7,64,0,1.0,r\n";
    std::fs::write(&path, s).unwrap();
    let ds = scaling::data::Dataset::from_path(&path).unwrap();
    let opts = scaling::fit::FitOptions { bootstrap: 0, ..Default::default() };
    let rep = scaling::fit::fit(&ds, "r", &opts).unwrap();
    assert!(rep.refined_huber.is_none());
    assert!(rep.refined.r2.is_finite());
}
