//! `vlmscale sweep`: run the (N × V × compressor × task) grid of a TOML config, locally in parallel or
//! as a Slurm job array; aggregate the cells into the scores CSV; fit and report (crate `sweep`).
use super::UsageError;
use anyhow::Result;
use std::path::PathBuf;
use sweep::grid::SweepConfig;
use sweep::runner::CellRunner;
use sweep::synthetic::SyntheticRunner;
use sweep::train_runner::TrainRunner;

/// Run every cell of a sweep config (resumable: finished cells are skipped), or emit it for Slurm.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub sub: Option<Sub>,
    #[command(flatten)]
    pub common: Common,
    /// Cells run at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Compute threads per cell (default: the machine's cores divided by --jobs, at least 1; an
    /// explicit RAYON_NUM_THREADS in the environment wins over the default).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Do not run: write an sbatch job array (one task per cell), a dependent aggregate+report job and
    /// submit.sh into DIR.
    #[arg(long, value_name = "DIR")]
    pub emit_slurm: Option<PathBuf>,
}

/// Options every sweep command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// The sweep config (TOML; see sweeps/default.toml for the schema). Required.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override the config's results_dir.
    #[arg(long, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
    /// Who trains a cell: `train` (the real VLM training) or `synthetic`, a TEST/DEMO runner whose scores
    /// come from a known scaling law plus seeded noise — no training; for testing the machinery only.
    #[arg(long, value_enum, default_value_t = RunnerKind::Train)]
    pub runner: RunnerKind,
    /// (synthetic runner, tests) cell ids that fail on purpose.
    #[arg(long, hide = true, value_delimiter = ',')]
    pub synthetic_fail: Vec<String>,
    /// (synthetic runner, tests) milliseconds each cell takes.
    #[arg(long, hide = true, default_value_t = 0)]
    pub synthetic_delay_ms: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunnerKind {
    /// Train and evaluate the VLM of each cell.
    Train,
    /// Test/demo only: scores from a known law + seeded noise, no training.
    Synthetic,
}

