//! Running the grid: cells in parallel up to `jobs`, one result JSON per cell written atomically,
//! finished cells skipped on rerun, a failed cell recorded and the others continued, one overall
//! progress bar (cells done, ETA, best score so far).
use crate::error::{io, Error, Result};
use crate::grid::{Cell, SweepConfig};
use crate::lock::CellLock;
use crate::runner::{check_result, check_reusable, failure_path, read_result, result_path, CellResult, CellRunner};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What a sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepSummary {
    /// Cells in the grid.
    pub total: usize,
    /// Cells already finished before this run (skipped).
    pub skipped: usize,
    /// Cells run to completion now.
    pub ran: usize,
    /// Ids of the cells that failed now, with their error messages, in index order (stale cells
    /// included).
    pub failed: Vec<(String, String)>,
    /// Ids of the finished cells whose results could not be reused ([`check_reusable`]: another
    /// runner, changed settings), with the reason; they were not rerun.
    pub stale: Vec<(String, String)>,
    /// Best score over all finished cells and its cell id.
    pub best: Option<(f64, String)>,
}

/// The failure record written to `results/cells/<id>.failed.json`.
#[derive(Debug, Serialize)]
struct FailureRecord<'a> {
    cell_id: &'a str,
    index: usize,
    runner: &'a str,
    error: String,
    wall_seconds: f64,
}

/// Runs one cell now and records the outcome: the result JSON on success (removing an old failure
/// record), the failure record on error. The cell runs under its lock ([`CellLock`]): when another
/// process is running it, this waits, and reuses the result that process wrote (if
/// [`check_reusable`]) instead of training the cell again.
///
/// Errors: the runner's error (after recording it); [`Error::Io`] when the results folder is not
/// writable; [`Error::Runner`] when the runner returns a result for another cell or an invalid score;
/// [`Error::Stale`] or [`Error::CellFile`] when the result another process wrote meanwhile cannot be
/// reused.
pub fn run_one(cfg: &SweepConfig, runner: &dyn CellRunner, cell: &Cell) -> Result<CellResult> {
    let cells_dir = cfg.cells_dir();
    let out_dir = cells_dir.join(&cell.id);
    std::fs::create_dir_all(&out_dir).map_err(io(&out_dir))?;
    let _lock = CellLock::acquire(&cells_dir, cell)?;
    if let Some(r) = read_result(&cells_dir, cell)? {
        check_reusable(&cells_dir, cell, &r, runner)?;
        return Ok(r);
    }
    let t0 = Instant::now();
    let res = runner.run(cell, &out_dir).and_then(|mut r| {
        r.wall_seconds = t0.elapsed().as_secs_f64();
        if r.settings.is_none() {
            r.settings = runner.settings(cell);
        }
        check_result(cell, &r)?;
        Ok(r)
    });
    match res {
        Ok(r) => {
            let path = result_path(&cells_dir, cell);
            let json = serde_json::to_string_pretty(&r).expect("CellResult serialises");
            scaling::output::write_atomic(&path, json.as_bytes())?;
            let fp = failure_path(&cells_dir, cell);
            if fp.exists() {
                std::fs::remove_file(&fp).map_err(io(&fp))?;
            }
            Ok(r)
        }
        Err(e) => {
            let rec = FailureRecord {
                cell_id: &cell.id,
                index: cell.index,
                runner: runner.name(),
                error: e.to_string(),
                wall_seconds: t0.elapsed().as_secs_f64(),
            };
            let path = failure_path(&cells_dir, cell);
            let json = serde_json::to_string_pretty(&rec).expect("FailureRecord serialises");
            scaling::output::write_atomic(&path, json.as_bytes())?;
            Err(e)
        }
    }
}

/// Runs cell `index` unless it has already finished (the Slurm array task). Returns the result.
///
/// Errors: [`Error::Index`] for an index outside the grid; [`Error::Stale`] when the finished result
/// was produced by another runner or other settings ([`check_reusable`]); those of [`run_one`] and
/// [`read_result`].
pub fn run_cell(cfg: &SweepConfig, runner: &dyn CellRunner, index: usize) -> Result<CellResult> {
    let cell = cfg.cell(index)?;
    if let Some(r) = read_result(&cfg.cells_dir(), &cell)? {
        check_reusable(&cfg.cells_dir(), &cell, &r, runner)?;
        return Ok(r);
    }
    run_one(cfg, runner, &cell)
}

