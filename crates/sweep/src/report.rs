//! The sweep's report: the paper's law Y = A·N^−α·V^−β + D fitted per task family on the aggregate
//! CSV (scaling crate, T = V as in the authors' `objective.py`), Figure-1-style plots, the fitted
//! parameters as JSON, a Markdown table of every cell, and a Markdown report that states which of the
//! paper's claims (arXiv 2411.03312 §3–4) reproduced:
//!
//! 1. visual reasoning: α > β (error moves faster with N than with V), so at Q = 0 the compute-optimal
//!    V is the fewest tokens (the closed-form optimum V* = β·Q/(α − β) of
//!    `scaling::frontier::closed_form_visual_tokens` is 0) — one claim, since the second follows from
//!    the first; with a bootstrap it needs disjoint intervals (α's lower end above β's upper end) and
//!    neither exponent on its lower bound 0 (the softplus floor, where the fit says "no effect", not
//!    a measured value);
//! 2. the fine-detail task has a relatively larger β (β/α above the reasoning task's; with a
//!    bootstrap, the interval of the difference of the two ratios over paired resamples excludes 0);
//! 3. QueCC beats the query-free compressor at V = 1 on the reasoning task (in at least 5 of every 6
//!    matched cells, mean score gain ≥ [`ReportOptions::quecc_min_gain`]; V = 4 is reported beside);
//! 4. leave-one-size-out: the law fitted without the largest LLM predicts its cells within
//!    `holdout_tolerance` mean relative error (the paper: "less than 2 %").
//!
//! A claim is only tested on cells that read the image: with the sweep's cell results
//! ([`ReportOptions::sweep`]), every LLM size's cell at the largest V must beat its blind prior (the
//! most frequent training answer per family) by [`ReportOptions::prior_margin`]; otherwise the
//! task's claims are "not tested" and the evidence lists the cells.
//!
//! The fit is `scaling::fit::fit` with the same options as `vlmscale fit` (multiplicative law, T = V,
//! the paper's grid, bootstrap 200 resamples at 95 % with seed 0, leave-one-N-out), on the rows
//! `vlmscale fit --data CSV --task T --compressor C` selects, so the two agree exactly; each task's fit
//! report is also written as `fit_<task>.json` (what `vlmscale fit --out` writes) and the frontier for
//! Q = 0 and Q = the task's mean question length as `frontier_<task>.json` (what `vlmscale frontier
//! --fit fit_<task>.json … --json` prints); `report.md` lists those commands.
use crate::error::{io, Result};
use crate::grid::{ReportNames, SweepConfig};
use crate::runner::{failure_path, read_result, CellResult};
use scaling::data::{Dataset, Observation};
use scaling::fit::grid::GridSpec;
use scaling::fit::{fit, FitOptions, FitReport};
use scaling::frontier::{closed_form_visual_tokens, logspace, Domain, FrontierSpec, Optimum, PaperCost};
use scaling::law::{Law, TokenAxis};
use scaling::plot::Figure1;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How to fit and judge.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Names of the task families and compressors the claims refer to.
    pub names: ReportNames,
    /// Bootstrap resamples for the confidence intervals (0: none; `vlmscale fit`'s default is 200).
    pub bootstrap: usize,
    /// Bootstrap seed (`vlmscale fit`'s default is 0).
    pub seed: u64,
    /// Fitting grid (`None`: the paper's).
    pub grid: Option<GridSpec>,
    /// Largest mean relative error |predicted − observed| / observed of the held-out LLM's cells
    /// that counts as reproduced (the paper: 2 %).
    pub holdout_tolerance: f64,
    /// How much a task's largest-V cells must beat their blind prior for its claims to be tested.
    pub prior_margin: f64,
    /// Smallest mean score gain of QueCC over the query-free compressor at V = 1.
    pub quecc_min_gain: f64,
    /// Draw the Figure-1 plots.
    pub plots: bool,
    /// A line printed at the top of the report (e.g. that the scores come from the synthetic runner).
    pub note: Option<String>,
    /// Budgets per frontier table (log-spaced over the grid's cost range).
    pub frontier_budgets: usize,
    /// The sweep the CSV came from: when given, the cell table lists every grid cell (finished,
    /// failed or missing) with the details of its result JSON, and the report compares the scores with
    /// the blind-prior baseline the train runner records.
    pub sweep: Option<SweepConfig>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            names: ReportNames::default(),
            bootstrap: 200,
            seed: 0,
            grid: None,
            holdout_tolerance: 0.02,
            prior_margin: 0.05,
            quecc_min_gain: 0.02,
            plots: true,
            note: None,
            frontier_budgets: 7,
            sweep: None,
        }
    }
}

/// Whether a claim reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// The data agree with the paper.
    Reproduced,
    /// The data contradict the paper.
    NotReproduced,
    /// The sweep has no cells to test it (e.g. no query-free compressor in the grid).
    NotTested,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "NOT reproduced",
            Verdict::NotTested => "not tested",
        })
    }
}

/// One of the paper's claims with its verdict and the numbers behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    /// Short key (`alpha_gt_beta`, `fine_detail_larger_beta`, `quecc_beats_query_free`,
    /// `leave_one_size_out_<task>`).
    pub key: String,
    /// The claim in words.
    pub claim: String,
    /// Verdict.
    pub verdict: Verdict,
    /// The numbers behind the verdict.
    pub evidence: String,
}

/// The compute-optimal frontier of one task's law at one Q (what `vlmscale frontier --json` prints for
/// the same law, Q, domains and budgets).
#[derive(Debug, Clone, Serialize)]
pub struct FrontierTable {
    /// The law (the task's refined fit).
    pub law: Law,
    /// Q, text tokens per query.
    pub text_tokens: f64,
    /// N domain (billions): the grid's range of N.
    pub sizes: Domain,
    /// V domain: the grid's range of V.
    pub tokens: Domain,
    /// The continuous optimum V* = β·Q/(α − β) (`None` when α ≤ β).
    pub closed_form_visual_tokens: Option<f64>,
    /// The budgets (FLOPs per query, 2·N·(Q + V)): log-spaced from the grid's cheapest to its most
    /// expensive cell.
    pub budgets: Vec<f64>,
    /// The optimum per budget.
    pub optima: Vec<Option<Optimum>>,
}

