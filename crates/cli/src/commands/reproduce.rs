//! `vlmscale reproduce`: the paper's experiment end to end on this CPU — the default (or quick)
//! grid sweep with real training, the scaling law fitted per task family, α and β with bootstrap
//! intervals, the compute-optimal frontier for Q = 0 and Q = the mean question length, and a report
//! folder stating which of the paper's claims reproduced (crate `sweep`, module `reproduce`).
use super::sweep::{load, lock, prepare, runner, set_threads, usage, Common, RunnerKind, SYNTHETIC_NOTE};
use super::UsageError;
use anyhow::Result;
use std::path::PathBuf;

/// The committed default sweep (used when `sweeps/default.toml` is not under the current folder).
const DEFAULT_TOML: &str = include_str!("../../../../sweeps/default.toml");
/// The committed quick sweep.
const QUICK_TOML: &str = include_str!("../../../../sweeps/quick.toml");

/// Run the paper's experiment: sweep (resumable), fit per task, frontier, report with verdicts.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The quick sweep (sweeps/quick.toml: 2 LLM sizes × 2 V, few steps; ~1 minute) instead of the
    /// default one (sweeps/default.toml; about an hour on 2 cores).
    #[arg(long, conflicts_with = "config")]
    pub quick: bool,
    /// Another sweep config (TOML; schema in sweeps/default.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Results folder (cells, aggregate.csv, the vision tower); the report goes to DIR/report.
    /// Default: the config's results_dir. Rerunning with the same folder resumes.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Cells trained at once.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Compute threads per cell (default: cores / --jobs, at least 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run the whole grid for this many seeds (the config's seed, +1, …): each seed has its own cell
    /// seed (initialisation, batch order, training data), held-out split and vision tower, and its
    /// results in DIR/seed<S>/; DIR/report/seeds.md gives every claim's verdict per seed and overall.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// Bootstrap resamples for the confidence intervals (as `vlmscale fit`).
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// (tests) who trains a cell; `synthetic` is a test/demo law, no training.
    #[arg(long, value_enum, default_value_t = RunnerKind::Train, hide = true)]
    pub runner: RunnerKind,
}

/// The config to use: `--config`, else `sweeps/<name>.toml` under the current folder, else the copy
/// built into the binary (anchored at `./sweeps/`, so its results go to `./results/<name>`).
fn config_path(a: &Args) -> Result<(PathBuf, Option<&'static str>)> {
    if let Some(p) = &a.config {
        return Ok((p.clone(), None));
    }
    let (file, text) = if a.quick { ("quick.toml", QUICK_TOML) } else { ("default.toml", DEFAULT_TOML) };
    let p = PathBuf::from("sweeps").join(file);
    if p.is_file() {
        Ok((p, None))
    } else {
        Ok((std::path::absolute(&p)?, Some(text)))
    }
}

pub fn run(a: Args) -> Result<()> {
    if a.jobs == 0 {
        return Err(UsageError("--jobs must be at least 1".into()).into());
    }
    set_threads(a.threads, a.jobs)?;
    let (path, embedded) = config_path(&a)?;
    let common = Common {
        config: Some(path.clone()),
        results_dir: a.out.clone(),
        runner: a.runner,
        synthetic_fail: vec![],
        synthetic_delay_ms: 0,
    };
    let (cfg, text) = match embedded {
        Some(text) => {
            let mut cfg = sweep::grid::SweepConfig::from_toml_str(text, &path).map_err(usage)?;
            if let Some(d) = &a.out {
                cfg.results_dir = std::path::absolute(d)?;
            }
            eprintln!(
                "using the built-in {} (no {} here)",
                path.file_name().unwrap_or_default().to_string_lossy(),
                path.display()
            );
            (cfg, text.to_string())
        }
        None => {
            let cfg = load(&common)?;
            let text = std::fs::read_to_string(&path)?;
            (cfg, text)
        }
    };
    let synthetic = a.runner == RunnerKind::Synthetic;
    // One run of the grid per seed; with several, each in its own folder.
    let base = cfg.results_dir.clone();
    let t0 = std::time::Instant::now();
    let mut runs = Vec::new();
    for k in 0..a.seeds {
        let mut cfg = cfg.clone();
        if a.seeds > 1 {
            cfg.seed = cfg.seed.wrapping_add(k);
            cfg.results_dir = base.join(format!("seed{}", cfg.seed));
        }
        let report_dir = cfg.results_dir.join("report");
        let r = runner(&common, &cfg)?;
        eprintln!(
            "reproduce `{}` (seed {}): {} cells, {} at once, {} compute thread(s) each; results in {}",
            cfg.name,
            cfg.seed,
            cfg.cells().len(),
            a.jobs,
            std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
            cfg.results_dir.display()
        );
        let guard = lock(&cfg, r.as_ref())?;
        let t_setup = std::time::Instant::now();
        prepare(&common, &cfg)?;
        let opts = sweep::reproduce::ReproduceOptions {
            jobs: a.jobs,
            progress: true,
            report: sweep::report::ReportOptions {
                names: cfg.report.clone(),
                bootstrap: a.bootstrap,
                note: synthetic.then(|| SYNTHETIC_NOTE.to_string()),
                ..Default::default()
            },
            report_dir: report_dir.clone(),
            setup_seconds: t_setup.elapsed().as_secs_f64(),
        };
        let rep = sweep::reproduce::reproduce(&cfg, r.as_ref(), &opts)?;
        scaling::output::write_atomic(&report_dir.join("sweep.toml"), text.as_bytes())?;
        drop(guard);
        print!("{}", render(&rep));
        runs.push((cfg.seed, rep));
    }
    if a.seeds > 1 {
        let refs: Vec<(u64, &sweep::reproduce::Reproduction)> = runs.iter().map(|(s, r)| (*s, r)).collect();
        let v = sweep::reproduce::seed_verdicts(&refs);
        let dir = base.join("report");
        std::fs::create_dir_all(&dir)?;
        let md = sweep::reproduce::seeds_markdown(&v, t0.elapsed().as_secs_f64());
        scaling::output::write_atomic(&dir.join("seeds.md"), md.as_bytes())?;
        scaling::output::write_atomic(&dir.join("seeds.json"), serde_json::to_string_pretty(&v)?.as_bytes())?;
        println!("\n{md}\nverdicts across seeds: {}", dir.join("seeds.md").display());
    }
    if synthetic {
        println!("NOTE: {SYNTHETIC_NOTE}");
    }
    for (_, rep) in runs {
        rep.summary.into_result()?;
    }
    Ok(())
}

