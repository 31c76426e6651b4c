//! The sweep's report: the paper's law Y = A·N^−α·V^−β + D fitted per task family on the aggregate
//! CSV (scaling crate, T = V as in the authors' `objective.py`), Figure-1-style plots, the fitted
//! parameters as JSON, a Markdown table of every cell, and a Markdown report that states which of the
//! paper's claims (arXiv 2411.03312 §3–4) reproduced:
//!
//! 1. visual reasoning: α > β (error moves faster with N than with V);
//! 2. visual reasoning: at Q = 0 the compute-optimal V is the fewest tokens (the closed-form optimum
//!    V* = β·Q/(α − β) of `scaling::frontier::closed_form_visual_tokens` is 0);
//! 3. the fine-detail task has a relatively larger β (β/α above the reasoning task's);
//! 4. QueCC beats the query-free compressor at V = 1 and V = 4 (every matched pair of cells);
//! 5. leave-one-size-out: the law fitted without the largest LLM predicts its error within
//!    `holdout_tolerance` (the paper: "less than 2 %").
use crate::error::{io, Result};
use crate::grid::ReportNames;
use scaling::data::{Dataset, Observation};
use scaling::fit::grid::GridSpec;
use scaling::fit::{fit, FitOptions, FitReport};
use scaling::law::TokenAxis;
use scaling::plot::Figure1;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How to fit and judge.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Names of the task families and compressors the claims refer to.
    pub names: ReportNames,
    /// Bootstrap resamples for the confidence intervals (0: none).
    pub bootstrap: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// Fitting grid (`None`: the paper's).
    pub grid: Option<GridSpec>,
    /// Largest mean |predicted − observed| error of the held-out LLM that counts as reproduced.
    pub holdout_tolerance: f64,
    /// Draw the Figure-1 plots.
    pub plots: bool,
    /// A line printed at the top of the report (e.g. that the scores come from the synthetic runner).
    pub note: Option<String>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            names: ReportNames::default(),
            bootstrap: 100,
            seed: 0,
            grid: None,
            holdout_tolerance: 0.02,
            plots: true,
            note: None,
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
    /// Short key (`alpha_gt_beta`, `q0_fewest_tokens`, `fine_detail_larger_beta`, `quecc_beats_query_free`,
    /// `leave_one_size_out_<task>`).
    pub key: String,
    /// The claim in words.
    pub claim: String,
    /// Verdict.
    pub verdict: Verdict,
    /// The numbers behind the verdict.
    pub evidence: String,
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
    /// The verdicts.
    pub claims: Vec<Claim>,
}

fn compressors(ds: &Dataset) -> Vec<String> {
    let mut c: Vec<String> = ds.rows.iter().filter_map(|r| r.compressor.clone()).collect();
    c.sort();
    c.dedup();
    c
}

/// The rows a task's law is fitted on: the QueCC cells when present, else the first compressor's
/// (sorted by name), else all rows.
fn fit_rows(ds: &Dataset, task: &str, names: &ReportNames) -> Result<(Dataset, Option<String>)> {
    let all = ds.select(Some(task), None)?;
    let comps = compressors(&all);
    let pick = if comps.contains(&names.quecc) { Some(names.quecc.clone()) } else { comps.first().cloned() };
    match &pick {
        Some(c) if comps.len() > 1 => Ok((all.select(Some(task), Some(c))?, pick)),
        _ => Ok((all, pick)),
    }
}

fn interval(rep: &FitReport, key: &str) -> String {
    rep.bootstrap
        .as_ref()
        .and_then(|b| b.intervals.get(key).map(|[lo, hi]| format!(" [{:.0}% CI {lo:.4}, {hi:.4}]", b.level * 100.0)))
        .unwrap_or_default()
}