impl FrontierTable {
    /// The `vlmscale frontier` command that prints the same table from the task's saved fit report
    /// `fit_file` (`fit_<task>.json`).
    pub fn cli_args(&self, fit_file: &str) -> String {
        let range = |d: &Domain| match d {
            Domain::Range { min, max } => format!("{min},{max}"),
            Domain::Set(v) => v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
        };
        let (lo, hi) = (self.budgets.first().copied().unwrap_or(0.0), self.budgets.last().copied().unwrap_or(0.0));
        format!(
            "vlmscale frontier --fit {fit_file} --text-tokens {} --llm-range {} --visual-range {} --budget-range {lo},{hi},{} --json",
            self.text_tokens,
            range(&self.sizes),
            range(&self.tokens),
            self.budgets.len()
        )
    }
}

/// The frontier of `law` over the N and V range of `rows` at Q = `q`, `k` log-spaced budgets.
///
/// Errors: `scaling::Error::Invalid` for an empty selection.
pub fn frontier_table(law: Law, rows: &Dataset, q: f64, k: usize) -> Result<FrontierTable> {
    let sizes = rows.llm_sizes();
    let vs: Vec<f64> = rows.rows.iter().map(|r| r.visual_tokens).collect();
    let (vmin, vmax) = (vs.iter().cloned().fold(f64::INFINITY, f64::min), vs.iter().cloned().fold(0.0, f64::max));
    let (nmin, nmax) = (sizes[0], sizes[sizes.len() - 1]);
    let spec = FrontierSpec {
        law,
        axis: TokenAxis::Visual,
        text_tokens: q,
        sizes: Domain::Range { min: nmin, max: nmax },
        tokens: Domain::Range { min: vmin, max: vmax },
    };
    let cost = |n: f64, v: f64| scaling::cost::paper_flops(n * 1e9, q, v);
    let budgets = logspace(cost(nmin, vmin), cost(nmax, vmax), k.max(1));
    let optima = budgets.iter().map(|&b| spec.optimum(&PaperCost, b)).collect::<scaling::Result<Vec<_>>>()?;
    Ok(FrontierTable {
        law,
        text_tokens: q,
        sizes: spec.sizes,
        tokens: spec.tokens,
        closed_form_visual_tokens: closed_form_visual_tokens(law.alpha(), law.beta(), q),
        budgets,
        optima,
    })
}

/// The analysis of one aggregate CSV.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// Fit per task (on the rows of the compressor named in [`Analysis::fit_compressor`]).
    pub fits: BTreeMap<String, FitReport>,
    /// Compressor whose cells each task's law was fitted on (`None`: the CSV has no compressor column
    /// or a single compressor).
    pub fit_compressor: BTreeMap<String, Option<String>>,
    /// Tasks whose fit failed, with the reason.
    pub fit_errors: BTreeMap<String, String>,
    /// Mean Q per task (text tokens).
    pub text_tokens: BTreeMap<String, f64>,
    /// Frontier per fitted task: for Q = 0 and Q = the task's mean question length.
    pub frontiers: BTreeMap<String, Vec<FrontierTable>>,
    /// The verdicts.
    pub claims: Vec<Claim>,
    /// The sweep's cells ([`ReportOptions::sweep`]), read once for the prior check and the tables.
    #[serde(skip)]
    pub cells: Option<Vec<SweepCellRow>>,
}

impl Analysis {
    /// The `vlmscale fit` arguments that reproduce `task`'s fit from `csv` (same rows, same options).
    pub fn fit_cli_args(&self, task: &str, csv: &str, opts: &ReportOptions) -> String {
        let comp =
            self.fit_compressor.get(task).cloned().flatten().map(|c| format!(" --compressor {c}")).unwrap_or_default();
        format!(
            "vlmscale fit --data {csv} --task {task}{comp} --bootstrap {} --seed {} --json",
            opts.bootstrap, opts.seed
        )
    }
}

fn compressors(ds: &Dataset) -> Vec<String> {
    let mut c: Vec<String> = ds.rows.iter().filter_map(|r| r.compressor.clone()).collect();
    c.sort();
    c.dedup();
    c
}

/// The rows a task's law is fitted on: the cells of [`ReportNames::law_compressor`] when present (the
/// paper's TokenPacker by default), else the QueCC cells, else the first compressor's (sorted by
/// name), else all rows.
fn fit_rows(ds: &Dataset, task: &str, names: &ReportNames) -> Result<(Dataset, Option<String>)> {
    let all = ds.select(Some(task), None)?;
    let comps = compressors(&all);
    let pick = [&names.law_compressor, &names.quecc]
        .into_iter()
        .find(|c| comps.contains(c))
        .cloned()
        .or_else(|| comps.first().cloned());
    match &pick {
        Some(c) if comps.len() > 1 => Ok((all.select(Some(task), Some(c))?, pick)),
        _ => Ok((all, pick)),
    }
}

/// ` [95% CI lo, hi]`: the bootstrap interval of parameter `key` (`alpha`, `beta`, …) of `rep`, or
/// `""` when the fit has no bootstrap or no such parameter.
pub fn interval(rep: &FitReport, key: &str) -> String {
    rep.bootstrap
        .as_ref()
        .and_then(|b| b.intervals.get(key).map(|[lo, hi]| format!(" [{:.0}% CI {lo:.4}, {hi:.4}]", b.level * 100.0)))
        .unwrap_or_default()
}