/// The summary printed at the end.
fn render(rep: &sweep::reproduce::Reproduction) -> String {
    let s_ = &rep.summary;
    let mut s = format!(
        "reproduce `{}`: {} cells — {} already finished (skipped), {} ran now, {} failed; sweep {:.1} s, fit + report {:.1} s\n",
        rep.sweep,
        s_.total,
        s_.skipped,
        s_.ran,
        s_.failed.len(),
        rep.sweep_seconds,
        rep.report_seconds
    );
    for (id, e) in &s_.failed {
        s += &format!("FAILED {id}: {e}\n");
    }
    s += &format!(
        "aggregate: {} ({} of {} cells)\n",
        rep.aggregate.path.display(),
        rep.aggregate.rows,
        rep.aggregate.total
    );
    let Some(a) = &rep.analysis else {
        s += "no finished cell: nothing to fit\n";
        return s;
    };
    for (task, fit) in &a.fits {
        let ci = |k: &str| sweep::report::interval(fit, k);
        let l = fit.law();
        s += &format!(
            "\n{task} (fitted on {}, {} cells): α = {:.4}{}, β = {:.4}{}, α/β = {:.2}, R² = {:.3}\n",
            a.fit_compressor.get(task).cloned().flatten().unwrap_or_else(|| "all rows".into()),
            fit.cells,
            l.alpha(),
            ci("alpha"),
            l.beta(),
            ci("beta"),
            fit.refined.alpha_over_beta,
            fit.refined.r2
        );
        for t in a.frontiers.get(task).into_iter().flatten() {
            let cf = t
                .closed_form_visual_tokens
                .map(|v| format!("closed-form V* = {v:.2}"))
                .unwrap_or_else(|| "α ≤ β: no interior optimum".into());
            s += &format!(
                "  frontier at Q = {} ({cf}):\n  {:>12} {:>12} {:>8} {:>10}\n",
                t.text_tokens, "budget", "N* (B)", "V*", "pred. err"
            );
            for (b, o) in t.budgets.iter().zip(&t.optima) {
                match o {
                    Some(o) => {
                        s += &format!(
                            "  {b:>12.3e} {:>12.3e} {:>8.2} {:>10.4}\n",
                            o.llm_params, o.visual_tokens, o.predicted_error
                        )
                    }
                    None => s += &format!("  {b:>12.3e} {:>12} {:>8} {:>10}\n", "-", "-", "too small"),
                }
            }
        }
    }
    for (task, e) in &a.fit_errors {
        s += &format!("\n{task}: not fitted ({e})\n");
    }
    s += "\nclaims of the paper:\n";
    for c in &a.claims {
        s += &format!("[{}] {} — {}\n", c.verdict, c.claim, c.evidence);
    }
    s += &format!(
        "\nreport: {}\n",
        rep.files.iter().find(|f| f.ends_with("report.md")).map(|p| p.display().to_string()).unwrap_or_default()
    );
    s
}
