//! The report's rules for judging the paper's claims: disjoint bootstrap intervals and exponents on
//! their bound, the relative leave-one-size-out criterion, QueCC's 5-of-6 rule, the blind-prior gate,
//! and no stale per-task files. Scores come from known laws (with seeded noise where a bootstrap must
//! see spread), so each expected verdict follows from the law, not from the code under test.
use std::collections::BTreeMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sweep::grid::{Cell, SweepConfig};
use sweep::report::{analyse, write_report, ReportOptions, Verdict};
use sweep::runner::{CellResult, CellRunner};
use sweep::synthetic::SyntheticRunner;

fn coarse() -> scaling::fit::grid::GridSpec {
    use scaling::fit::grid::linspace;
    scaling::fit::grid::GridSpec {
        scale: linspace(0.1, 0.7, 13),
        alpha: linspace(0.0, 0.2, 21),
        beta: linspace(0.0, 0.05, 11),
        offset: linspace(0.0, 0.3, 7),
    }
}

/// (task, A, α, β, D): error = A·N^−α·V^−β + D at N ∈ {0.002, 0.008, 0.03, 0.1}, V ∈ {1, 4, 16, 64},
/// plus N(0, noise²) (seeded); `largest_shift` multiplies the largest N's errors (a law break).
fn csv(path: &Path, laws: &[(&str, f64, f64, f64, f64)], noise: f64, largest_shift: f64, query_free_gain: &[f64]) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut s = String::from("llm_params,visual_tokens,text_tokens,score,task,compressor\n");
    for &(task, a, al, be, d) in laws {
        for (i, n) in [0.002, 0.008, 0.03, 0.1].into_iter().enumerate() {
            for v in [1.0f64, 4.0, 16.0, 64.0] {
                let mut e = a * f64::powf(n, -al) * v.powf(-be) + d;
                if i == 3 {
                    e *= largest_shift;
                }
                let z: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0; // ≈ N(0, 1)
                e += noise * z;
                s += &format!("{n},{v},10,{},{task},quecc\n", 1.0 - e);
                if v == 1.0 {
                    // The query-free compressor at V = 1: worse by the given gain per LLM size.
                    s += &format!("{n},{v},10,{},{task},quecc-noquery\n", 1.0 - e - query_free_gain[i]);
                }
            }
        }
    }
    std::fs::write(path, s).unwrap();
}

fn verdicts(a: &sweep::report::Analysis) -> BTreeMap<String, (Verdict, String)> {
    a.claims.iter().map(|c| (c.key.clone(), (c.verdict, c.evidence.clone()))).collect()
}

fn run(path: &Path, bootstrap: usize) -> BTreeMap<String, (Verdict, String)> {
    let ds = scaling::data::Dataset::from_path(path).unwrap();
    let opts = ReportOptions { bootstrap, grid: Some(coarse()), plots: false, ..Default::default() };
    verdicts(&analyse(&ds, &opts).unwrap())
}

const GAIN: [f64; 4] = [0.05; 4];

#[test]
fn alpha_gt_beta_needs_disjoint_intervals() {
    let dir = tempfile::tempdir().unwrap();
    // Clearly separated exponents: the intervals are disjoint.
    let p = dir.path().join("a.csv");
    csv(&p, &[("sort_of_clevr", 0.25, 0.15, 0.02, 0.05)], 0.002, 1.0, &GAIN);
    let (v, ev) = &run(&p, 60)["alpha_gt_beta"];
    assert_eq!(*v, Verdict::Reproduced, "{ev}");
    assert!(ev.contains("disjoint") && ev.contains("V* = 0.000 at Q = 0"), "{ev}");
    // α barely above β with noise: the point estimates may order them, the intervals overlap.
    let p = dir.path().join("b.csv");
    csv(&p, &[("sort_of_clevr", 0.25, 0.03, 0.025, 0.05)], 0.01, 1.0, &GAIN);
    let (v, ev) = &run(&p, 60)["alpha_gt_beta"];
    assert_eq!(*v, Verdict::NotReproduced, "{ev}");
    assert!(ev.contains("overlap"), "{ev}");
}