/// Fits the law per task and judges the claims.
///
/// Errors: `scaling::Error::Dataset` when the CSV has no rows. A task whose fit fails (e.g. a single
/// LLM size) or whose cells all have the same score (nothing to fit: every exponent explains it) is
/// recorded in [`Analysis::fit_errors`] and its claims are `NotTested`.
pub fn analyse(ds: &Dataset, opts: &ReportOptions) -> Result<Analysis> {
    let cells = match &opts.sweep {
        Some(cfg) => Some(sweep_cells(cfg)?),
        None => None,
    };
    let names = &opts.names;
    let fopts = FitOptions {
        axis: TokenAxis::Visual,
        grid: opts.grid.clone(),
        bootstrap: opts.bootstrap,
        seed: opts.seed,
        holdout: true,
        ..FitOptions::default()
    };
    let mut a = Analysis {
        fits: BTreeMap::new(),
        fit_compressor: BTreeMap::new(),
        fit_errors: BTreeMap::new(),
        text_tokens: BTreeMap::new(),
        frontiers: BTreeMap::new(),
        claims: Vec::new(),
        cells,
    };
    for task in ds.tasks() {
        let (rows, comp) = fit_rows(ds, &task, names)?;
        let q = rows.rows.iter().map(|r| r.text_tokens).sum::<f64>() / rows.rows.len() as f64;
        a.text_tokens.insert(task.clone(), q);
        a.fit_compressor.insert(task.clone(), comp);
        let (lo, hi) =
            rows.rows.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), r| (a.min(r.error), b.max(r.error)));
        if hi - lo < 1e-12 {
            a.fit_errors.insert(
                task.clone(),
                format!(
                    "all {} cells have the same score ({:.4}): the law's exponents are not identifiable",
                    rows.rows.len(),
                    1.0 - lo
                ),
            );
            continue;
        }
        match fit(&rows, &task, &fopts) {
            Ok(rep) => {
                let tables = [0.0, q]
                    .iter()
                    .map(|&qv| frontier_table(rep.law(), &rows, qv, opts.frontier_budgets))
                    .collect::<Result<Vec<_>>>()?;
                a.frontiers.insert(task.clone(), tables);
                a.fits.insert(task, rep);
            }
            Err(e) => {
                a.fit_errors.insert(task, e.to_string());
            }
        }
    }
    // Claims are only tested on tasks whose VLMs read the image.
    let blind: BTreeMap<String, String> = ds
        .tasks()
        .into_iter()
        .filter_map(|t| {
            let comp = a.fit_compressor.get(&t).cloned().flatten();
            // A task group ([task_groups]) reads the image when each of its member tasks does.
            let members =
                opts.sweep.as_ref().and_then(|s| s.task_groups.get(&t).cloned()).unwrap_or_else(|| vec![t.clone()]);
            let cells = a.cells.as_deref()?;
            let failing: Vec<String> =
                members.iter().filter_map(|m| below_prior(cells, m, comp.as_deref(), opts.prior_margin)).collect();
            (!failing.is_empty()).then(|| (t, failing.join("; ")))
        })
        .collect();
    let gate = |task: &str| {
        blind.get(task).map(|e| format!("`{task}` does not read the image, so its fit is not evidence: {e}"))
    };
    let untested = |key: &str, claim: &str, why: String| Claim {
        key: key.into(),
        claim: claim.into(),
        verdict: Verdict::NotTested,
        evidence: why,
    };
    let no_fit = |task: &str| match a.fit_errors.get(task) {
        Some(e) => format!("the law could not be fitted for task `{task}`: {e}"),
        None => format!("the CSV has no task `{task}`"),
    };
    let judge = |ok: bool| if ok { Verdict::Reproduced } else { Verdict::NotReproduced };
    let reasoning = names.reasoning_task.as_str();

    // 1: reasoning α > β, hence the Q = 0 optimum at the fewest tokens.
    let c1 = "visual reasoning: α > β (error falls faster with LLM size N than with visual tokens V), so at Q = 0 the compute-optimal V is the fewest visual tokens";
    match (a.fits.get(reasoning), gate(reasoning)) {
        (_, Some(why)) => a.claims.push(untested("alpha_gt_beta", c1, why)),
        (None, None) => a.claims.push(untested("alpha_gt_beta", c1, no_fit(reasoning))),
        (Some(rep), None) => {
            let law = rep.law();
            let (al, be) = (law.alpha(), law.beta());
            let mut ok = al > be;
            let mut ev = format!(
                "α = {al:.4}{}{}, β = {be:.4}{}{}",
                interval(rep, "alpha"),
                on_bound(al),
                interval(rep, "beta"),
                on_bound(be)
            );
            if al < EXPONENT_FLOOR || be < EXPONENT_FLOOR {
                ok = false;
            }
            match rep.bootstrap.as_ref().map(|b| (b.intervals.get("alpha"), b.intervals.get("beta"))) {
                Some((Some([alo, _]), Some([_, bhi]))) => {
                    let disjoint = alo > bhi;
                    ok &= disjoint;
                    ev += &format!(
                        "; intervals {} (α's lower end {alo:.4} vs β's upper end {bhi:.4})",
                        if disjoint { "disjoint" } else { "overlap" }
                    );
                }
                _ => ev += "; no bootstrap: intervals not compared",
            }
            let vmin =
                ds.select(Some(reasoning), None)?.rows.iter().map(|r| r.visual_tokens).fold(f64::INFINITY, f64::min);
            let q = a.text_tokens[reasoning];
            let at = |q: f64| scaling::frontier::closed_form_visual_tokens(al, be, q);
            ev += &match (at(0.0), at(q)) {
                (Some(v0), Some(vq)) => format!(
                    "; closed-form optimum V* = β·Q/(α − β): V* = {v0:.3} at Q = 0 (→ the grid's fewest, V = {vmin}); V* = {vq:.2} at the task's mean Q = {q:.1}"
                ),
                _ => "; α ≤ β: more visual tokens always pay at a fixed budget, the optimum is at the most tokens".into(),
            };
            a.claims.push(Claim { key: "alpha_gt_beta".into(), claim: c1.into(), verdict: judge(ok), evidence: ev });
        }
    }

    // 2: fine-detail relatively larger β.
    let c2 = "the fine-detail task has a relatively larger β (β/α above visual reasoning's: more tokens pay off)";
    let fine = names.fine_detail_task.as_str();
    match (a.fits.get(fine), a.fits.get(reasoning), gate(fine).or_else(|| gate(reasoning))) {
        (_, _, Some(why)) => a.claims.push(untested("fine_detail_larger_beta", c2, why)),
        (Some(f), Some(r), None) => {
            let (lf, lr) = (f.law(), r.law());
            let ratio_of = |l: &Law| if l.alpha() < ALPHA_ZERO { f64::INFINITY } else { l.beta() / l.alpha() };
            let (rf, rr) = (ratio_of(&lf), ratio_of(&lr));
            // β/α is unbounded when a fit puts α at 0 (no measurable N effect): then the ratios are
            // not comparable and the claim is not tested.
            let show = |x: f64| if x.is_finite() { format!("{x:.3}") } else { "unbounded (α ≈ 0)".to_string() };
            let comparable = rf.is_finite() && rr.is_finite();
            let mut ev = format!(
                "`{fine}`: α = {:.4}, β = {:.4}, β/α = {}; `{reasoning}`: α = {:.4}, β = {:.4}, β/α = {}",
                lf.alpha(),
                lf.beta(),
                show(rf),
                lr.alpha(),
                lr.beta(),
                show(rr)
            );
            let mut ok = rf > rr;
            if let (Some(bf), Some(br)) = (&f.bootstrap, &r.bootstrap) {
                let diffs: Vec<f64> = bf.laws.iter().zip(&br.laws).map(|(x, y)| ratio_of(x) - ratio_of(y)).collect();
                let [lo, hi] = percentile_interval(diffs, bf.level);
                ok &= lo > 0.0;
                ev += &format!(
                    "; difference of β/α over {} paired resamples: [{:.0}% CI {lo:.3}, {hi:.3}]",
                    bf.laws.len().min(br.laws.len()),
                    bf.level * 100.0
                );
            } else {
                ev += "; no bootstrap: the difference's interval is not checked";
            }
            a.claims.push(Claim {
                key: "fine_detail_larger_beta".into(),
                claim: c2.into(),
                verdict: if comparable { judge(ok) } else { Verdict::NotTested },
                evidence: ev,
            });
        }
        (None, _, None) => a.claims.push(untested("fine_detail_larger_beta", c2, no_fit(fine))),
        (_, None, None) => a.claims.push(untested("fine_detail_larger_beta", c2, no_fit(reasoning))),
    }

    // 3: QueCC vs query-free at V = 1 (V = 4 reported beside), on the reasoning task.
    let c3 = format!(
        "QueCC (`{}`) beats the query-free compressor (`{}`) at V = 1 on `{reasoning}` (≥ 5 of 6 matched cells, mean gain ≥ {})",
        names.quecc, names.query_free, opts.quecc_min_gain
    );
    let key = |r: &Observation| (r.llm_params.to_bits(), r.visual_tokens.to_bits());
    let task_rows = |c: &str| -> Vec<&Observation> {
        ds.rows.iter().filter(|r| r.task == reasoning && r.compressor.as_deref() == Some(c)).collect()
    };
    let qf: BTreeMap<_, f64> = task_rows(&names.query_free).into_iter().map(|r| (key(r), r.error)).collect();
    let mut parts = Vec::new();
    let mut at_one = (0usize, 0usize, 0.0f64);
    for v in [1.0, 4.0] {
        let (mut w, mut p, mut gap) = (0, 0, 0.0);
        for r in task_rows(&names.quecc).into_iter().filter(|r| r.visual_tokens == v) {
            if let Some(&e) = qf.get(&key(r)) {
                p += 1;
                gap += e - r.error;
                w += (r.error < e) as usize;
            }
        }
        if p > 0 {
            parts.push(format!(
                "V = {v}: QueCC better in {w} of {p} matched cells (mean score gain {:+.4})",
                gap / p as f64
            ));
        } else {
            parts.push(format!("V = {v}: no matched cells"));
        }
        if v == 1.0 {
            at_one = (w, p, if p > 0 { gap / p as f64 } else { 0.0 });
        }
    }
    let (w, p, gain) = at_one;
    if let Some(why) = gate(reasoning) {
        a.claims.push(untested("quecc_beats_query_free", &c3, why));
    } else if p == 0 {
        a.claims.push(untested(
            "quecc_beats_query_free",
            &c3,
            format!("no cells with both compressors at V = 1 ({})", parts.join("; ")),
        ));
    } else {
        let ok = 6 * w >= 5 * p && gain >= opts.quecc_min_gain;
        a.claims.push(Claim {
            key: "quecc_beats_query_free".into(),
            claim: c3,
            verdict: judge(ok),
            evidence: parts.join("; "),
        });
    }

    // 4: leave-one-size-out, the paper's relative criterion.
    for task in [reasoning, fine] {
        let k = format!("leave_one_size_out_{task}");
        let c = format!(
            "`{task}`: the law fitted without the largest LLM predicts its cells within {:.0} % mean relative error",
            100.0 * opts.holdout_tolerance
        );
        match (a.fits.get(task).map(|r| &r.leave_one_n_out), gate(task)) {
            (_, Some(why)) => a.claims.push(untested(&k, &c, why)),
            (Some(Some(h)), None) => a.claims.push(Claim {
                key: k,
                verdict: judge(h.mean_rel_error <= opts.holdout_tolerance),
                claim: c,
                evidence: format!(
                    "held out N = {} B: mean relative gap = {:.2} %, mean |gap| = {:.4}, max |gap| = {:.4}",
                    h.held_out_llm_params,
                    100.0 * h.mean_rel_error,
                    h.mean_abs_error,
                    h.max_abs_error
                ),
            }),
            (Some(None), None) => {
                a.claims.push(untested(&k, &c, "leave-one-size-out needs at least three LLM sizes".into()))
            }
            (None, None) => a.claims.push(untested(&k, &c, no_fit(task))),
        }
    }
    Ok(a)
}

