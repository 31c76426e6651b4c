//! Data generated from known parameters (plus noise) must be recovered by the fit: exactly without
//! noise, and within the bootstrap interval with noise.
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use scaling::data::{Dataset, Observation};
use scaling::fit::{fit, FitOptions};
use scaling::law::{Law, LawForm};

const NS: [f64; 5] = [0.5, 1.0, 2.0, 4.0, 8.0];
const VS: [f64; 7] = [1.0, 4.0, 16.0, 36.0, 64.0, 144.0, 576.0];

fn dataset(law: Law, noise: f64, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = vec![];
    for n in NS {
        for v in VS {
            // Box–Muller normal noise
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            rows.push(Observation {
                llm_params: n,
                visual_tokens: v,
                text_tokens: 0.0,
                error: law.predict(n, v) + noise * z,
                task: "syn".into(),
                compressor: None,
            });
        }
    }
    Dataset { source: "synthetic".into(), rows }
}

#[test]
fn noiseless_multiplicative_law_is_recovered_exactly() {
    // Inside the paper's grid ranges but off its grid points.
    let truth = Law::Multiplicative { a: 0.5321, alpha: 0.0913, beta: 0.0217, d: 0.0777 };
    let rep = fit(&dataset(truth, 0.0, 0), "syn", &FitOptions { bootstrap: 0, ..Default::default() }).unwrap();
    for (got, want) in rep.refined.law.params().iter().zip(truth.params()) {
        assert!((got - want).abs() < 2e-4, "{:?} vs {:?}", rep.refined.law, truth);
    }
    assert!(rep.refined.loss < 1e-12);
    // leave-one-N-out on exact data predicts the held-out size almost perfectly
    assert!(rep.leave_one_n_out.unwrap().max_abs_error < 1e-4);
}

#[test]
fn noisy_multiplicative_law_is_inside_bootstrap_intervals() {
    let truth = Law::Multiplicative { a: 0.55, alpha: 0.08, beta: 0.02, d: 0.05 };
    let mut covered = [0usize; 2];
    let seeds = 6;
    for seed in 0..seeds {
        let rep = fit(
            &dataset(truth, 0.002, seed),
            "syn",
            &FitOptions { bootstrap: 120, seed, holdout: false, ..Default::default() },
        )
        .unwrap();
        let b = rep.bootstrap.unwrap();
        for (k, (name, x)) in [("alpha", 0.08), ("beta", 0.02)].into_iter().enumerate() {
            let [lo, hi] = b.intervals[name];
            if lo <= x && x <= hi {
                covered[k] += 1;
            }
        }
    }
    // 95 % intervals: over 6 independent noisy data sets, at least 4 cover the truth for each exponent
    // (the chance of ≤ 3 of 6 with true coverage 0.95 is < 0.3 %).
    assert!(covered.iter().all(|&c| c >= 4), "coverage {covered:?} of {seeds}");
}

#[test]
fn additive_law_is_recovered() {
    let truth = Law::Additive { a: 0.3, alpha: 0.35, b: 0.2, beta: 0.25, e: 0.1 };
    let opts = FitOptions { form: LawForm::Additive, bootstrap: 0, holdout: false, ..Default::default() };
    let rep = fit(&dataset(truth, 0.0, 0), "syn", &opts).unwrap();
    for (got, want) in rep.refined.law.params().iter().zip(truth.params()) {
        assert!((got - want).abs() < 1e-3, "{:?} vs {:?}", rep.refined.law, truth);
    }
}

#[test]
fn too_few_cells_is_an_error() {
    let truth = Law::Multiplicative { a: 0.5, alpha: 0.08, beta: 0.02, d: 0.05 };
    let mut ds = dataset(truth, 0.0, 0);
    ds.rows.truncate(3);
    let err = fit(&ds, "syn", &FitOptions::default()).unwrap_err().to_string();
    assert!(err.contains("3 cells") && err.contains("4 parameters"), "{err}");
    // one N only: exponents unidentifiable
    let ds1 = Dataset {
        source: "s".into(),
        rows: dataset(truth, 0.0, 0).rows.into_iter().filter(|r| r.llm_params == 1.0).collect(),
    };
    let err = fit(&ds1, "syn", &FitOptions::default()).unwrap_err().to_string();
    assert!(err.contains("two distinct N"), "{err}");
}

#[test]
fn huber_on_log_error_matches_its_closed_form() {
    use scaling::fit::cells::Cells;
    use scaling::fit::refine::Objective;
    let law = Law::Multiplicative { a: 0.5, alpha: 0.0, beta: 0.0, d: 0.0 }; // predicts 0.5 everywhere
    let cells = Cells { n: vec![1.0, 1.0], t: vec![1.0, 1.0], y: vec![0.5 * (1e-4f64).exp(), 0.5 * (0.1f64).exp()] };
    // residuals ln(0.5/y) = −1e-4 (quadratic zone) and −0.1 (linear zone), δ = 1e-3
    let want = 0.5 * 1e-8 + 1e-3 * (0.1 - 0.5e-3);
    let got = Objective::HOFFMANN.value(&cells, &law);
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}
