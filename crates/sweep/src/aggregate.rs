//! The aggregate scores CSV in the scaling crate's schema (`scaling::data`): one row per finished
//! cell, in cell-index order, so the bytes do not depend on the order in which cells finished.
use crate::error::Result;
use crate::grid::SweepConfig;
use crate::runner::{failure_path, read_result};
use serde::Serialize;
use std::path::PathBuf;

/// The CSV header (the scaling crate's input schema).
pub const HEADER: &str = "llm_params,visual_tokens,text_tokens,score,task,compressor";

/// What an aggregation wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Aggregate {
    /// The CSV written.
    pub path: PathBuf,
    /// Rows written (finished cells).
    pub rows: usize,
    /// Cells in the grid.
    pub total: usize,
    /// Ids of cells without a result (not run yet, or failed — see `failed`).
    pub missing: Vec<String>,
    /// Ids of missing cells that have a failure record.
    pub failed: Vec<String>,
}

/// The CSV text of the finished cells of `cfg`'s grid, in index order, with the ids of missing and
/// failed cells. Numbers are printed in Rust's shortest round-trip form.
///
/// Errors: those of [`read_result`] (a corrupt or mismatched cell JSON names its file).
pub fn aggregate_csv(cfg: &SweepConfig) -> Result<(String, Vec<String>, Vec<String>, usize)> {
    let cells_dir = cfg.cells_dir();
    let mut s = format!("{HEADER}\n");
    let (mut missing, mut failed, mut rows) = (Vec::new(), Vec::new(), 0);
    for c in cfg.cells() {
        match read_result(&cells_dir, &c)? {
            Some(r) => {
                rows += 1;
                s += &format!(
                    "{},{},{},{},{},{}\n",
                    r.llm_params, r.visual_tokens, r.text_tokens, r.score, r.task, r.compressor
                );
            }
            None => {
                if failure_path(&cells_dir, &c).exists() {
                    failed.push(c.id.clone());
                }
                missing.push(c.id);
            }
        }
    }
    Ok((s, missing, failed, rows))
}

/// Writes `<results_dir>/aggregate.csv` atomically after checking it parses in the scaling crate's
/// schema (when it has rows).
///
/// Errors: those of [`aggregate_csv`]; `scaling::Error::Data` if a row is invalid for the law (e.g. a
/// score outside [0, 1]); `scaling::Error::Io` if the file cannot be written.
pub fn write_aggregate(cfg: &SweepConfig) -> Result<Aggregate> {
    let (csv, missing, failed, rows) = aggregate_csv(cfg)?;
    let path = cfg.aggregate_path();
    if rows > 0 {
        scaling::data::Dataset::from_csv_str(&csv, &path.display().to_string())?;
    }
    scaling::output::write_atomic(&path, csv.as_bytes())?;
    Ok(Aggregate { path, rows, total: cfg.cells().len(), missing, failed })
}