/// The Markdown table of every row of the CSV, in file order.
pub fn cells_table(ds: &Dataset) -> String {
    let mut s = String::from(
        "| # | N (B) | V | Q | score | error | task | compressor |\n|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    for (i, r) in ds.rows.iter().enumerate() {
        s += &format!(
            "| {i} | {} | {} | {:.1} | {:.4} | {:.4} | {} | {} |\n",
            r.llm_params,
            r.visual_tokens,
            r.text_tokens,
            1.0 - r.error,
            r.error,
            r.task,
            r.compressor.as_deref().unwrap_or("")
        );
    }
    s
}

/// One grid cell in the report's cell table: its identity, status and (when finished) its result.
#[derive(Debug, Clone, Serialize)]
pub struct SweepCellRow {
    /// Cell index.
    pub index: usize,
    /// Cell id.
    pub cell_id: String,
    /// Task.
    pub task: String,
    /// LLM preset name.
    pub llm: String,
    /// N, billions.
    pub llm_params: f64,
    /// V.
    pub visual_tokens: u64,
    /// Compressor.
    pub compressor: String,
    /// `done`, `failed` (a failure record exists) or `missing` (not run yet).
    pub status: String,
    /// The result, when done.
    pub result: Option<CellResult>,
}

impl SweepCellRow {
    fn detail(&self, key: &str) -> Option<f64> {
        self.result.as_ref().and_then(|r| r.details.as_ref()).and_then(|d| d.get(key)).and_then(|v| v.as_f64())
    }
}