/// Fits the law per task and judges the claims.
///
/// Errors: `scaling::Error::Dataset` when the CSV has no rows. A task whose fit fails (e.g. a single
/// LLM size) is recorded in [`Analysis::fit_errors`] and its claims are `NotTested`.
pub fn analyse(ds: &Dataset, opts: &ReportOptions) -> Result<Analysis> {
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
        claims: Vec::new(),
    };
    for task in ds.tasks() {
        let (rows, comp) = fit_rows(ds, &task, names)?;
        let q = rows.rows.iter().map(|r| r.text_tokens).sum::<f64>() / rows.rows.len() as f64;
        a.text_tokens.insert(task.clone(), q);
        a.fit_compressor.insert(task.clone(), comp);
        match fit(&rows, &task, &fopts) {
            Ok(rep) => {
                a.fits.insert(task, rep);
            }
            Err(e) => {
                a.fit_errors.insert(task, e.to_string());
            }
        }
    }
    let untested = |key: &str, claim: &str, why: String| Claim { key: key.into(), claim: claim.into(), verdict: Verdict::NotTested, evidence: why };
    let no_fit = |task: &str| match a.fit_errors.get(task) {
        Some(e) => format!("the law could not be fitted for task `{task}`: {e}"),
        None => format!("the CSV has no task `{task}`"),
    };
    let judge = |ok: bool| if ok { Verdict::Reproduced } else { Verdict::NotReproduced };

    // 1, 2: reasoning α > β; Q = 0 optimum at the fewest tokens.
    let c1 = "visual reasoning: α > β (error falls faster with LLM size N than with visual tokens V)";
    let c2 = "visual reasoning: at Q = 0 the compute-optimal V is the fewest visual tokens";
    match a.fits.get(&names.reasoning_task) {
        Some(rep) => {
            let law = rep.law();
            let (al, be) = (law.alpha(), law.beta());
            a.claims.push(Claim {
                key: "alpha_gt_beta".into(),
                claim: c1.into(),
                verdict: judge(al > be),
                evidence: format!("α = {al:.4}{}, β = {be:.4}{}", interval(rep, "alpha"), interval(rep, "beta")),
            });
            let vmin = ds.select(Some(&names.reasoning_task), None)?.rows.iter().map(|r| r.visual_tokens).fold(f64::INFINITY, f64::min);
            let q = a.text_tokens[&names.reasoning_task];
            let at = |q: f64| scaling::frontier::closed_form_visual_tokens(al, be, q);
            let ev = match (at(0.0), at(q)) {
                (Some(v0), Some(vq)) => format!(
                    "closed-form optimum V* = β·Q/(α − β): V* = {v0:.3} at Q = 0 (→ the grid's fewest, V = {vmin}); V* = {vq:.2} at the task's mean Q = {q:.1}"
                ),
                _ => "α ≤ β: more visual tokens always pay at a fixed budget, the optimum is at the most tokens".into(),
            };
            a.claims.push(Claim { key: "q0_fewest_tokens".into(), claim: c2.into(), verdict: judge(at(0.0).is_some_and(|v| v <= 0.0)), evidence: ev });
        }
        None => {
            a.claims.push(untested("alpha_gt_beta", c1, no_fit(&names.reasoning_task)));
            a.claims.push(untested("q0_fewest_tokens", c2, no_fit(&names.reasoning_task)));
        }
    }

    // 3: fine-detail relatively larger β.
    let c3 = "the fine-detail task has a relatively larger β (β/α above visual reasoning's: more tokens pay off)";
    match (a.fits.get(&names.fine_detail_task), a.fits.get(&names.reasoning_task)) {
        (Some(f), Some(r)) => {
            let (lf, lr) = (f.law(), r.law());
            let (rf, rr) = (lf.beta() / lf.alpha(), lr.beta() / lr.alpha());
            a.claims.push(Claim {
                key: "fine_detail_larger_beta".into(),
                claim: c3.into(),
                verdict: judge(rf > rr),
                evidence: format!(
                    "`{}`: α = {:.4}, β = {:.4}, β/α = {rf:.3}; `{}`: α = {:.4}, β = {:.4}, β/α = {rr:.3}",
                    names.fine_detail_task,
                    lf.alpha(),
                    lf.beta(),
                    names.reasoning_task,
                    lr.alpha(),
                    lr.beta()
                ),
            });
        }
        (None, _) => a.claims.push(untested("fine_detail_larger_beta", c3, no_fit(&names.fine_detail_task))),
        (_, None) => a.claims.push(untested("fine_detail_larger_beta", c3, no_fit(&names.reasoning_task))),
    }

    // 4: QueCC vs query-free at V = 1 and V = 4.
    let c4 = format!("QueCC (`{}`) beats the query-free compressor (`{}`) at V = 1 and V = 4", names.quecc, names.query_free);
    let key = |r: &Observation| (r.task.clone(), r.llm_params.to_bits(), r.visual_tokens.to_bits());
    let mut qf: BTreeMap<_, f64> = BTreeMap::new();
    for r in ds.rows.iter().filter(|r| r.compressor.as_deref() == Some(names.query_free.as_str())) {
        qf.insert(key(r), r.error);
    }
    let mut parts = Vec::new();
    let (mut wins, mut pairs) = (0, 0);
    for v in [1.0, 4.0] {
        let (mut w, mut p, mut gap) = (0, 0, 0.0);
        for r in ds.rows.iter().filter(|r| r.visual_tokens == v && r.compressor.as_deref() == Some(names.quecc.as_str())) {
            if let Some(&e) = qf.get(&key(r)) {
                p += 1;
                gap += e - r.error;
                if r.error < e {
                    w += 1;
                }
            }
        }
        if p > 0 {
            parts.push(format!("V = {v}: QueCC better in {w} of {p} matched cells (mean score gain {:+.4})", gap / p as f64));
        } else {
            parts.push(format!("V = {v}: no matched cells"));
        }
        wins += w;
        pairs += p;
    }
    if pairs == 0 {
        a.claims.push(untested("quecc_beats_query_free", &c4, format!("no cells with both compressors at V = 1 or 4 ({})", parts.join("; "))));
    } else {
        a.claims.push(Claim { key: "quecc_beats_query_free".into(), claim: c4, verdict: judge(wins == pairs), evidence: parts.join("; ") });
    }

    // 5: leave-one-size-out.
    for task in [&names.reasoning_task, &names.fine_detail_task] {
        let k = format!("leave_one_size_out_{task}");
        let c = format!(
            "`{task}`: the law fitted without the largest LLM predicts its error within {:.3} (mean |gap|)",
            opts.holdout_tolerance
        );
        match a.fits.get(task.as_str()).map(|r| &r.leave_one_n_out) {
            Some(Some(h)) => a.claims.push(Claim {
                key: k,
                verdict: judge(h.mean_abs_error <= opts.holdout_tolerance),
                claim: c,
                evidence: format!(
                    "held out N = {} B: mean |gap| = {:.4}, max |gap| = {:.4}, mean relative gap = {:.1} %",
                    h.held_out_llm_params,
                    h.mean_abs_error,
                    h.max_abs_error,
                    100.0 * h.mean_rel_error
                ),
            }),
            Some(None) => a.claims.push(untested(&k, &c, "leave-one-size-out needs at least three LLM sizes".into())),
            None => a.claims.push(untested(&k, &c, no_fit(task))),
        }
    }
    Ok(a)
}

