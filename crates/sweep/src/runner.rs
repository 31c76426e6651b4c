//! What trains and evaluates one cell: the [`CellRunner`] trait (implemented by the train crate's real
//! runner and by the test/demo [`crate::synthetic::SyntheticRunner`]) and the per-cell result record.
use crate::error::{io, Error, Result};
use crate::grid::Cell;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The outcome of one cell (written as `results/cells/<id>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// The cell's stable id.
    pub cell_id: String,
    /// The cell's index in the grid.
    pub index: usize,
    /// N, LLM parameters in billions.
    pub llm_params: f64,
    /// V, visual tokens the LLM reads.
    pub visual_tokens: u64,
    /// Q, mean question length of the evaluation set in tokens.
    pub text_tokens: f64,
    /// Average accuracy in [0, 1] over the evaluation set.
    pub score: f64,
    /// Task name.
    pub task: String,
    /// Compressor name.
    pub compressor: String,
    /// Accuracy per question family (e.g. Sort-of-CLEVR's relational / non-relational), in [0, 1].
    pub family_accuracy: BTreeMap<String, f64>,
    /// Wall time of training + evaluation, seconds (measured by the sweep around [`CellRunner::run`]).
    pub wall_seconds: f64,
    /// Which runner produced it (`synthetic` results are a test/demo law, not training).
    pub runner: String,
    /// The runner's settings for this cell ([`CellRunner::settings`]: training hyper-parameters, data
    /// sizes, tower settings); a rerun reuses the result only if they are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    /// Runner-specific details not used by the law (training loss, timings, the blind-prior baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Trains and evaluates one cell. Implementations must be usable from several threads at once (the
/// sweep runs up to `--jobs` cells concurrently) and deterministic for a given cell (same seed → same
/// score), so that a resumed sweep and a fresh one give the same CSV.
pub trait CellRunner: Send + Sync {
    /// Short name recorded in each result (`train`, `synthetic`).
    fn name(&self) -> &str;
    /// Trains and evaluates `cell`, using `out_dir` (`results/cells/<id>/`, created by the caller)
    /// for checkpoints and logs. The returned result must echo the cell's N, V, task and compressor.
    ///
    /// Errors: anything that stops the cell, as [`Error::Runner`] naming the cell id.
    fn run(&self, cell: &Cell, out_dir: &Path) -> Result<CellResult>;
    /// The settings a finished result of `cell` must carry in [`CellResult::settings`] to be reused
    /// on rerun (`None`: any result of this runner is reused).
    fn settings(&self, _cell: &Cell) -> Option<serde_json::Value> {
        None
    }
}

/// Checks that a finished result can be reused by `runner`: produced by a runner of the same name
/// and, when the runner states settings for the cell, with exactly those settings.
///
/// Errors: [`Error::Stale`] naming the result file, what differs, and how to proceed.
pub fn check_reusable(cells_dir: &Path, cell: &Cell, r: &CellResult, runner: &dyn CellRunner) -> Result<()> {
    let path = result_path(cells_dir, cell);
    let fix = format!(
        "delete it (and the folder {}) to rerun the cell, or use another results folder",
        cells_dir.join(&cell.id).display()
    );
    if r.runner != runner.name() {
        return Err(Error::Stale {
            path,
            msg: format!("was produced by the `{}` runner, not `{}`: {fix}", r.runner, runner.name()),
        });
    }
    if let Some(want) = runner.settings(cell) {
        if r.settings.as_ref() != Some(&want) {
            let had = r.settings.as_ref().map_or("none".to_string(), |v| v.to_string());
            return Err(Error::Stale {
                path,
                msg: format!("was trained with settings {had}, the config now gives {want}: {fix}"),
            });
        }
    }
    Ok(())
}

/// Path of a cell's result JSON.
pub fn result_path(cells_dir: &Path, cell: &Cell) -> PathBuf {
    cells_dir.join(format!("{}.json", cell.id))
}

/// Path of a cell's failure record (written when its runner fails, removed when it later succeeds).
pub fn failure_path(cells_dir: &Path, cell: &Cell) -> PathBuf {
    cells_dir.join(format!("{}.failed.json", cell.id))
}

/// Checks that a runner's result is for `cell` and has a valid score / Q.
///
/// Errors: [`Error::Runner`] naming the cell and the mismatching field.
pub fn check_result(cell: &Cell, r: &CellResult) -> Result<()> {
    let bad = |msg: String| Err(Error::Runner { cell: cell.id.clone(), msg });
    if r.cell_id != cell.id || r.index != cell.index {
        return bad(format!("result is for cell `{}` (index {})", r.cell_id, r.index));
    }
    if r.llm_params != cell.llm_params
        || r.visual_tokens != cell.visual_tokens
        || r.task != cell.task
        || r.compressor != cell.compressor
    {
        return bad("result's N, V, task or compressor differ from the cell's".into());
    }
    if !(0.0..=1.0).contains(&r.score) {
        return bad(format!("score {} is outside [0, 1]", r.score));
    }
    if !(r.text_tokens.is_finite() && r.text_tokens >= 0.0) {
        return bad(format!("text_tokens {} is not a non-negative number", r.text_tokens));
    }
    Ok(())
}

/// Reads a finished cell's result, `None` if it has none yet.
///
/// Errors: [`Error::CellFile`] for a corrupt JSON or one that belongs to another cell (e.g. the
/// config's grid changed); [`Error::Io`] if unreadable.
pub fn read_result(cells_dir: &Path, cell: &Cell) -> Result<Option<CellResult>> {
    let path = result_path(cells_dir, cell);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let r: CellResult =
        serde_json::from_str(&text).map_err(|e| Error::CellFile { path: path.clone(), msg: e.to_string() })?;
    check_result(cell, &r)
        .map_err(|e| Error::CellFile { path, msg: format!("does not match the config's cell: {e}") })?;
    Ok(Some(r))
}