/// Every cell of `cfg`'s grid with its status and result.
///
/// Errors: those of [`read_result`] (a corrupt or mismatched cell JSON names its file).
pub fn sweep_cells(cfg: &SweepConfig) -> Result<Vec<SweepCellRow>> {
    let dir = cfg.cells_dir();
    cfg.cells()
        .into_iter()
        .map(|c| {
            let result = read_result(&dir, &c)?;
            let status = if result.is_some() {
                "done"
            } else if failure_path(&dir, &c).exists() {
                "failed"
            } else {
                "missing"
            };
            Ok(SweepCellRow {
                index: c.index,
                cell_id: c.id,
                task: c.task,
                llm: c.llm,
                llm_params: c.llm_params,
                visual_tokens: c.visual_tokens,
                compressor: c.compressor,
                status: status.into(),
                result,
            })
        })
        .collect()
}

/// An exponent below this sits on its lower bound 0: the softplus reparametrisation's floor, where the
/// fit reports "no measurable effect" rather than a measured value.
pub const EXPONENT_FLOOR: f64 = 1e-4;

/// `" (on its bound 0: not a measurement)"` for an exponent at [`EXPONENT_FLOOR`], else `""`.
fn on_bound(x: f64) -> &'static str {
    if x < EXPONENT_FLOOR {
        " (on its bound 0: the fit's floor, not a measurement)"
    } else {
        ""
    }
}

/// The two-sided percentile interval at `level` of the finite values (NaN when none).
fn percentile_interval(mut v: Vec<f64>, level: f64) -> [f64; 2] {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let q = (1.0 - level) / 2.0;
    [scaling::fit::bootstrap::quantile(&v, q), scaling::fit::bootstrap::quantile(&v, 1.0 - q)]
}

/// Evidence that `task`'s VLMs do not read the image: the LLM sizes whose cell at the largest V (of
/// `compressor`, when given) does not beat its blind prior by `margin`; `None` when every size's
/// does, or when no cell records a blind prior (nothing to check).
fn below_prior(cells: &[SweepCellRow], task: &str, compressor: Option<&str>, margin: f64) -> Option<String> {
    let mut best: BTreeMap<u64, &SweepCellRow> = BTreeMap::new();
    for c in cells.iter().filter(|c| c.task == task && compressor.is_none_or(|k| c.compressor == k)) {
        if c.result.is_some() && c.detail("blind_prior_accuracy").is_some() {
            let e = best.entry(c.llm_params.to_bits()).or_insert(c);
            if c.visual_tokens > e.visual_tokens {
                *e = c;
            }
        }
    }
    let failing: Vec<String> = best
        .values()
        .filter_map(|c| {
            let (score, prior) = (c.result.as_ref()?.score, c.detail("blind_prior_accuracy")?);
            (score - prior < margin)
                .then(|| format!("{} scores {score:.3} against a blind prior of {prior:.3}", c.cell_id))
        })
        .collect();
    (!failing.is_empty()).then(|| format!("{} (margin {margin})", failing.join("; ")))
}

/// Below this, a fitted α counts as 0 (no measurable effect of N) and β/α as unbounded, so the
/// fine-detail claim (β/α larger than reasoning's) is reported as not tested.
pub const ALPHA_ZERO: f64 = 1e-6;

/// Header of [`sweep_cells_csv`].
pub const CELLS_CSV_HEADER: &str = "index,cell_id,task,llm,llm_params,visual_tokens,compressor,status,text_tokens,score,error,blind_prior_accuracy,final_loss,train_seconds,eval_seconds,wall_seconds,runner,stage1_score";

/// The cell table as CSV ([`CELLS_CSV_HEADER`]; N in billions; empty fields for cells without a result
/// or a detail their runner does not record). Numbers in Rust's shortest round-trip form, so `score`
/// is byte-identical to the aggregate CSV's.
pub fn sweep_cells_csv(rows: &[SweepCellRow]) -> String {
    let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let mut s = format!("{CELLS_CSV_HEADER}\n");
    for c in rows {
        let r = c.result.as_ref();
        s += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            c.index,
            c.cell_id,
            c.task,
            c.llm,
            c.llm_params,
            c.visual_tokens,
            c.compressor,
            c.status,
            opt(r.map(|r| r.text_tokens)),
            opt(r.map(|r| r.score)),
            opt(r.map(|r| 1.0 - r.score)),
            opt(c.detail("blind_prior_accuracy")),
            opt(c.detail("final_loss")),
            opt(c.detail("train_seconds")),
            opt(c.detail("eval_seconds")),
            opt(r.map(|r| r.wall_seconds)),
            r.map(|r| r.runner.clone()).unwrap_or_default(),
            opt(c.detail("stage1_score"))
        );
    }
    s
}

