//! The paper's experiment end to end (`vlmscale reproduce`): run every unfinished cell of a sweep
//! ([`crate::sweep::run_sweep`], resumable), aggregate the scores CSV ([`crate::aggregate`]), fit the
//! law per task family and write the report ([`crate::report::write_report`], with the sweep's cell
//! table), plus `reproduce.json` (what this invocation did and how long it took).
use crate::aggregate::{write_aggregate, Aggregate};
use crate::error::Result;
use crate::grid::SweepConfig;
use crate::report::{write_report, Analysis, ReportOptions, Verdict};
use crate::runner::CellRunner;
use crate::sweep::{run_sweep, SweepSummary};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// How to reproduce.
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// Cells run at once.
    pub jobs: usize,
    /// Show the sweep's progress bar on stderr.
    pub progress: bool,
    /// How to fit and judge (its `sweep` field is set to the config by [`reproduce`]).
    pub report: ReportOptions,
    /// Where the report goes.
    pub report_dir: PathBuf,
    /// Wall time the caller spent preparing the sweep before [`reproduce`] (the vision tower's
    /// pretraining), seconds; counted in [`Reproduction::total_seconds`] and the report.
    pub setup_seconds: f64,
}

/// What [`reproduce`] did (also written as `<report_dir>/reproduce.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Reproduction {
    /// Sweep name.
    pub sweep: String,
    /// The config file.
    pub config: PathBuf,
    /// Results folder (cells, aggregate CSV, tower).
    pub results_dir: PathBuf,
    /// The sweep's outcome in this invocation.
    pub summary: SweepSummary,
    /// The aggregate CSV written.
    pub aggregate: Aggregate,
    /// The analysis (`None` when no cell has finished).
    #[serde(skip)]
    pub analysis: Option<Analysis>,
    /// Report files written.
    pub files: Vec<PathBuf>,
    /// Wall time of this invocation's sweep (cells run now), seconds.
    pub sweep_seconds: f64,
    /// Wall time of aggregation + fit + report, seconds.
    pub report_seconds: f64,
    /// Wall time of the preparation before the sweep (vision tower), seconds.
    pub setup_seconds: f64,
    /// setup + sweep + report, seconds.
    pub total_seconds: f64,
    /// Cells run at once.
    pub jobs: usize,
}

/// Runs the sweep, aggregates, fits and reports. Cell failures do not stop it: the report covers the
/// finished cells and [`Reproduction::summary`] lists the failed ones.
///
/// Errors: [`crate::Error::Stale`] when finished cells were produced with other settings than the
/// config's (or by another runner) — then nothing is aggregated or reported, so an earlier report is
/// not overwritten with results that do not match the config; those of [`run_sweep`] (corrupt cell
/// results, unwritable results folder), of [`write_aggregate`] and of [`write_report`] (invalid CSV,
/// plots, unwritable report folder).
pub fn reproduce(cfg: &SweepConfig, runner: &dyn CellRunner, opts: &ReproduceOptions) -> Result<Reproduction> {
    let t0 = Instant::now();
    let summary = run_sweep(cfg, runner, opts.jobs, opts.progress)?;
    let sweep_seconds = t0.elapsed().as_secs_f64();
    if let Some((_, first)) = summary.stale.first() {
        return Err(crate::Error::Stale {
            path: cfg.cells_dir(),
            msg: format!(
                "{} finished cells were produced with other settings than {} asks for (first: {first}); nothing was aggregated or reported",
                summary.stale.len(),
                cfg.path.display()
            ),
        });
    }
    let t1 = Instant::now();
    let aggregate = write_aggregate(cfg)?;
    let (analysis, mut files) = if aggregate.rows > 0 {
        let ropts = ReportOptions { sweep: Some(cfg.clone()), ..opts.report.clone() };
        let (a, f) = write_report(&aggregate.path, &ropts, &opts.report_dir)?;
        (Some(a), f)
    } else {
        std::fs::create_dir_all(&opts.report_dir).map_err(crate::error::io(&opts.report_dir))?;
        (None, Vec::new())
    };
    let report_seconds = t1.elapsed().as_secs_f64();
    let total_seconds = opts.setup_seconds + sweep_seconds + report_seconds;
    if analysis.is_some() {
        // The wall time of this invocation, tower included, at the end of the report.
        let md = opts.report_dir.join("report.md");
        let mut text = std::fs::read_to_string(&md).map_err(crate::error::io(&md))?;
        text += &format!(
            "\nWall time of this invocation: {:.0} s (vision tower {:.0} s, cells {:.0} s with {} at once, fit + report {:.0} s).\n",
            total_seconds, opts.setup_seconds, sweep_seconds, opts.jobs, report_seconds
        );
        scaling::output::write_atomic(&md, text.as_bytes())?;
    }
    let mut rep = Reproduction {
        sweep: cfg.name.clone(),
        config: cfg.path.clone(),
        results_dir: cfg.results_dir.clone(),
        summary,
        aggregate,
        analysis,
        files: Vec::new(),
        sweep_seconds,
        report_seconds,
        setup_seconds: opts.setup_seconds,
        total_seconds,
        jobs: opts.jobs,
    };
    let path = opts.report_dir.join("reproduce.json");
    files.push(path.clone());
    rep.files = files;
    // The file speaks in paths relative to the report folder (no machine's absolute paths).
    let rel = |p: &PathBuf| crate::report::relative_to(p, &opts.report_dir);
    let on_disk = Reproduction {
        config: rel(&rep.config),
        results_dir: rel(&rep.results_dir),
        files: rep.files.iter().map(rel).collect(),
        aggregate: Aggregate { path: rel(&rep.aggregate.path), ..rep.aggregate.clone() },
        ..rep.clone()
    };
    let json = serde_json::to_string_pretty(&on_disk).expect("Reproduction serialises");
    scaling::output::write_atomic(&path, json.as_bytes())?;
    Ok(rep)
}

