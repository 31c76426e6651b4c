//! The aggregate scores CSV in the scaling crate's schema (`scaling::data`): one row per finished
//! cell, in cell-index order, so the bytes do not depend on the order in which cells finished; then
//! one row per task group (`[task_groups]`) and (LLM, V, compressor) whose member tasks have all
//! finished there: the mean of their scores and Q, with the group's name as task (the paper's Y is
//! the error averaged over benchmarks, §3).
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
    // (group, LLM, V, compressor) → (N, Σ Q, Σ score, members finished), in first-seen order.
    type Key = (String, String, u64, String);
    let mut groups: Vec<(Key, (f64, f64, f64, usize))> = Vec::new();
    for c in cfg.cells() {
        match read_result(&cells_dir, &c)? {
            Some(r) => {
                rows += 1;
                s += &format!(
                    "{},{},{},{},{},{}\n",
                    r.llm_params, r.visual_tokens, r.text_tokens, r.score, r.task, r.compressor
                );
                for (g, _) in cfg.task_groups.iter().filter(|(_, m)| m.contains(&c.task)) {
                    let key = (g.clone(), c.llm.clone(), c.visual_tokens, c.compressor.clone());
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, acc)) => {
                            acc.1 += r.text_tokens;
                            acc.2 += r.score;
                            acc.3 += 1;
                        }
                        None => groups.push((key, (r.llm_params, r.text_tokens, r.score, 1))),
                    }
                }
            }
            None => {
                if failure_path(&cells_dir, &c).exists() {
                    failed.push(c.id.clone());
                }
                missing.push(c.id);
            }
        }
    }
    // Group rows: the mean over the members, only where every member task has finished.
    for ((g, _, v, comp), (n, q, score, k)) in groups {
        let members = cfg.task_groups[&g].len();
        if k == members {
            let m = members as f64;
            s += &format!("{},{},{},{},{},{}\n", n, v, q / m, score / m, g, comp);
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
