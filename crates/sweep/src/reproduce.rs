//! The paper's experiment end to end (`vlmscale reproduce`): run every unfinished cell of a sweep
//! ([`crate::sweep::run_sweep`], resumable), aggregate the scores CSV ([`crate::aggregate`]), fit the
//! law per task family and write the report ([`crate::report::write_report`], with the sweep's cell
//! table), plus `reproduce.json` (what this invocation did and how long it took).
use crate::aggregate::{write_aggregate, Aggregate};
use crate::error::Result;
use crate::grid::SweepConfig;
use crate::report::{write_report, Analysis, ReportOptions};
use crate::runner::CellRunner;
use crate::sweep::{run_sweep, SweepSummary};
use serde::Serialize;
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
    let mut rep = Reproduction {
        sweep: cfg.name.clone(),
        config: cfg.path.clone(),
        results_dir: cfg.results_dir.clone(),
        summary,
        aggregate,
        analysis,
        files: Vec::new(),
        sweep_seconds,
        report_seconds: t1.elapsed().as_secs_f64(),
        jobs: opts.jobs,
    };
    let path = opts.report_dir.join("reproduce.json");
    files.push(path.clone());
    rep.files = files;
    let json = serde_json::to_string_pretty(&rep).expect("Reproduction serialises");
    scaling::output::write_atomic(&path, json.as_bytes())?;
    Ok(rep)
}