/// The cell table as Markdown (same content as [`sweep_cells_csv`], rounded for reading).
pub fn sweep_cells_md(rows: &[SweepCellRow]) -> String {
    let f = |x: Option<f64>, d: usize| x.map(|v| format!("{v:.d$}")).unwrap_or_else(|| "–".into());
    let mut s = String::from(
        "| # | cell | N (B) | V | compressor | status | Q | score | score after stage 1 | per family | blind prior | final loss | train s | eval s | wall s |\n|---:|---|---:|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|\n",
    );
    for c in rows {
        let r = c.result.as_ref();
        let families = r
            .map(|r| r.family_accuracy.iter().map(|(k, v)| format!("{k} {v:.3}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|| "–".into());
        s += &format!(
            "| {} | {} | {:.3e} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.index,
            c.cell_id,
            c.llm_params,
            c.visual_tokens,
            c.compressor,
            c.status,
            f(r.map(|r| r.text_tokens), 0),
            f(r.map(|r| r.score), 4),
            f(c.detail("stage1_score"), 4),
            families,
            f(c.detail("blind_prior_accuracy"), 4),
            f(c.detail("final_loss"), 4),
            f(c.detail("train_seconds"), 1),
            f(c.detail("eval_seconds"), 1),
            f(r.map(|r| r.wall_seconds), 1)
        );
    }
    s
}

/// Per task, the finished cells' scores as a table of LLM sizes (rows, grid order) by V and compressor
/// (columns, in grid order): `score` at the end of training, followed by the score at the end of
/// stage 1 (compressor and projector trained, the LLM as pretrained) in brackets when the cell
/// recorded one. Empty when no cell is finished.
pub fn score_tables(rows: &[SweepCellRow]) -> String {
    let mut tasks: Vec<&str> = Vec::new();
    for c in rows.iter().filter(|c| c.result.is_some()) {
        if !tasks.contains(&c.task.as_str()) {
            tasks.push(&c.task);
        }
    }
    let mut s = String::new();
    for task in tasks {
        let cells: Vec<&SweepCellRow> = rows.iter().filter(|c| c.task == task).collect();
        let mut cols: Vec<(&str, u64)> = Vec::new();
        let mut llms: Vec<(&str, f64)> = Vec::new();
        for c in &cells {
            if !cols.contains(&(c.compressor.as_str(), c.visual_tokens)) {
                cols.push((&c.compressor, c.visual_tokens));
            }
            if !llms.iter().any(|l| l.0 == c.llm) {
                llms.push((&c.llm, c.llm_params));
            }
        }
        cols.sort_by_key(|&(comp, v)| (cells.iter().position(|c| c.compressor == comp).unwrap_or(0), v));
        s += &format!("\n**`{task}`**\n\n| LLM | N (B) |");
        for (comp, v) in &cols {
            s += &format!(" {comp} V = {v} |");
        }
        s += &format!("\n|---|---:|{}\n", "---:|".repeat(cols.len()));
        for (llm, n) in &llms {
            s += &format!("| {llm} | {n:.3e} |");
            for (comp, v) in &cols {
                let cell = cells.iter().find(|c| c.llm == *llm && c.compressor == *comp && c.visual_tokens == *v);
                let text = match cell.and_then(|c| c.result.as_ref().map(|r| (r.score, c.detail("stage1_score")))) {
                    Some((sc, Some(s1))) => format!("{sc:.3} ({s1:.3})"),
                    Some((sc, None)) => format!("{sc:.3}"),
                    None => "–".into(),
                };
                s += &format!(" {text} |");
            }
            s += "\n";
        }
    }
    s
}

/// The training-loss curves of a sweep's finished cells, one figure per (task, LLM size) in grid
/// order: `curves_<task>_<llm>.{png,svg}` in `out`, a curve per cell (shade by V, dashed for
/// `query_free`), read from the loss log the trainer keeps beside each cell's checkpoint
/// (`cells/<id>/model/trainer_state.json`, `train::checkpoint_io::TrainerState::losses`). Cells
/// without that file (another runner) are left out. Returns the files written.
///
/// Errors: a trainer state that exists but cannot be read, named; [`scaling::Error::Plot`].
pub fn write_learning_curves(
    cfg: &SweepConfig,
    rows: &[SweepCellRow],
    query_free: &str,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let vmax = rows.iter().map(|c| c.visual_tokens).max().unwrap_or(1).max(2) as f64;
    let mut groups: Vec<((String, String), Vec<scaling::plot::Curve>, usize)> = Vec::new();
    for c in rows.iter().filter(|c| c.result.is_some()) {
        let state = cfg
            .cells_dir()
            .join(&c.cell_id)
            .join(crate::train_runner::CELL_MODEL_DIR)
            .join(train::checkpoint_io::TRAINER_STATE_FILE);
        let text = match std::fs::read_to_string(&state) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&state)(e)),
        };
        let losses = serde_json::from_str::<train::checkpoint_io::TrainerState>(&text)
            .map_err(|e| crate::Error::CellFile { path: state.clone(), msg: e.to_string() })?
            .losses;
        let stage1 = c
            .result
            .as_ref()
            .and_then(|r| r.settings.as_ref())
            .and_then(|s| s.get("stage1_steps"))
            .and_then(|x| x.as_u64())
            .unwrap_or(0) as usize;
        let curve = scaling::plot::Curve {
            label: format!("V = {} {}", c.visual_tokens, c.compressor),
            shade: (c.visual_tokens as f64).ln() / vmax.ln(),
            dashed: c.compressor == query_free,
            losses,
        };
        let key = (c.task.clone(), c.llm.clone());
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => {
                g.1.push(curve);
                g.2 = g.2.max(stage1);
            }
            None => groups.push((key, vec![curve], stage1)),
        }
    }
    let mut files = Vec::new();
    for ((task, llm), curves, stage1_steps) in groups {
        let longest = curves.iter().map(|c| c.losses.len()).max().unwrap_or(0);
        let fig = scaling::plot::LearningCurves {
            title: format!("{task}, LLM {llm}: training loss per cell"),
            curves,
            window: (longest / 60).max(1),
            stage1_steps,
        };
        files.extend(fig.write(&out.join(format!("curves_{task}_{llm}")))?);
    }
    Ok(files)
}

/// Mean, min and max of the finished cells' wall time per LLM size, in grid order: (llm, N, cells,
/// mean s, min s, max s).
pub fn wall_time_per_size(rows: &[SweepCellRow]) -> Vec<(String, f64, usize, f64, f64, f64)> {
    let mut out: Vec<(String, f64, Vec<f64>)> = Vec::new();
    for c in rows {
        let Some(r) = &c.result else { continue };
        match out.iter_mut().find(|o| o.0 == c.llm) {
            Some(o) => o.2.push(r.wall_seconds),
            None => out.push((c.llm.clone(), c.llm_params, vec![r.wall_seconds])),
        }
    }
    out.into_iter()
        .map(|(l, n, w)| {
            let k = w.len();
            (
                l,
                n,
                k,
                w.iter().sum::<f64>() / k as f64,
                w.iter().cloned().fold(f64::INFINITY, f64::min),
                w.iter().cloned().fold(0.0, f64::max),
            )
        })
        .collect()
}