#[test]
fn an_exponent_on_its_bound_is_said_to_be_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.csv");
    // No effect of N at all: α sits on the softplus floor.
    csv(&p, &[("sort_of_clevr", 0.25, 0.0, 0.02, 0.05)], 0.0, 1.0, &GAIN);
    let (v, ev) = &run(&p, 0)["alpha_gt_beta"];
    assert_eq!(*v, Verdict::NotReproduced, "{ev}");
    assert!(ev.contains("on its bound 0"), "{ev}");
    assert!(ev.contains("no bootstrap"), "{ev}");
}

#[test]
fn leave_one_size_out_uses_the_relative_error() {
    let dir = tempfile::tempdir().unwrap();
    // The largest LLM 1 % off the law: within 2 %.
    let p = dir.path().join("a.csv");
    csv(&p, &[("sort_of_clevr", 0.25, 0.15, 0.02, 0.05)], 0.0, 1.01, &GAIN);
    let (v, ev) = &run(&p, 0)["leave_one_size_out_sort_of_clevr"];
    assert_eq!(*v, Verdict::Reproduced, "{ev}");
    // 5 % off: an absolute gap of ~0.01 would pass an absolute 0.02 rule; the relative rule fails it.
    let p = dir.path().join("b.csv");
    csv(&p, &[("sort_of_clevr", 0.25, 0.15, 0.02, 0.05)], 0.0, 1.05, &GAIN);
    let (v, ev) = &run(&p, 0)["leave_one_size_out_sort_of_clevr"];
    assert_eq!(*v, Verdict::NotReproduced, "{ev}");
    assert!(ev.contains("mean relative gap"), "{ev}");
}

#[test]
fn quecc_needs_five_of_six_and_a_mean_gain() {
    let dir = tempfile::tempdir().unwrap();
    let law = [("sort_of_clevr", 0.25, 0.15, 0.02, 0.05)];
    // Better in all 4 matched cells by 0.05: reproduced.
    let p = dir.path().join("a.csv");
    csv(&p, &law, 0.0, 1.0, &GAIN);
    assert_eq!(run(&p, 0)["quecc_beats_query_free"].0, Verdict::Reproduced);
    // Better in 3 of 4 (75 % < 5/6): not reproduced, although the mean gain is large.
    let p = dir.path().join("b.csv");
    csv(&p, &law, 0.0, 1.0, &[0.1, 0.1, 0.1, -0.01]);
    let (v, ev) = &run(&p, 0)["quecc_beats_query_free"];
    assert_eq!(*v, Verdict::NotReproduced, "{ev}");
    assert!(ev.contains("3 of 4"), "{ev}");
    // Better everywhere but by 0.005 on average: below the 0.02 gain.
    let p = dir.path().join("c.csv");
    csv(&p, &law, 0.0, 1.0, &[0.005; 4]);
    assert_eq!(run(&p, 0)["quecc_beats_query_free"].0, Verdict::NotReproduced);
}

#[test]
fn the_fine_detail_difference_interval_must_exclude_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.csv");
    // β/α: reasoning 0.02/0.15 = 0.13, fine detail 0.05/0.05 = 1: clearly larger.
    csv(&p, &[("sort_of_clevr", 0.25, 0.15, 0.02, 0.05), ("fine_detail", 0.3, 0.05, 0.05, 0.05)], 0.002, 1.0, &GAIN);
    let (v, ev) = &run(&p, 60)["fine_detail_larger_beta"];
    assert_eq!(*v, Verdict::Reproduced, "{ev}");
    assert!(ev.contains("paired resamples"), "{ev}");
}

/// The synthetic runner's results with a recorded blind prior per task.
struct WithPrior {
    inner: SyntheticRunner,
    prior: BTreeMap<&'static str, f64>,
}

impl CellRunner for WithPrior {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn run(&self, cell: &Cell, out_dir: &Path) -> sweep::Result<CellResult> {
        let mut r = self.inner.run(cell, out_dir)?;
        r.details = Some(serde_json::json!({ "blind_prior_accuracy": self.prior[cell.task.as_str()] }));
        Ok(r)
    }
}