/// The Markdown table of every row of the CSV, in file order.
pub fn cells_table(ds: &Dataset) -> String {
    let mut s = String::from("| # | N (B) | V | Q | score | error | task | compressor |\n|---:|---:|---:|---:|---:|---:|---|---|\n");
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

/// The Markdown report.
pub fn markdown(a: &Analysis, source: &str, opts: &ReportOptions, plots: &[PathBuf]) -> String {
    let mut s = String::from("# vlmscale sweep report\n\n");
    if let Some(n) = &opts.note {
        s += &format!("**{n}**\n\n");
    }
    s += &format!("Scores: `{source}`. Law: Y = A·N^−α·V^−β + D (N in billions, Y = 1 − score), fitted per task.\n\n");
    s += "## Claims of the paper\n\n| claim | verdict | evidence |\n|---|---|---|\n";
    for c in &a.claims {
        s += &format!("| {} | **{}** | {} |\n", c.claim, c.verdict, c.evidence);
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
    if !plots.is_empty() {
        s += "\n## Figure 1 (error vs inference FLOPs)\n\n";
        for p in plots.iter().filter(|p| p.extension().is_some_and(|e| e == "png")) {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            s += &format!("![{name}]({name})\n\n");
        }
    }
    s += "\nEvery cell: [cells.md](cells.md). Fitted parameters: [fits.json](fits.json).\n";
    s
}

/// Reads the aggregate CSV, analyses it and writes into `out`: `report.md`, `cells.md`, `fits.json`
/// (the [`Analysis`]: fit reports per task and the verdicts) and, with `opts.plots`,
/// `figure1_<task>_q0.{png,svg}` and `figure1_<task>_q<Q>.{png,svg}` (Q = the task's mean question
/// length). Returns the analysis and the files written.
///
/// Errors: `scaling::Error::{Io, Data, Dataset}` for an unreadable or invalid CSV; `scaling::Error::Plot`;
/// [`crate::Error::Io`] if `out` cannot be created.
pub fn write_report(csv: &Path, opts: &ReportOptions, out: &Path) -> Result<(Analysis, Vec<PathBuf>)> {
    let ds = Dataset::from_path(csv)?;
    let a = analyse(&ds, opts)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
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
    write("fits.json", serde_json::to_string_pretty(&a).expect("Analysis serialises"), &mut files)?;
    write("cells.md", format!("# Every cell of `{}`\n\n{}", csv.display(), cells_table(&ds)), &mut files)?;
    write("report.md", markdown(&a, &csv.display().to_string(), opts, &plots), &mut files)?;
    files.extend(plots);
    Ok((a, files))
}