/// Per task: (cells with a blind-prior baseline, mean score, mean blind-prior accuracy, cells whose
/// score beats their baseline by more than 0.02).
pub fn training_quality(rows: &[SweepCellRow]) -> BTreeMap<String, (usize, f64, f64, usize)> {
    let mut m: BTreeMap<String, (usize, f64, f64, usize)> = BTreeMap::new();
    for c in rows {
        let (Some(r), Some(p)) = (&c.result, c.detail("blind_prior_accuracy")) else { continue };
        let e = m.entry(c.task.clone()).or_default();
        e.0 += 1;
        e.1 += r.score;
        e.2 += p;
        e.3 += (r.score > p + 0.02) as usize;
    }
    for e in m.values_mut() {
        e.1 /= e.0 as f64;
        e.2 /= e.0 as f64;
    }
    m
}

/// The Markdown report. `cells`: the sweep's cell table when known ([`ReportOptions::sweep`]).
pub fn markdown(
    a: &Analysis,
    source: &str,
    opts: &ReportOptions,
    plots: &[PathBuf],
    cells: Option<&[SweepCellRow]>,
) -> String {
    let mut s = String::from("# vlmscale sweep report\n\n");
    if let Some(n) = &opts.note {
        s += &format!("**{n}**\n\n");
    }
    s += &format!("Scores: `{source}`. Law: Y = A·N^−α·V^−β + D (N in billions, Y = 1 − score), fitted per task.\n\n");
    s += "## Claims of the paper\n\n| claim | verdict | evidence |\n|---|---|---|\n";
    for c in &a.claims {
        s += &format!("| {} | **{}** | {} |\n", cell_text(&c.claim), c.verdict, cell_text(&c.evidence));
    }
    if let Some(rows) = cells {
        let q = training_quality(rows);
        if !q.is_empty() {
            s += "\n## Do the trained VLMs read the image?\n\nBlind prior = always answering the most frequent training answer of the question's family (a model that ignores the image).\n\n| task | cells | mean score | mean blind prior | cells > prior + 0.02 |\n|---|---:|---:|---:|---:|\n";
            for (t, (k, sc, p, above)) in &q {
                s += &format!("| {t} | {k} | {sc:.4} | {p:.4} | {above} |\n");
            }
            for (t, (k, sc, p, above)) in &q {
                if *above * 2 < *k || sc - p < 0.02 {
                    s += &format!(
                        "\n**Caveat (`{t}`):** most cells do not beat the blind-prior baseline (mean score {sc:.3}, blind prior {p:.3}): these VLMs have not learned to use the visual tokens, so the fitted exponents describe noise around (or below) the prior, not a scaling law of visual understanding. Verdicts above for `{t}` are not evidence for or against the paper.\n"
                    );
                }
            }
        }
    }
    if let Some(rows) = cells {
        let t = score_tables(rows);
        if !t.is_empty() {
            s += "\n## Scores by LLM and visual tokens\n\nHeld-out accuracy at the end of training; in brackets, at the end of stage 1 (compressor and projector trained, the LLM still as pretrained): how much of what the LLM knows reaches the VLM before the LLM itself is trained. Per-family accuracies of every cell are in [cells.md](cells.md).\n";
            s += &t;
        }
    }
    s += "\n## Fitted laws\n\n| task | fitted on | cells | A | α | β | D | R² | α/β |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (task, rep) in &a.fits {
        let l = rep.law();
        let p = l.params();
        s += &format!(
            "| {task} | {} | {} | {:.4} | {:.4}{} | {:.4}{} | {:.4} | {:.4} | {:.2} |\n",
            a.fit_compressor[task].as_deref().unwrap_or("all"),
            rep.cells,
            p[0],
            p[1],
            interval(rep, "alpha"),
            p[2],
            interval(rep, "beta"),
            p[3],
            rep.refined.r2,
            rep.refined.alpha_over_beta
        );
    }
    for (task, e) in &a.fit_errors {
        s += &format!("\nTask `{task}`: not fitted ({e}).\n");
    }
    for (task, tables) in &a.frontiers {
        s += &format!("\n## Compute-optimal frontier: `{task}`\n\nCost 2·N·(Q + V) FLOPs per query; N and V continuous over the grid's range.\n");
        for t in tables {
            let cf = match t.closed_form_visual_tokens {
                Some(v) => format!("closed form V* = β·Q/(α − β) = {v:.2}"),
                None => "α ≤ β: no interior optimum, more visual tokens always pay".into(),
            };
            s += &format!(
                "\n**Q = {}** ({cf})\n\n| budget (FLOPs) | N* (B) | V* | predicted error |\n|---:|---:|---:|---:|\n",
                t.text_tokens
            );
            for (b, o) in t.budgets.iter().zip(&t.optima) {
                match o {
                    Some(o) => {
                        s += &format!(
                            "| {b:.3e} | {:.3e} | {:.2} | {:.4} |\n",
                            o.llm_params, o.visual_tokens, o.predicted_error
                        )
                    }
                    None => s += &format!("| {b:.3e} | – | – | (too small) |\n"),
                }
            }
        }
    }
    if !a.fits.is_empty() {
        s += "\n## Check by hand\n\nThe same code path as `vlmscale fit` / `vlmscale frontier`; these commands print the numbers above (`fit_<task>.json`: the fit report next to this file):\n\n```\n";
        for (task, tables) in &a.frontiers {
            s += &format!("{}\n", a.fit_cli_args(task, source, opts));
            for t in tables {
                s += &format!("{}\n", t.cli_args(&format!("fit_{task}.json")));
            }
        }
        s += "```\n";
    }
    if let Some(rows) = cells {
        let w = wall_time_per_size(rows);
        if !w.is_empty() {
            s += "\n## Measured wall time per cell (training + evaluation)\n\n| LLM | N (B) | cells | mean s | min s | max s |\n|---|---:|---:|---:|---:|---:|\n";
            for (l, n, k, mean, lo, hi) in &w {
                s += &format!("| {l} | {n:.3e} | {k} | {mean:.1} | {lo:.1} | {hi:.1} |\n");
            }
        }
    }
    let png = |p: &&PathBuf| p.extension().is_some_and(|e| e == "png");
    let name_of = |p: &PathBuf| p.file_name().unwrap_or_default().to_string_lossy().to_string();
    let figure1: Vec<&PathBuf> = plots.iter().filter(png).filter(|p| name_of(p).starts_with("figure1_")).collect();
    let curves: Vec<&PathBuf> = plots.iter().filter(png).filter(|p| name_of(p).starts_with("curves_")).collect();
    if !figure1.is_empty() {
        s += "\n## Figure 1 (error vs inference FLOPs)\n\n";
        for p in figure1 {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            s += &format!("![{name}]({name})\n\n");
        }
    }
    if !curves.is_empty() {
        s += "\n## Learning curves\n\nTraining loss of every cell (nats per answer token, mean over windows of steps), one figure per task and LLM size; the dotted line marks the end of stage 1.\n\n";
        for p in curves {
            let name = name_of(p);
            s += &format!("![{name}]({name})\n\n");
        }
    }
    s += "\nEvery cell: [cells.md](cells.md)";
    if cells.is_some() {
        s += " ([cells.csv](cells.csv))";
    }
    s += ". Fitted parameters: [fits.json](fits.json) (all tasks, with the verdicts), `fit_<task>.json` (per task, as `vlmscale fit --out` writes), `frontier_<task>.json`.\n";
    s
}