const GRID: &str = r#"
name = "t"
results_dir = "res"
visual_tokens = [1, 4, 16, 64]
compressors = ["quecc", "quecc-noquery"]
tasks = ["sort_of_clevr", "fine_detail"]
[compressor_visual_tokens]
quecc-noquery = [1, 4]
[[llm]]
name = "a"
params = 0.002
[[llm]]
name = "b"
params = 0.008
[[llm]]
name = "c"
params = 0.03
"#;

#[test]
fn claims_of_a_task_below_its_blind_prior_are_not_tested_and_no_file_goes_stale() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sweep.toml"), GRID).unwrap();
    let cfg = SweepConfig::from_path(&dir.path().join("sweep.toml")).unwrap();
    // The synthetic scores are ≈ 0.6–0.8 (reasoning) and lower for fine detail: a prior of 0.95 for
    // fine detail puts every fine-detail cell below it, a prior of 0.1 keeps reasoning well above.
    let runner = WithPrior {
        inner: SyntheticRunner::default(),
        prior: BTreeMap::from([("sort_of_clevr", 0.1), ("fine_detail", 0.95)]),
    };
    sweep::sweep::run_sweep(&cfg, &runner, 2, false).unwrap().into_result().unwrap();
    let agg = sweep::aggregate::write_aggregate(&cfg).unwrap();
    let opts = ReportOptions {
        bootstrap: 0,
        grid: Some(coarse()),
        plots: false,
        sweep: Some(cfg.clone()),
        ..Default::default()
    };
    let out = dir.path().join("report");
    let (a, _) = write_report(&agg.path, &opts, &out).unwrap();
    let v = verdicts(&a);
    assert_eq!(v["alpha_gt_beta"].0, Verdict::Reproduced, "{:?}", v["alpha_gt_beta"]);
    for k in ["fine_detail_larger_beta", "leave_one_size_out_fine_detail"] {
        assert_eq!(v[k].0, Verdict::NotTested, "{k}: {:?}", v[k]);
        assert!(v[k].1.contains("blind prior of 0.950"), "{k}: {}", v[k].1);
    }
    assert!(out.join("fit_fine_detail.json").exists());

    // A stale per-task file of a task that is no longer in the scores is removed.
    let only_reasoning = dir.path().join("reasoning.csv");
    let text = std::fs::read_to_string(&agg.path).unwrap();
    let header = text.lines().next().unwrap().to_string();
    let task_col = header.split(',').position(|c| c == "task").unwrap();
    let kept: Vec<&str> =
        text.lines().skip(1).filter(|l| l.split(',').nth(task_col) == Some("sort_of_clevr")).collect();
    std::fs::write(&only_reasoning, format!("{header}\n{}\n", kept.join("\n"))).unwrap();
    let opts = ReportOptions { sweep: None, ..opts };
    write_report(&only_reasoning, &opts, &out).unwrap();
    assert!(out.join("fit_sort_of_clevr.json").exists());
    assert!(!out.join("fit_fine_detail.json").exists() && !out.join("frontier_fine_detail.json").exists());
}