/// Runs every unfinished cell of the grid with up to `jobs` at once (cells are started in index order).
/// A failed cell is recorded and reported in the summary; the others go on. A finished cell whose
/// result cannot be reused ([`check_reusable`]: another runner, changed settings) is not rerun but
/// reported as failed with the reason. `progress` shows the progress bar on stderr (hidden when
/// stderr is not a terminal).
///
/// Errors: [`Error::CellFile`] when an existing result is corrupt or belongs to another cell (fix or
/// delete it); [`Error::Io`] when the results folder cannot be created. Cell failures are **not**
/// errors here: see [`SweepSummary::failed`].
pub fn run_sweep(cfg: &SweepConfig, runner: &dyn CellRunner, jobs: usize, progress: bool) -> Result<SweepSummary> {
    let cells = cfg.cells();
    let cells_dir = cfg.cells_dir();
    std::fs::create_dir_all(&cells_dir).map_err(io(&cells_dir))?;
    let mut summary = SweepSummary { total: cells.len(), ..Default::default() };
    let mut todo = Vec::new();
    let mut best: Option<(f64, String)> = None;
    let mut stale = Vec::new();
    for c in &cells {
        match read_result(&cells_dir, c)? {
            Some(r) => {
                if let Err(e) = check_reusable(&cells_dir, c, &r, runner) {
                    stale.push((c.index, c.id.clone(), e.to_string()));
                    continue;
                }
                summary.skipped += 1;
                if best.as_ref().is_none_or(|b| r.score > b.0) {
                    best = Some((r.score, r.cell_id));
                }
            }
            None => todo.push(c.clone()),
        }
    }
    let pb = if progress { ProgressBar::new(cells.len() as u64) } else { ProgressBar::hidden() };
    if progress {
        pb.set_draw_target(ProgressDrawTarget::stderr());
    }
    pb.set_style(
        ProgressStyle::with_template("{prefix}[{elapsed_precise}] {bar:30} {pos}/{len} cells  ETA {eta}  {msg}")
            .expect("valid template"),
    );
    if runner.name() == "synthetic" {
        pb.set_prefix("SYNTHETIC test runner (no training) ");
    }
    summary.stale = stale.iter().map(|(_, id, e)| (id.clone(), e.clone())).collect();
    pb.set_position((summary.skipped + stale.len()) as u64);
    for (i, id, e) in &stale {
        pb.println(format!("cell {i} `{id}` NOT REUSED: {e}"));
    }
    pb.reset_eta();
    let best = Mutex::new(best);
    let show_best = |pb: &ProgressBar, b: &Option<(f64, String)>| {
        if let Some((s, id)) = b {
            pb.set_message(format!("best score {s:.4} ({id})"));
        }
    };
    show_best(&pb, &best.lock().unwrap());
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(stale);
    let ran = AtomicUsize::new(0);
    let workers = jobs.max(1).min(todo.len().max(1));
    let work = || loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        let Some(cell) = todo.get(i) else { break };
        match run_one(cfg, runner, cell) {
            Ok(r) => {
                ran.fetch_add(1, Ordering::SeqCst);
                let mut b = best.lock().unwrap();
                if b.as_ref().is_none_or(|x| r.score > x.0) {
                    *b = Some((r.score, r.cell_id));
                }
                show_best(&pb, &b);
            }
            Err(e) => {
                pb.println(format!("cell {} `{}` FAILED: {e}", cell.index, cell.id));
                failed.lock().unwrap().push((cell.index, cell.id.clone(), e.to_string()));
            }
        }
        pb.inc(1);
    };
    // Each worker runs its cells in a compute pool of its own, as large as the process's pool (the
    // per-cell thread count that `--threads` / RAYON_NUM_THREADS set): the kernels put their work on
    // the current rayon pool, and in the one global pool `--jobs` cells would take turns on its
    // threads (two jobs of one thread each ran at the speed of one).
    let threads_per_cell = rayon::current_num_threads();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| match rayon::ThreadPoolBuilder::new().num_threads(threads_per_cell).build() {
                Ok(pool) => pool.install(work),
                // No pool of its own (the OS refused threads): the cells share the global one.
                Err(_) => work(),
            });
        }
    });
    pb.finish();
    let mut f = failed.into_inner().unwrap();
    f.sort();
    summary.failed = f.into_iter().map(|(_, id, e)| (id, e)).collect();
    summary.ran = ran.into_inner();
    summary.best = best.into_inner().unwrap();
    Ok(summary)
}

impl SweepSummary {
    /// [`Error::CellsFailed`] when any cell failed, else `Ok`.
    pub fn into_result(self) -> Result<SweepSummary> {
        if self.failed.is_empty() {
            Ok(self)
        } else {
            Err(Error::CellsFailed { failed: self.failed.iter().map(|f| f.0.clone()).collect(), total: self.total })
        }
    }
}