/// Reads the aggregate CSV, analyses it and writes into `out`: `report.md`, `cells.md` (with
/// [`ReportOptions::sweep`]: every grid cell, also as `cells.csv`), `fits.json` (the [`Analysis`]:
/// fit reports per task, frontiers and the verdicts), `fit_<task>.json` and `frontier_<task>.json`
/// per fitted task and, with `opts.plots`, `figure1_<task>_q0.{png,svg}` and
/// `figure1_<task>_q<Q>.{png,svg}` (Q = the task's mean question length). Returns the analysis and
/// the files written.
///
/// Errors: `scaling::Error::{Io, Data, Dataset}` for an unreadable or invalid CSV; `scaling::Error::Plot`;
/// [`crate::Error::Io`] if `out` cannot be created; those of [`sweep_cells`].
pub fn write_report(csv: &Path, opts: &ReportOptions, out: &Path) -> Result<(Analysis, Vec<PathBuf>)> {
    let mut ds = Dataset::from_path(csv)?;
    // Every file names the scores by their path from the report folder.
    ds.source = relative_to(csv, out).display().to_string();
    let a = analyse(&ds, opts)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    remove_previous_outputs(out)?;
    let mut files = Vec::new();
    let mut plots = Vec::new();
    if opts.plots {
        for (task, rep) in &a.fits {
            let (rows, _) = fit_rows(&ds, task, &opts.names)?;
            let q = a.text_tokens[task];
            for (tag, qv) in [("q0".to_string(), 0.0), (format!("q{}", q.round()), q)] {
                let fig = Figure1 {
                    law: rep.law(),
                    axis: TokenAxis::Visual,
                    text_tokens: qv,
                    data: rows.clone(),
                    title: format!("{task}: error vs inference FLOPs (Q = {qv:.0})"),
                };
                plots.extend(fig.write(&out.join(format!("figure1_{task}_{tag}")))?);
            }
        }
    }
    let write = |name: &str, text: String, files: &mut Vec<PathBuf>| -> Result<()> {
        let p = out.join(name);
        scaling::output::write_atomic(&p, text.as_bytes())?;
        files.push(p);
        Ok(())
    };
    write("fits.json", pretty(&a), &mut files)?;
    for (task, rep) in &a.fits {
        write(&format!("fit_{task}.json"), pretty(rep), &mut files)?;
    }
    for (task, t) in &a.frontiers {
        write(&format!("frontier_{task}.json"), pretty(t), &mut files)?;
    }
    let cells = a.cells.clone();
    if let (true, Some(cfg), Some(rows)) = (opts.plots, &opts.sweep, &cells) {
        plots.extend(write_learning_curves(cfg, rows, &opts.names.query_free, out)?);
    }
    match &cells {
        Some(rows) => {
            write("cells.csv", sweep_cells_csv(rows), &mut files)?;
            write(
                "cells.md",
                format!(
                    "# Every cell of sweep `{}`\n\n{}",
                    opts.sweep.as_ref().map(|c| c.name.as_str()).unwrap_or(""),
                    sweep_cells_md(rows)
                ),
                &mut files,
            )?;
        }
        None => write("cells.md", format!("# Every cell of `{}`\n\n{}", ds.source, cells_table(&ds)), &mut files)?,
    }
    write("report.md", markdown(&a, &ds.source, opts, &plots, cells.as_deref()), &mut files)?;
    files.extend(plots);
    Ok((a, files))
}

/// Removes the per-task files and figures a previous report left in `out` (`fit_*.json`,
/// `frontier_*.json`, `figure1_*`), so a task that can no longer be fitted leaves nothing stale
/// beside the new `report.md`. Errors: I/O.
fn remove_previous_outputs(out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(out).map_err(io(out))? {
        let path = entry.map_err(io(out))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
        let ours = (name.starts_with("fit_") || name.starts_with("frontier_")) && name.ends_with(".json")
            || name.starts_with("figure1_")
            || name.starts_with("curves_");
        if ours && path.is_file() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// `path` relative to the folder `base` (both made absolute first), for files that must not carry a
/// machine's absolute paths; `path` unchanged when no relative form exists.
pub fn relative_to(path: &Path, base: &Path) -> PathBuf {
    match (std::path::absolute(path), std::path::absolute(base)) {
        (Ok(p), Ok(b)) => pathdiff::diff_paths(&p, &b).unwrap_or(p),
        _ => path.to_path_buf(),
    }
}

/// `text` for a Markdown table cell (`|` escaped).
fn cell_text(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Pretty JSON of a report value (these types always serialise: plain numbers, strings and maps).
fn pretty<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("report values serialise")
}