#[test]
fn a_task_group_is_judged_on_its_mean_and_gated_by_each_member() {
    let dir = tempfile::tempdir().unwrap();
    let grid = GRID.replace(
        "tasks = [\"sort_of_clevr\", \"fine_detail\"]",
        "tasks = [\"sort_of_clevr\", \"object_facts\", \"fine_detail\"]\n[task_groups]\nreasoning = [\"sort_of_clevr\", \"object_facts\"]\n[report]\nreasoning_task = \"reasoning\"",
    );
    std::fs::write(dir.path().join("sweep.toml"), &grid).unwrap();
    let cfg = SweepConfig::from_path(&dir.path().join("sweep.toml")).unwrap();
    let opts = |cfg: &SweepConfig| ReportOptions {
        names: cfg.report.clone(),
        bootstrap: 0,
        grid: Some(coarse()),
        plots: false,
        sweep: Some(cfg.clone()),
        ..Default::default()
    };
    // Both members read the image: the group's claim is judged (the synthetic reasoning law has
    // α > β, and so has the mean of two tasks that follow it).
    let runner = WithPrior {
        inner: SyntheticRunner::default(),
        prior: BTreeMap::from([("sort_of_clevr", 0.1), ("object_facts", 0.1), ("fine_detail", 0.1)]),
    };
    sweep::sweep::run_sweep(&cfg, &runner, 2, false).unwrap().into_result().unwrap();
    let agg = sweep::aggregate::write_aggregate(&cfg).unwrap();
    let (a, _) = write_report(&agg.path, &opts(&cfg), &dir.path().join("r1")).unwrap();
    let v = verdicts(&a);
    assert_eq!(v["alpha_gt_beta"].0, Verdict::Reproduced, "{:?}", v["alpha_gt_beta"]);
    assert!(a.fits.contains_key("reasoning") && a.claims.iter().any(|c| c.claim.contains("`reasoning`")));

    // One member below its blind prior: the group's claims are not tested, and the evidence names
    // that member's cells.
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::write(dir2.path().join("sweep.toml"), &grid).unwrap();
    let cfg2 = SweepConfig::from_path(&dir2.path().join("sweep.toml")).unwrap();
    let runner = WithPrior {
        inner: SyntheticRunner::default(),
        prior: BTreeMap::from([("sort_of_clevr", 0.1), ("object_facts", 0.99), ("fine_detail", 0.1)]),
    };
    sweep::sweep::run_sweep(&cfg2, &runner, 2, false).unwrap().into_result().unwrap();
    let agg = sweep::aggregate::write_aggregate(&cfg2).unwrap();
    let (a, _) = write_report(&agg.path, &opts(&cfg2), &dir2.path().join("r2")).unwrap();

    let v = verdicts(&a);
    assert_eq!(v["alpha_gt_beta"].0, Verdict::NotTested, "{:?}", v["alpha_gt_beta"]);
    assert!(
        v["alpha_gt_beta"].1.contains("object_facts.") && v["alpha_gt_beta"].1.contains("0.990"),
        "{}",
        v["alpha_gt_beta"].1
    );
}

/// The law is fitted on the paper's compressor, TokenPacker, when the grid has its cells (the paper's
/// scaling grid is TokenPacker's), on QueCC's when asked to, and on QueCC's when there is no
/// TokenPacker cell. The two compressors' scores follow laws with different β, so the fitted β shows
/// which cells were used.
#[test]
fn the_law_is_fitted_on_tokenpacker_cells_as_in_the_paper() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("scores.csv");
    let mut s = String::from("llm_params,visual_tokens,text_tokens,score,task,compressor\n");
    for n in [0.002, 0.008, 0.03, 0.1f64] {
        for v in [1.0, 4.0, 16.0, 64.0f64] {
            for (comp, beta) in [("quecc", 0.0), ("tokenpacker", 0.04)] {
                let e = 0.4 * n.powf(-0.1) * v.powf(-beta) + 0.1;
                s += &format!("{n},{v},10,{},sort_of_clevr,{comp}\n", 1.0 - e);
            }
        }
    }
    std::fs::write(&path, &s).unwrap();
    let ds = scaling::data::Dataset::from_path(&path).unwrap();
    let fit = |names: sweep::grid::ReportNames| {
        let opts = ReportOptions { bootstrap: 0, grid: Some(coarse()), plots: false, names, ..Default::default() };
        let a = analyse(&ds, &opts).unwrap();
        (a.fit_compressor["sort_of_clevr"].clone().unwrap(), a.fits["sort_of_clevr"].law().beta())
    };
    let (comp, beta) = fit(Default::default());
    assert_eq!(comp, "tokenpacker");
    assert!((beta - 0.04).abs() < 0.005, "β {beta}");
    let (comp, beta) = fit(sweep::grid::ReportNames { law_compressor: "quecc".into(), ..Default::default() });
    assert_eq!(comp, "quecc");
    assert!(beta < 0.005, "β {beta}");
    let only_quecc: String = s.lines().filter(|l| !l.ends_with(",tokenpacker")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, only_quecc).unwrap();
    let ds = scaling::data::Dataset::from_path(&path).unwrap();
    let opts = ReportOptions { bootstrap: 0, grid: Some(coarse()), plots: false, ..Default::default() };
    assert_eq!(analyse(&ds, &opts).unwrap().fit_compressor["sort_of_clevr"].as_deref(), Some("quecc"));
}