#[derive(clap::Subcommand, Debug)]
pub enum Sub {
    /// Run one cell (a Slurm array task); skips it if it has already finished.
    RunCell {
        #[command(flatten)]
        common: Common,
        /// The cell's index (`vlmscale sweep list` shows them).
        #[arg(long)]
        index: usize,
        /// Compute threads (default: all cores, or RAYON_NUM_THREADS).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Write <results_dir>/aggregate.csv (scaling schema) from the finished cells, in cell-index order.
    Aggregate {
        #[command(flatten)]
        common: Common,
    },
    /// Fit the law per task on the aggregate CSV and write the report (plots, fits.json, cells.md, report.md).
    Report {
        #[command(flatten)]
        common: Common,
        /// Report folder.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Bootstrap resamples for the confidence intervals (as `vlmscale fit`).
        #[arg(long, default_value_t = 200)]
        bootstrap: usize,
    },
    /// List the grid's cells: index, id, and whether each has finished.
    List {
        #[command(flatten)]
        common: Common,
    },
}

pub const SYNTHETIC_NOTE: &str =
    "SYNTHETIC test/demo runner: scores come from a known scaling law plus seeded noise, NOT from training a VLM";

/// Loads `--config` with `--results-dir` applied.
pub fn load(c: &Common) -> Result<SweepConfig> {
    let path = c.config.as_ref().ok_or_else(|| UsageError("--config FILE is required".into()))?;
    // An unreadable config is bad input too (exit 2), named once.
    let mut cfg = SweepConfig::from_path(path).map_err(|e| match e {
        sweep::Error::Io { .. } => UsageError(e.to_string()).into(),
        e => usage(e),
    })?;
    if let Some(d) = &c.results_dir {
        cfg.results_dir = std::path::absolute(d)?;
    }
    Ok(cfg)
}

/// Config and index errors are usage errors (exit 2).
pub fn usage(e: sweep::Error) -> anyhow::Error {
    if e.is_user_error() {
        UsageError(e.to_string()).into()
    } else {
        e.into()
    }
}

/// The runner `c` asks for. The train runner checks the config's tasks, compressors, presets and V
/// up front (a usage error, exit 2).
pub fn runner(c: &Common, cfg: &SweepConfig) -> Result<Box<dyn CellRunner>> {
    match c.runner {
        RunnerKind::Synthetic => {
            eprintln!("NOTE: {SYNTHETIC_NOTE}");
            Ok(Box::new(SyntheticRunner {
                fail: c.synthetic_fail.clone(),
                delay: std::time::Duration::from_millis(c.synthetic_delay_ms),
            }))
        }
        RunnerKind::Train => Ok(Box::new(TrainRunner::new(cfg).map_err(usage)?)),
    }
}

/// Pretrains the sweep's vision tower now (with a progress bar) if the train runner is used, so the
/// first cells do not wait silently. Errors: those of `TrainRunner::prepare_tower`.
pub fn prepare(c: &Common, cfg: &SweepConfig) -> Result<()> {
    if c.runner != RunnerKind::Train {
        return Ok(());
    }
    let r = TrainRunner::new(cfg).map_err(usage)?;
    let pb = indicatif::ProgressBar::new(r.tower_settings().steps as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("vision tower {bar:30} {pos}/{len} steps {msg} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let dir = r.prepare_tower(&mut |step, _, loss| {
        pb.set_position(step as u64);
        pb.set_message(format!("loss {loss:.4}"));
    })?;
    pb.finish_and_clear();
    eprintln!("vision tower: {}", dir.display());
    Ok(())
}

/// Takes the results folder's sweep-wide lock for a run of `cfg` with `r` (crate `sweep`, module
/// `lock`), saying so on stderr when it waits for another run with the same settings.
///
/// Errors: another run holds the folder with other settings (exit code 2, naming the folder); the
/// lock file cannot be opened.
pub fn lock(cfg: &SweepConfig, r: &dyn CellRunner) -> Result<sweep::lock::SweepLock> {
    let on_wait = &mut |h: &sweep::lock::LockRecord| {
        eprintln!(
            "waiting: results folder {} is in use by another run with the same settings (process {}); its finished cells will be reused",
            cfg.results_dir.display(),
            h.pid
        )
    };
    sweep::lock::SweepLock::acquire(cfg, r, on_wait).map_err(usage)
}

/// Sets the compute threads of this process (candle's matmuls and rayon read RAYON_NUM_THREADS): an
/// explicit `threads`, else — unless the environment already sets it — the cores divided by `jobs`.
/// Must run before any computation starts (the rayon pool reads it once).
pub fn set_threads(threads: Option<usize>, jobs: usize) -> Result<()> {
    let n = match threads {
        Some(0) => return Err(UsageError("--threads must be at least 1".into()).into()),
        Some(n) => n,
        None if std::env::var_os("RAYON_NUM_THREADS").is_some() => return Ok(()),
        None => {
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            (cores / jobs.max(1)).max(1)
        }
    };
    // Safe here: called at the start of a command, before any other thread exists.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    match a.sub {
        Some(Sub::RunCell { common, index, threads }) => {
            if threads.is_some() {
                set_threads(threads, 1)?;
            }
            let cfg = load(&common)?;
            let r = runner(&common, &cfg)?;
            let res = sweep::sweep::run_cell(&cfg, r.as_ref(), index).map_err(usage)?;
            println!("{}", serde_json::to_string(&res)?);
            Ok(())
        }
        Some(Sub::Aggregate { common }) => {
            let cfg = load(&common)?;
            let agg = sweep::aggregate::write_aggregate(&cfg)?;
            println!("{}: {} of {} cells", agg.path.display(), agg.rows, agg.total);
            super::warn_missing_cells(&agg.missing, agg.failed.len());
            Ok(())
        }
        Some(Sub::Report { common, out, bootstrap }) => {
            let cfg = load(&common)?;
            let csv = cfg.aggregate_path();
            let synthetic = cfg.cells().iter().any(
                |c| matches!(sweep::runner::read_result(&cfg.cells_dir(), c), Ok(Some(r)) if r.runner == "synthetic"),
            );
            let opts = sweep::report::ReportOptions {
                names: cfg.report.clone(),
                bootstrap,
                note: synthetic.then(|| SYNTHETIC_NOTE.to_string()),
                sweep: Some(cfg.clone()),
                ..Default::default()
            };
            let (an, files) = sweep::report::write_report(&csv, &opts, &out)?;
            if synthetic {
                println!("NOTE: {SYNTHETIC_NOTE}");
            }
            for c in &an.claims {
                println!("[{}] {} — {}", c.verdict, c.claim, c.evidence);
            }
            println!("report: {} ({} files)", out.join("report.md").display(), files.len());
            Ok(())
        }
        Some(Sub::List { common }) => {
            let cfg = load(&common)?;
            for c in cfg.cells() {
                let done = matches!(sweep::runner::read_result(&cfg.cells_dir(), &c), Ok(Some(_)));
                println!("{:>4}  {}  {}", c.index, c.id, if done { "done" } else { "-" });
            }
            Ok(())
        }
        None => {
            let cfg = load(&a.common)?;
            if let Some(dir) = &a.emit_slurm {
                let mut extra = vec!["--results-dir".to_string(), cfg.results_dir.display().to_string()];
                if a.common.runner == RunnerKind::Synthetic {
                    extra.extend(["--runner".to_string(), "synthetic".to_string()]);
                }
                let opts = sweep::slurm::SlurmOptions {
                    binary: std::env::current_exe()?,
                    extra_args: extra,
                    results_dir: cfg.results_dir.clone(),
                    max_parallel: None,
                    cpus_per_task: 1,
                };
                let files = sweep::slurm::emit(&cfg, &opts, dir)?;
                for f in &files {
                    println!("wrote {}", f.display());
                }
                println!("submit with: bash {}", dir.join("submit.sh").display());
                return Ok(());
            }
            if a.jobs == 0 {
                return Err(UsageError("--jobs must be at least 1".into()).into());
            }
            set_threads(a.threads, a.jobs)?;
            let r = runner(&a.common, &cfg)?;
            let _lock = lock(&cfg, r.as_ref())?;
            prepare(&a.common, &cfg)?;
            let s = sweep::sweep::run_sweep(&cfg, r.as_ref(), a.jobs, true)?;
            println!(
                "sweep `{}`: {} cells — {} already finished (skipped), {} ran now, {} failed",
                cfg.name,
                s.total,
                s.skipped,
                s.ran,
                s.failed.len()
            );
            if let Some((score, id)) = &s.best {
                println!("best score {score:.4} ({id})");
            }
            for (id, e) in &s.failed {
                println!("FAILED {id}: {e}");
            }
            let agg = sweep::aggregate::write_aggregate(&cfg)?;
            println!("aggregate: {} ({} of {} cells)", agg.path.display(), agg.rows, agg.total);
            if r.name() == "synthetic" {
                println!("NOTE: {SYNTHETIC_NOTE}");
            }
            s.into_result()?;
            Ok(())
        }
    }
}