/// The verdict of every claim for each seed of a multi-seed reproduction, and overall.
#[derive(Debug, Clone, Serialize)]
pub struct SeedVerdicts {
    /// The sweep seeds, in run order.
    pub seeds: Vec<u64>,
    /// Claim key → (claim text, verdict per seed (in `seeds` order; `None` when that seed has no
    /// analysis), overall verdict).
    pub claims: BTreeMap<String, (String, Vec<Option<Verdict>>, String)>,
}

/// Collects each seed's verdicts. Overall: the common verdict when every seed agrees, else `mixed`
/// (a claim that holds for some seeds only is not a reproduction).
pub fn seed_verdicts(runs: &[(u64, &Reproduction)]) -> SeedVerdicts {
    let mut claims: BTreeMap<String, (String, Vec<Option<Verdict>>, String)> = BTreeMap::new();
    for (i, (_, r)) in runs.iter().enumerate() {
        for c in r.analysis.iter().flat_map(|a| &a.claims) {
            let e =
                claims.entry(c.key.clone()).or_insert_with(|| (c.claim.clone(), vec![None; runs.len()], String::new()));
            e.1[i] = Some(c.verdict);
        }
    }
    for (_, per_seed, overall) in claims.values_mut() {
        *overall = match per_seed.first().copied().flatten() {
            Some(v) if per_seed.iter().all(|x| *x == Some(v)) => v.to_string(),
            _ => "mixed".into(),
        };
    }
    SeedVerdicts { seeds: runs.iter().map(|(s, _)| *s).collect(), claims }
}

/// The Markdown table of [`seed_verdicts`], with links to each seed's report (`seed<k>/report/report.md`
/// relative to the results folder).
pub fn seeds_markdown(v: &SeedVerdicts, total_seconds: f64) -> String {
    let mut s = String::from("# vlmscale reproduce: verdicts across seeds\n\nEach seed is a full run of the grid with its own cell seed (initialisation, batch order, training data), held-out split and vision tower.\n\n| claim |");
    for seed in &v.seeds {
        s += &format!(" [seed {seed}](../seed{seed}/report/report.md) |");
    }
    s += " overall |\n|---|";
    s += &"---|".repeat(v.seeds.len() + 1);
    s += "\n";
    for (claim, per_seed, overall) in v.claims.values() {
        s += &format!("| {} |", claim.replace('|', "\\|"));
        for x in per_seed {
            s += &format!(" {} |", x.map(|v| v.to_string()).unwrap_or_else(|| "no analysis".into()));
        }
        s += &format!(" **{overall}** |\n");
    }
    s += &format!("\nWall time of all seeds: {total_seconds:.0} s.\n");
    s
}
